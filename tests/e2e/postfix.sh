# shellcheck shell=bash
# gatehouse end to end through a real Postfix (with Dovecot SASL).
#
# Sourced by tests/e2e/run.sh after lib.sh: defines postfix_suite, which
# needs the shared services of lib.sh (e2e_start_shared) and leaves them
# running as it found them. `postfix_suite milter` registers gatehouse as
# a milter (packaging/postfix/main.cf.snippet, cases named postfix-*),
# `postfix_suite policy` as a policy service
# (packaging/postfix/main.cf.policy.snippet, cases postfix-policy-*), with
# the same expectations; postfix_parity then compares every reply of the
# two runs. Run alone (as root) with
#   bash tests/e2e/postfix.sh
#
# What it builds, all under $E2E_ROOT/postfix or $E2E_ROOT/postfix-policy
# (/etc/postfix is untouched):
#   etc/      config_directory: main.cf = the settings below +
#             packaging/postfix/main.cf.snippet or main.cf.policy.snippet
#             (gatehouse address substituted); master.cf = Postfix's internal services +
#             packaging/postfix/master.cf.snippet (listen addresses
#             substituted); vmailbox (texthash) for the local domain.
#   spool/    queue_directory, data/ data_directory, maillog (maillog_file).
#   mail/     maildirs of example.com (virtual(8), owned by nobody).
#   dovecot/  Dovecot's own config, passwd-file and sockets: its auth service
#             alone, for smtpd_sasl_type = dovecot.
# Postfix is permissive (relay allowed by check_client_access static:OK, no
# AUTH required anywhere) so that every refusal the client sees is
# gatehouse's. example.com is delivered to the maildirs, everything else to
# the smtp-sink relayhost. No DNS: numeric relayhost, DNS disabled, no
# reverse lookup of clients.
#
# Decision: Postfix offers AUTH on the bridgehead too (smtpd_sasl_auth_enable
# = yes in the test's main.cf; the packaging snippet enables it only on
# submission), so the case "authenticated user relays through the
# bridgehead" runs on the bridgehead listener itself; relaying by group runs
# on submission.

PF_SNIPPETS=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../packaging/postfix" && pwd)

# master.cf.snippet with its service names turned into listen addresses:
# "smtp inet" -> 127.0.0.1:BH_PORT, "submission inet" -> 127.0.0.1:SUB_PORT.
pf_master_listeners() {
    local out
    out=$(sed -e "s/^smtp\([[:space:]]\{1,\}inet[[:space:]]\)/127.0.0.1:$PF_BH_PORT\1/" \
              -e "s/^submission\([[:space:]]\{1,\}inet[[:space:]]\)/127.0.0.1:$PF_SUB_PORT\1/" \
              "$PF_SNIPPETS/master.cf.snippet")
    grep -q "^127.0.0.1:${PF_BH_PORT}[[:space:]]" <<<"$out" || return 1
    grep -q "^127.0.0.1:${PF_SUB_PORT}[[:space:]]" <<<"$out" || return 1
    printf '%s\n' "$out"
}

# The main.cf snippet of PF_INTERFACE with gatehouse's address
# substituted (and, for the policy service, MAIL-stage refusals at MAIL
# FROM, as the milter gives them).
pf_main_snippet() {
    local out
    if [ "$PF_INTERFACE" = policy ]; then
        out=$(sed -e "s|check_policy_service inet:127.0.0.1:10040\$|check_policy_service $GH_POLICY|" \
                  -e 's|^#smtpd_delay_reject = no$|smtpd_delay_reject = no|' \
                  -e 's|^#\(smtpd_sender_restrictions = check_policy_service\)|\1|' \
                  "$PF_SNIPPETS/main.cf.policy.snippet")
        [ "$(grep -c "^smtpd_[a-z]*_restrictions = check_policy_service $GH_POLICY\$" <<<"$out")" = 2 ] || return 1
        grep -q '^smtpd_delay_reject = no$' <<<"$out" || return 1
    else
        out=$(sed -e "s|^smtpd_milters = inet:127.0.0.1:8890\$|smtpd_milters = $GH_MILTER|" \
                  "$PF_SNIPPETS/main.cf.snippet")
        grep -q "^smtpd_milters = $GH_MILTER\$" <<<"$out" || return 1
    fi
    printf '%s\n' "$out"
}

# Run a postfix command. It writes its errors to a tty or syslog only, so
# run it with a tty (script -e returns its exit status) and keep the output;
# on failure show it and the end of the maillog.
pf_cmd() {
    local out=$PF_DIR/postfix-cmd.log
    echo "+ postfix $*" >>"$out"
    if ! script -q -e -c "postfix -c '$PF_CONF' $*" /dev/null </dev/null >>"$out" 2>&1; then
        # The master's own reason (a port it cannot bind...) is in the
        # command's output, not in the maillog (postlogd is not up yet).
        grep -v 'overriding earlier entry' "$out" | tail -n 20 >&2
        tail -n 20 "$PF_DIR/maillog" >&2 2>/dev/null || true
        return 1
    fi
}

pf_write_dovecot() {
    local dc=$PF_DIR/dovecot u
    mkdir -p "$dc/run" "$dc/state"
    : >"$dc/passwd"
    for u in "${E2E_USERS[@]}"; do
        printf '%s:{PLAIN}%s\n' "$u" "$(sasl_password "$u")" >>"$dc/passwd"
    done
    chgrp dovecot "$dc/passwd"
    chmod 640 "$dc/passwd"
    cat >"$dc/dovecot.conf" <<EOF
# Dovecot for the gatehouse e2e suite: its auth service only, for Postfix.
instance_name = gatehouse-e2e
base_dir = $dc/run
state_dir = $dc/state
log_path = $dc/dovecot.log
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dc/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}
service auth {
  unix_listener $PF_QUEUE/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
EOF
}

pf_write_config() {
    local u
    mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF_DATA" "$PF_MAIL"
    chown postfix "$PF_DATA"
    chown nobody:nogroup "$PF_MAIL"
    printf 'all-staff: all-staff@example.com\npostmaster: postmaster@example.com\n' >"$PF_CONF/aliases"
    : >"$PF_CONF/vmailbox"
    for u in "${E2E_USERS[@]}" all-staff postmaster; do
        printf '%s@example.com example.com/%s/\n' "$u" "$u" >>"$PF_CONF/vmailbox"
    done
    {
        cat <<EOF
# Postfix for the gatehouse e2e suite (generated by tests/e2e/postfix.sh).
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $PF_DATA
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = $E2E_ROOT
myhostname = $E2E_HOSTNAME
mydomain = gatehouse-e2e.test
# The MTA's own name under gatehouse's local pattern ".example.com", in
# mydestination as Postfix's default has it, and bare addresses completed
# into the list's domain: the set-up routed addresses were found through.
myorigin = example.com
mydestination = mx.example.com
recipient_delimiter = +
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
alias_maps = texthash:$PF_CONF/aliases
alias_database =
local_recipient_maps =
biff = no

# Permissive: gatehouse decides. (A bare "permit" is refused by smtpd.)
smtpd_relay_restrictions = check_client_access static:OK, reject_unauth_destination
$(if [ "$PF_INTERFACE" != policy ]; then echo 'smtpd_recipient_restrictions ='; fi)
smtpd_peername_lookup = no
smtpd_tls_security_level = none

# SASL through Dovecot's auth socket, offered on every listener, required
# on none (gatehouse refuses anonymous sessions where the policy says so).
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = yes

# Local domain: maildirs. Everything else: smtp-sink ("the Internet").
virtual_mailbox_domains = example.com
virtual_mailbox_base = $PF_MAIL
virtual_mailbox_maps = texthash:$PF_CONF/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
relayhost = [127.0.0.1]:$SINK_PORT
smtp_dns_support_level = disabled
smtp_tls_security_level = none

# --- the packaging/postfix/ snippet of the $PF_INTERFACE interface ---
EOF
        pf_main_snippet || { echo "e2e: gatehouse lines not found in the $PF_INTERFACE snippet" >&2; return 1; }
    } >"$PF_CONF/main.cf"
    {
        pf_master_base
        echo "# --- packaging/postfix/master.cf.snippet ---"
        pf_master_listeners || { echo "e2e: smtp/submission inet services not found in master.cf.snippet" >&2; return 1; }
    } >"$PF_CONF/master.cf"
    pf_write_dovecot
}

# Dovecot's auth socket is there (or Dovecot exited).
pf_dovecot_ready() { [ -S "$PF_QUEUE/private/auth" ] || ! e2e_alive "$PF_DOVECOT_PID"; }

pf_start() {
    PF_DIR=$E2E_ROOT/$PF_NAME
    PF_CONF=$PF_DIR/etc
    PF_QUEUE=$PF_DIR/spool
    PF_DATA=$PF_DIR/data
    PF_MAIL=$PF_DIR/mail
    PF_BH_PORT=$(free_port)
    PF_SUB_PORT=$(free_port)
    pf_write_config || return 1
    # `postfix check` creates the queue folders (Dovecot's socket goes into
    # private/), then Dovecot, then Postfix.
    pf_cmd check || return 1
    dovecot -F -c "$PF_DIR/dovecot/dovecot.conf" </dev/null >>"$PF_DIR/dovecot/stdout.log" 2>&1 &
    PF_DOVECOT_PID=$!
    e2e_track_pid "$PF_DOVECOT_PID" dovecot
    wait_until 10 pf_dovecot_ready
    if ! test -S "$PF_QUEUE/private/auth"; then
        cat "$PF_DIR/dovecot/stdout.log" "$PF_DIR/dovecot/dovecot.log" >&2 2>/dev/null
        echo "e2e: Dovecot's auth socket did not appear" >&2
        return 1
    fi
    pf_cmd start || return 1
    PF_MASTER_PID=$(tr -d ' ' <"$PF_QUEUE/pid/master.pid")
    e2e_track_pid "$PF_MASTER_PID" postfix-master
    e2e_on_cleanup pf_stop
    wait_listen "$PF_BH_PORT" "$PF_MASTER_PID" && wait_listen "$PF_SUB_PORT" "$PF_MASTER_PID"
}

pf_stop() {
    [ -n "${PF_MASTER_PID:-}" ] || return 0
    local kids pid
    # The master's children (smtpd, qmgr, ...) by parent PID, recorded now:
    # they leave by themselves once the master is gone.
    kids=$(pgrep -P "$PF_MASTER_PID" 2>/dev/null | tr '\n' ' ')
    pf_cmd stop >/dev/null 2>&1 || true
    e2e_stop_pid "$PF_MASTER_PID"
    PF_MASTER_PID=
    wait_until 5 pf_all_gone "$kids" || true
    for pid in $kids; do e2e_stop_pid "$pid"; done
    e2e_stop_pid "$PF_DOVECOT_PID"
}

# True when none of the PIDs runs any more.
pf_all_gone() {
    local pid
    for pid in $1; do
        if e2e_alive "$pid"; then return 1; fi
    done
}

# True when gatehouse answers a submission by dave from the directory again
# (not 451 4.4.3). A probe session: no case, nothing counted.
pf_directory_answers() {
    local t=$E2E_ROOT/cases/directory-probe.txt
    swaks --server 127.0.0.1 --port "$PF_SUB_PORT" --helo probe.gatehouse-e2e.test --timeout 10 \
        --auth PLAIN --auth-user dave --auth-password "$(sasl_password dave)" \
        --from dave@example.com --to carol@example.com --quit-after MAIL >"$t" 2>&1 </dev/null
    ! e2e_replies <"$t" | grep -q $'^mail\t4'
}

pf_queue_empty() { [ -z "$(postqueue -c "$PF_CONF" -j 2>/dev/null)" ]; }

# maildir_has LOCALPART MARKER: the message of case MARKER is in the maildir.
maildir_has() {
    local dir=$PF_MAIL/example.com/$1/new
    [ -d "$dir" ] && grep -rqxF "X-E2E-Case: $2" "$dir"
}

# pf_delivered MARKER: the message of case MARKER is in any local maildir.
pf_delivered() { grep -rqxF "X-E2E-Case: $1" "$PF_MAIL"; }

# Wait until Postfix has delivered (or bounced) everything it queued.
pf_settle() { wait_until 15 pf_queue_empty; }

postfix_suite() {
    PF_INTERFACE=${1:-milter}
    if [ "$PF_INTERFACE" = policy ]; then PF_NAME=postfix-policy; else PF_NAME=postfix; fi
    # How smtp_case reads the replies (lib.sh, e2e_without_policy_prefix).
    E2E_REPLIES_FROM=$PF_NAME
    e2e_log "Postfix $(postconf -d -h mail_version), gatehouse as $PF_INTERFACE"
    if ! pf_start; then
        fail "$PF_NAME: start Postfix and Dovecot"
        return 1
    fi
    e2e_log "Postfix bridgehead 127.0.0.1:$PF_BH_PORT, submission 127.0.0.1:$PF_SUB_PORT"
    local bh=$PF_BH_PORT sub=$PF_SUB_PORT queued='250 2.0.0 Ok: queued as *' n

    # --- bridgehead (anonymous allowed) ---------------------------------
    n=$PF_NAME-bridgehead-anonymous-to-local
    smtp_case "$n" --port "$bh" --from partner@partner.example --to carol@example.com \
        --expect mail '250 2.1.0 Ok' \
        --expect rcpt:carol@example.com '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: in carol's maildir" wait_until 15 maildir_has carol "$n"

    n=$PF_NAME-bridgehead-null-sender-to-local
    smtp_case "$n" --port "$bh" --from '<>' --to carol@example.com \
        --expect mail '250 2.1.0 Ok' \
        --expect rcpt:carol@example.com '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: in carol's maildir" wait_until 15 maildir_has carol "$n"

    n=$PF_NAME-bridgehead-anonymous-relay
    smtp_case "$n" --port "$bh" --from partner@partner.example --to victim@elsewhere.example \
        --expect rcpt:victim@elsewhere.example '550 5.7.1 <victim@elsewhere.example>: Unable to relay' \
        --expect data '(none)'

    n=$PF_NAME-bridgehead-trusted-relay
    smtp_case "$n" --port "$bh" --client 127.0.0.2 --from app@example.com --to someone@elsewhere.example \
        --expect rcpt:someone@elsewhere.example '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: reached smtp-sink" wait_until 15 sink_has "$n" someone@elsewhere.example

    n=$PF_NAME-bridgehead-authenticated-relay
    smtp_case "$n" --port "$bh" --auth alice --from alice@example.com --to x@elsewhere.example \
        --expect auth '235 2.7.0 Authentication successful' \
        --expect rcpt:x@elsewhere.example '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: reached smtp-sink" wait_until 15 sink_has "$n" x@elsewhere.example

    n=$PF_NAME-bridgehead-anonymous-to-restricted-list
    smtp_case "$n" --port "$bh" --from partner@partner.example --to all-staff@example.com \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>: Authentication required to send to this recipient'

    n=$PF_NAME-bridgehead-anonymous-local-sender
    smtp_case "$n" --port "$bh" --from ceo@example.com --to carol@example.com \
        --expect mail '550 5.7.1 Anonymous client does not have permissions to send as this sender'

    # --- submission (AUTH required by gatehouse) -----------------------
    n=$PF_NAME-submission-anonymous
    smtp_case "$n" --port "$sub" --from someone@partner.example --to carol@example.com \
        --expect mail '530 5.7.0 Authentication required'

    n=$PF_NAME-submission-not-in-mail-senders
    smtp_case "$n" --port "$sub" --auth carol --from carol@example.com --to alice@example.com \
        --expect auth '235 2.7.0 Authentication successful' \
        --expect mail '550 5.7.1 Client does not have permissions to submit to this server'

    n=$PF_NAME-submission-send-as-other
    smtp_case "$n" --port "$sub" --auth alice --from bob@example.com --to carol@example.com \
        --expect mail '550 5.7.1 Client does not have permissions to send as this sender'

    n=$PF_NAME-submission-nested-group-to-list
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to all-staff@example.com \
        --expect rcpt:all-staff@example.com '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: in all-staff's maildir" wait_until 15 maildir_has all-staff "$n"

    n=$PF_NAME-submission-contractor-to-list
    smtp_case "$n" --port "$sub" --auth bob --from bob@example.com --to all-staff@example.com \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>: Not authorized to send to this recipient'

    n=$PF_NAME-submission-relay-allowed-group
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to x@elsewhere.example \
        --expect rcpt:x@elsewhere.example '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: reached smtp-sink" wait_until 15 sink_has "$n" x@elsewhere.example

    n=$PF_NAME-submission-relay-deny-beats-allow
    smtp_case "$n" --port "$sub" --auth bob --from bob@example.com --to x@elsewhere.example \
        --expect rcpt:x@elsewhere.example '550 5.7.1 <x@elsewhere.example>: Not permitted to relay'

    n=$PF_NAME-submission-multi-recipient
    smtp_case "$n" --port "$sub" --auth bob --from bob@example.com \
        --to carol@example.com --to x@elsewhere.example --to all-staff@example.com \
        --expect rcpt:carol@example.com '250 2.1.5 Ok' \
        --expect rcpt:x@elsewhere.example '550 5.7.1 <x@elsewhere.example>: Not permitted to relay' \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>: Not authorized to send to this recipient' \
        --expect-glob dot "$queued"
    check "$n: in carol's maildir" wait_until 15 maildir_has carol "$n"

    # Everything accepted so far is delivered: now the negative checks.
    check "$PF_NAME: queue empty" pf_settle
    check_not "$PF_NAME-bridgehead-anonymous-relay: not relayed" sink_has "$PF_NAME-bridgehead-anonymous-relay"
    check_not "$PF_NAME-submission-relay-deny-beats-allow: not relayed" sink_has "$PF_NAME-submission-relay-deny-beats-allow"
    check_not "$PF_NAME-submission-multi-recipient: not relayed" sink_has "$PF_NAME-submission-multi-recipient"
    check_not "$PF_NAME-submission-multi-recipient: not delivered to all-staff" \
        maildir_has all-staff "$PF_NAME-submission-multi-recipient"
    check_not "$PF_NAME-submission-contractor-to-list: not delivered" \
        maildir_has all-staff "$PF_NAME-submission-contractor-to-list"

    # --- addresses as Postfix rewrites them (tests/e2e/addresses.sh) ----
    address_battery "$PF_NAME" "$bh" "$sub" pf_settle pf_delivered

    # --- metrics, after all of the above ---------------------------------
    check_metrics "$PF_NAME-metrics" "$PF_INTERFACE"

    # --- directory down ------------------------------------------------
    # dave was never looked up; alice's entry expires (ttl 2s) and then
    # stops being served stale (stale_if_error 2s).
    stop_slapd
    sleep 4.5
    n=$PF_NAME-directory-down-submission
    smtp_case "$n" --port "$sub" --auth dave --from dave@example.com --to carol@example.com \
        --expect auth '235 2.7.0 Authentication successful' \
        --expect mail '451 4.4.3 Directory server unavailable, try again later'
    n=$PF_NAME-directory-down-expired-cache
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to x@elsewhere.example \
        --expect-glob mail '4[0-9][0-9] *' \
        --expect dot '(none)'
    n=$PF_NAME-directory-down-anonymous-relay
    smtp_case "$n" --port "$bh" --from partner@partner.example --to victim@elsewhere.example \
        --expect rcpt:victim@elsewhere.example '550 5.7.1 <victim@elsewhere.example>: Unable to relay'
    n=$PF_NAME-directory-down-anonymous-to-restricted-list
    smtp_case "$n" --port "$bh" --from partner@partner.example --to all-staff@example.com \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>: Authentication required to send to this recipient'
    if ! start_slapd; then
        fail "$PF_NAME: restart slapd"
    fi
    # gatehouse backs off from a failed server for at most 2 s: a session
    # gets past it within a few seconds of slapd answering.
    wait_until 10 pf_directory_answers
    n=$PF_NAME-directory-back
    smtp_case "$n" --port "$sub" --auth dave --from dave@example.com --to carol@example.com \
        --expect mail '550 5.7.1 Client does not have permissions to submit to this server'

    # --- gatehouse down --------------------------------------------------
    stop_gatehouse
    n=$PF_NAME-gatehouse-down-anonymous
    smtp_case "$n" --port "$bh" --from partner@partner.example --to carol@example.com \
        --expect-glob mail '4[0-9][0-9] *' \
        --expect mail '451 4.7.1 Service unavailable - try again later' \
        --expect dot '(none)'
    n=$PF_NAME-gatehouse-down-trusted-relay
    smtp_case "$n" --port "$bh" --client 127.0.0.2 --from app@example.com --to someone@elsewhere.example \
        --expect mail '451 4.7.1 Service unavailable - try again later' \
        --expect dot '(none)'
    n=$PF_NAME-gatehouse-down-submission
    if [ "$PF_INTERFACE" = milter ]; then
        # With the milter down, Postfix refuses AUTH itself (smtpd treats the
        # session as tempfailed from CONNECT on; EHLO still answers 250).
        smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to x@elsewhere.example \
            --expect auth '454 4.3.0 Try again later' \
            --expect mail '(none)' \
            --expect dot '(none)'
    else
        # A policy service is asked nothing before MAIL: AUTH succeeds, MAIL
        # gets smtpd_policy_service_default_action.
        smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to x@elsewhere.example \
            --expect auth '235 2.7.0 Authentication successful' \
            --expect mail '451 4.7.1 Service unavailable - try again later' \
            --expect dot '(none)'
    fi
    check "$PF_NAME: queue empty after gatehouse down" pf_settle
    check_not "$PF_NAME-gatehouse-down-trusted-relay: not relayed" sink_has "$PF_NAME-gatehouse-down-trusted-relay"
    check_not "$PF_NAME-gatehouse-down-submission: not relayed" sink_has "$PF_NAME-gatehouse-down-submission"
    check_not "$PF_NAME-gatehouse-down-anonymous: not delivered" maildir_has carol "$PF_NAME-gatehouse-down-anonymous"
    if ! start_gatehouse "$GH_CONFIG"; then
        fail "$PF_NAME: restart gatehouse"
    fi
    n=$PF_NAME-gatehouse-back
    smtp_case "$n" --port "$bh" --from partner@partner.example --to victim@elsewhere.example \
        --expect rcpt:victim@elsewhere.example '550 5.7.1 <victim@elsewhere.example>: Unable to relay'

    pf_stop
    E2E_REPLIES_FROM=
}

# The replies of one case's transcript, as parity compares them: every
# stage from MAIL on, queue ids masked, Postfix's prefix of policy answers
# taken out, and the address a recipient's refusal starts with: the milter
# names the address as gatehouse normalised it (<all-staff@example.com>),
# Postfix's prefix as the client typed it (<ALL-Staff@Example.COM>).
pf_case_replies() {
    e2e_replies <"$1" | e2e_without_policy_prefix | awk -F'\t' '$1 == "mail" || $1 ~ /^rcpt:/ || $1 == "data" || $1 == "dot"' \
        | sed -E -e 's/queued as [0-9A-Za-z]*/queued as QUEUEID/' \
                 -e 's/^(rcpt:[^\t]*\t[45][0-9][0-9] [45]\.[0-9]+\.[0-9]+ )<[^>]*>: /\1/'
}

# Every case of `postfix_suite milter` against its twin of `postfix_suite
# policy`: the same reply at every stage. Allowed, and listed:
#  - gatehouse down on submission (the milter's outage refuses AUTH, the
#    policy service is not asked before MAIL);
#  - a recipient with an @ inside quotes: Postfix passes "a@b"@c to a
#    policy service as a@b@c, the form of an invalid address, refused as
#    such (501) where the milter, seeing the quotes, refuses it by its
#    rule: a refusal either way;
#  - the invalid spellings Postfix tidies into a valid address even with
#    strict_rfc821_envelopes (ADDR_TIDIED in addresses.sh): the policy
#    service judges the address Postfix delivers to (addr_judged_as);
#  - a recipient Postfix refuses itself as not in its mailbox table: with
#    a milter Postfix asks its table first, with a policy service in
#    smtpd_recipient_restrictions gatehouse first (then the table): a
#    refusal either way.
postfix_parity() {
    local cases=$E2E_ROOT/cases f twin name compared=0 problems='' allowed='' a b
    for f in "$cases"/postfix-*.txt; do
        name=$(basename "$f" .txt)
        case $name in postfix-policy-*) continue ;; esac
        twin=$cases/postfix-policy-${name#postfix-}.txt
        if [ ! -f "$twin" ]; then
            problems+="$name: no policy twin"$'\n'
            continue
        fi
        compared=$((compared + 1))
        a=$(pf_case_replies "$f")
        b=$(pf_case_replies "$twin")
        [ "$a" = "$b" ] && continue
        if [ "$name" = postfix-gatehouse-down-submission ] \
            || printf '%s\n' "${ADDR_TIDIED_CASES[@]}" | grep -qxF "${name#postfix-}"; then
            allowed+="$name"$'\n'
            continue
        fi
        # Every differing line: a recipient refused (5xx) both ways, quoted
        # with an @ inside, or refused by Postfix's own table on one side.
        if paste <(printf '%s\n' "$a") <(printf '%s\n' "$b") | awk -F'\t' '
                $1 != $3 || $2 != $4 {
                    known = $1 ~ /^rcpt:"[^"]*@[^"]*"@/ || $2 ~ /User unknown/ || $4 ~ /User unknown/
                    if (!($1 == $3 && $1 ~ /^rcpt:/ && $2 ~ /^5/ && $4 ~ /^5/ && known)) bad = 1
                }
                END { exit bad }'; then
            allowed+="$name"$'\n'
            continue
        fi
        problems+="$name:"$'\n'"$(diff <(printf '%s\n' "$a") <(printf '%s\n' "$b"))"$'\n'
    done
    if [ "$compared" -lt 40 ]; then
        problems+="only $compared cases compared"$'\n'
    fi
    if [ -n "$allowed" ]; then
        e2e_log "postfix parity: expected differences: $(printf '%s' "$allowed" | tr '\n' ' ')"
    fi
    if [ -z "$problems" ]; then
        pass "postfix parity: $compared cases, the same replies through the milter and the policy service"
    else
        fail "postfix parity: milter and policy service replies differ" "$problems"
    fi
}

# Run alone: bash tests/e2e/postfix.sh
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    # shellcheck source=tests/e2e/lib.sh
    . "$(dirname "$0")/lib.sh"
    # shellcheck source=tests/e2e/addresses.sh
    . "$(dirname "$0")/addresses.sh"
    e2e_enter_sandbox "$@"
    e2e_setup
    e2e_start_shared
    postfix_suite milter
    postfix_suite policy
    postfix_parity
    e2e_summary
    exit $?
fi
