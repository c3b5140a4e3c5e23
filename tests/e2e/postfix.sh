# shellcheck shell=bash
# gatehouse end to end through a real Postfix (with Dovecot SASL).
#
# Sourced by tests/e2e/run.sh after lib.sh: defines postfix_suite, which
# needs the shared services of lib.sh (e2e_start_shared) and leaves them
# running as it found them. Run alone (as root) with
#   bash tests/e2e/postfix.sh
#
# What it builds, all under $E2E_ROOT/postfix (/etc/postfix is untouched):
#   etc/      config_directory: main.cf = the settings below +
#             packaging/postfix/main.cf.snippet (gatehouse address
#             substituted); master.cf = Postfix's internal services +
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

# Postfix's internal services (chroot off: the queue is a temp folder
# without the files a chroot needs). The SMTP listeners come from the
# packaging snippet.
pf_master_base() {
    cat <<'EOF'
# service  type  private unpriv  chroot  wakeup  maxproc command + args
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
local      unix  -       n       n       -       -       local
virtual    unix  -       n       n       -       -       virtual
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
EOF
}

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

# main.cf.snippet with gatehouse's address substituted.
pf_main_milter() {
    local out
    out=$(sed -e "s|^smtpd_milters = inet:127.0.0.1:8890\$|smtpd_milters = $GH_MILTER|" \
              "$PF_SNIPPETS/main.cf.snippet")
    grep -q "^smtpd_milters = $GH_MILTER\$" <<<"$out" || return 1
    printf '%s\n' "$out"
}

# Run a postfix command. It writes its errors to a tty or syslog only, so
# run it with a tty (script -e returns its exit status) and keep the output;
# on failure show it and the end of the maillog.
pf_cmd() {
    local out=$PF_DIR/postfix-cmd.log
    echo "+ postfix $*" >>"$out"
    if ! script -q -e -c "postfix -c '$PF_CONF' $*" /dev/null </dev/null >>"$out" 2>&1; then
        tail -n 20 "$out" >&2
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
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
alias_maps =
alias_database =
local_recipient_maps =
biff = no

# Permissive: gatehouse decides. (A bare "permit" is refused by smtpd.)
smtpd_relay_restrictions = check_client_access static:OK, reject_unauth_destination
smtpd_recipient_restrictions =
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

# --- packaging/postfix/main.cf.snippet ---
EOF
        pf_main_milter || { echo "e2e: smtpd_milters line not found in main.cf.snippet" >&2; return 1; }
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
    PF_DIR=$E2E_ROOT/postfix
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

# Wait until Postfix has delivered (or bounced) everything it queued.
pf_settle() { wait_until 15 pf_queue_empty; }

postfix_suite() {
    e2e_log "Postfix $(postconf -d -h mail_version)"
    if ! pf_start; then
        fail "postfix: start Postfix and Dovecot"
        return 1
    fi
    e2e_log "Postfix bridgehead 127.0.0.1:$PF_BH_PORT, submission 127.0.0.1:$PF_SUB_PORT"
    local bh=$PF_BH_PORT sub=$PF_SUB_PORT queued='250 2.0.0 Ok: queued as *' n

    # --- bridgehead (anonymous allowed) ---------------------------------
    n=postfix-bridgehead-anonymous-to-local
    smtp_case "$n" --port "$bh" --from partner@partner.example --to carol@example.com \
        --expect mail '250 2.1.0 Ok' \
        --expect rcpt:carol@example.com '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: in carol's maildir" wait_until 15 maildir_has carol "$n"

    n=postfix-bridgehead-null-sender-to-local
    smtp_case "$n" --port "$bh" --from '<>' --to carol@example.com \
        --expect mail '250 2.1.0 Ok' \
        --expect rcpt:carol@example.com '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: in carol's maildir" wait_until 15 maildir_has carol "$n"

    n=postfix-bridgehead-anonymous-relay
    smtp_case "$n" --port "$bh" --from partner@partner.example --to victim@elsewhere.example \
        --expect rcpt:victim@elsewhere.example '550 5.7.1 <victim@elsewhere.example>: Unable to relay' \
        --expect data '(none)'

    n=postfix-bridgehead-trusted-relay
    smtp_case "$n" --port "$bh" --client 127.0.0.2 --from app@example.com --to someone@elsewhere.example \
        --expect rcpt:someone@elsewhere.example '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: reached smtp-sink" wait_until 15 sink_has "$n" someone@elsewhere.example

    n=postfix-bridgehead-authenticated-relay
    smtp_case "$n" --port "$bh" --auth alice --from alice@example.com --to x@elsewhere.example \
        --expect auth '235 2.7.0 Authentication successful' \
        --expect rcpt:x@elsewhere.example '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: reached smtp-sink" wait_until 15 sink_has "$n" x@elsewhere.example

    n=postfix-bridgehead-anonymous-to-restricted-list
    smtp_case "$n" --port "$bh" --from partner@partner.example --to all-staff@example.com \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>: Authentication required to send to this recipient'

    n=postfix-bridgehead-anonymous-local-sender
    smtp_case "$n" --port "$bh" --from ceo@example.com --to carol@example.com \
        --expect mail '550 5.7.1 Anonymous client does not have permissions to send as this sender'

    # --- submission (AUTH required by gatehouse) -----------------------
    n=postfix-submission-anonymous
    smtp_case "$n" --port "$sub" --from someone@partner.example --to carol@example.com \
        --expect mail '530 5.7.0 Authentication required'

    n=postfix-submission-not-in-mail-senders
    smtp_case "$n" --port "$sub" --auth carol --from carol@example.com --to alice@example.com \
        --expect auth '235 2.7.0 Authentication successful' \
        --expect mail '550 5.7.1 Client does not have permissions to submit to this server'

    n=postfix-submission-send-as-other
    smtp_case "$n" --port "$sub" --auth alice --from bob@example.com --to carol@example.com \
        --expect mail '550 5.7.1 Client does not have permissions to send as this sender'

    n=postfix-submission-nested-group-to-list
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to all-staff@example.com \
        --expect rcpt:all-staff@example.com '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: in all-staff's maildir" wait_until 15 maildir_has all-staff "$n"

    n=postfix-submission-contractor-to-list
    smtp_case "$n" --port "$sub" --auth bob --from bob@example.com --to all-staff@example.com \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>: Not authorized to send to this recipient'

    n=postfix-submission-relay-allowed-group
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to x@elsewhere.example \
        --expect rcpt:x@elsewhere.example '250 2.1.5 Ok' \
        --expect-glob dot "$queued"
    check "$n: reached smtp-sink" wait_until 15 sink_has "$n" x@elsewhere.example

    n=postfix-submission-relay-deny-beats-allow
    smtp_case "$n" --port "$sub" --auth bob --from bob@example.com --to x@elsewhere.example \
        --expect rcpt:x@elsewhere.example '550 5.7.1 <x@elsewhere.example>: Not permitted to relay'

    n=postfix-submission-multi-recipient
    smtp_case "$n" --port "$sub" --auth bob --from bob@example.com \
        --to carol@example.com --to x@elsewhere.example --to all-staff@example.com \
        --expect rcpt:carol@example.com '250 2.1.5 Ok' \
        --expect rcpt:x@elsewhere.example '550 5.7.1 <x@elsewhere.example>: Not permitted to relay' \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>: Not authorized to send to this recipient' \
        --expect-glob dot "$queued"
    check "$n: in carol's maildir" wait_until 15 maildir_has carol "$n"

    # Everything accepted so far is delivered: now the negative checks.
    check "postfix: queue empty" pf_settle
    check_not "postfix-bridgehead-anonymous-relay: not relayed" sink_has postfix-bridgehead-anonymous-relay
    check_not "postfix-submission-relay-deny-beats-allow: not relayed" sink_has postfix-submission-relay-deny-beats-allow
    check_not "postfix-submission-multi-recipient: not relayed" sink_has postfix-submission-multi-recipient
    check_not "postfix-submission-multi-recipient: not delivered to all-staff" \
        maildir_has all-staff postfix-submission-multi-recipient
    check_not "postfix-submission-contractor-to-list: not delivered" \
        maildir_has all-staff postfix-submission-contractor-to-list

    # --- directory down ------------------------------------------------
    # dave was never looked up; alice's entry expires (ttl 2s) and then
    # stops being served stale (stale_if_error 2s).
    stop_slapd
    sleep 4.5
    n=postfix-directory-down-submission
    smtp_case "$n" --port "$sub" --auth dave --from dave@example.com --to carol@example.com \
        --expect auth '235 2.7.0 Authentication successful' \
        --expect mail '451 4.4.3 Directory server unavailable, try again later'
    n=postfix-directory-down-expired-cache
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to x@elsewhere.example \
        --expect-glob mail '4[0-9][0-9] *' \
        --expect dot '(none)'
    n=postfix-directory-down-anonymous-relay
    smtp_case "$n" --port "$bh" --from partner@partner.example --to victim@elsewhere.example \
        --expect rcpt:victim@elsewhere.example '550 5.7.1 <victim@elsewhere.example>: Unable to relay'
    n=postfix-directory-down-anonymous-to-restricted-list
    smtp_case "$n" --port "$bh" --from partner@partner.example --to all-staff@example.com \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>: Authentication required to send to this recipient'
    if ! start_slapd; then
        fail "postfix: restart slapd"
    fi
    # gatehouse backs off from a failed server (2 s after the first failure,
    # doubling up to 60 s): wait until a session gets past it.
    wait_until 70 pf_directory_answers
    n=postfix-directory-back
    smtp_case "$n" --port "$sub" --auth dave --from dave@example.com --to carol@example.com \
        --expect mail '550 5.7.1 Client does not have permissions to submit to this server'

    # --- gatehouse down --------------------------------------------------
    stop_gatehouse
    n=postfix-gatehouse-down-anonymous
    smtp_case "$n" --port "$bh" --from partner@partner.example --to carol@example.com \
        --expect-glob mail '4[0-9][0-9] *' \
        --expect mail '451 4.7.1 Service unavailable - try again later' \
        --expect dot '(none)'
    n=postfix-gatehouse-down-trusted-relay
    smtp_case "$n" --port "$bh" --client 127.0.0.2 --from app@example.com --to someone@elsewhere.example \
        --expect mail '451 4.7.1 Service unavailable - try again later' \
        --expect dot '(none)'
    # With the milter down, Postfix refuses AUTH itself (smtpd treats the
    # session as tempfailed from CONNECT on; EHLO still answers 250).
    n=postfix-gatehouse-down-submission
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to x@elsewhere.example \
        --expect auth '454 4.3.0 Try again later' \
        --expect mail '(none)' \
        --expect dot '(none)'
    check "postfix: queue empty after gatehouse down" pf_settle
    check_not "postfix-gatehouse-down-trusted-relay: not relayed" sink_has postfix-gatehouse-down-trusted-relay
    check_not "postfix-gatehouse-down-submission: not relayed" sink_has postfix-gatehouse-down-submission
    check_not "postfix-gatehouse-down-anonymous: not delivered" maildir_has carol postfix-gatehouse-down-anonymous
    if ! start_gatehouse "$GH_CONFIG"; then
        fail "postfix: restart gatehouse"
    fi
    n=postfix-gatehouse-back
    smtp_case "$n" --port "$bh" --from partner@partner.example --to victim@elsewhere.example \
        --expect rcpt:victim@elsewhere.example '550 5.7.1 <victim@elsewhere.example>: Unable to relay'

    pf_stop
}

# Run alone: bash tests/e2e/postfix.sh
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    # shellcheck source=tests/e2e/lib.sh
    . "$(dirname "$0")/lib.sh"
    e2e_enter_sandbox "$@"
    e2e_setup
    e2e_start_shared
    postfix_suite
    e2e_summary
    exit $?
fi
