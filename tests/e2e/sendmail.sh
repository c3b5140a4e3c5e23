# shellcheck shell=bash
# gatehouse end to end through a real Sendmail (Cyrus SASL, sasldb).
#
# Sourced by tests/e2e/run.sh after lib.sh: defines sendmail_suite, which
# needs the shared services of lib.sh (e2e_start_shared) and leaves them
# running as it found them. Also a script:
#   bash tests/e2e/sendmail.sh prepare   (root, outside the sandbox, needs the
#                                         package registry) fetches what the
#                                         suite needs: see sendmail_prepare
#   bash tests/e2e/sendmail.sh           runs this suite alone (root)
#
# Sendmail's package conflicts with Postfix's, so it is never installed:
# sendmail_prepare downloads the sendmail-bin and sendmail-cf .debs into
# $GATEHOUSE_E2E_CACHE/sendmail (default /var/cache/gatehouse-e2e/sendmail;
# scripts/install-test-deps.sh calls it) and installs the libraries the
# binary links. The suite extracts them (dpkg-deb -x) into the temp root and
# runs the binary from there with -C.
#
# What it builds, all under $E2E_ROOT/sendmail:
#   pkg/            the extracted packages; the binary loses its setgid bit
#                   (libsasl2 ignores SASL_CONF_PATH in a setgid process).
#   gatehouse.mc    packaging/sendmail/gatehouse.mc with only the two daemon
#                   ports, their listen address (127.0.0.1) and the
#                   gatehouse socket substituted; test.mc include()s it, so
#                   the suite runs the lines a mail admin adds.
#   sendmail.cf     m4 -D_CF_DIR_=pkg/.../cf/ cf.m4 test.mc.
#   sasl/           Sendmail.conf (auxprop sasldb, PLAIN LOGIN) and sasldb2
#                   with the users of lib.sh (saslpasswd2 -f).
#   queue/, sendmail.pid, sendmail.out (debug output of the daemon: Sendmail
#                   logs to syslog, which the sandbox has not), traffic.log
#                   (-X: every SMTP line in and out).
#   store/ADDRESS/  local delivery: example.com goes to the "store" mailer
#                   (store.sh), one file per message per recipient.
# Everything else goes to lib.sh's smtp-sink through the numeric smart host
# [127.0.0.1] on its port. One sendmail -bD process (the foreground daemon,
# its own PID) serves both daemons, bridgehead and submission, on 127.0.0.1.
#
# Sendmail is permissive so that every refusal the client sees is
# gatehouse's: FEATURE(promiscuous_relay) (ONLY for this test; in
# production Sendmail's own relay rules stay on), unresolvable sender
# domains accepted (the sandbox has no DNS), AUTH offered on both daemons
# and required on neither. Delivery is interactive: the final 250 comes
# after delivery, so the store and the sink are checked at once.
#
# Observed Sendmail specifics (8.17.1.9), asserted below:
# - Sendmail puts "ADDRESS... " in front of every reply with code 250, 450,
#   550 or 553 (and 050, 252) while it handles an address (err.c fmtmsg),
#   milter replies included: at RCPT the recipient, at MAIL the sender.
#   gatehouse's "550 5.7.1 <x@elsewhere.example>: Not permitted to relay"
#   reaches the client as "550 5.7.1 <x@elsewhere.example>...
#   <x@elsewhere.example>: Not permitted to relay", and "550 5.7.1 Client
#   does not have permissions to submit to this server" as "550 5.7.1
#   <carol@example.com>... Client does not ...". Other codes (530, 451)
#   pass unchanged: "530 5.7.0 Authentication required".
# - Gatehouse unreachable with F=T: the session opens (220, EHLO), then
#   MAIL gets "451 4.3.2 Please try again later", and AUTH gets
#   "454 4.3.0 Please try again later".

SM_PKG_NAMES=(sendmail-bin sendmail-cf)
SM_SNIPPET=${E2E_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/packaging/sendmail/gatehouse.mc

sm_cache() { printf '%s/sendmail' "${GATEHOUSE_E2E_CACHE:-/var/cache/gatehouse-e2e}"; }

# True when one .deb of each package is in the cache.
sm_debs_cached() {
    local p n
    for p in "${SM_PKG_NAMES[@]}"; do
        n=$(find "$(sm_cache)" -maxdepth 1 -name "${p}_*.deb" 2>/dev/null | wc -l)
        [ "$n" -eq 1 ] || return 1
    done
}

# apt-get download into DIR (APT::Sandbox::User=root: DIR is not the _apt
# user's).
sm_download() {
    (cd "$1" && apt-get download -q -o APT::Sandbox::User=root "${SM_PKG_NAMES[@]}" >/dev/null)
}

# Download the .debs (when not cached) and install the libraries the
# extracted binary needs: those sendmail-bin depends on and the Cyrus SASL
# plugins. Outside the sandbox (it needs the registry); as root. Quiet and
# quick when everything is there.
sendmail_prepare() {
    local cache tmp
    cache=$(sm_cache)
    if ! sm_debs_cached; then
        mkdir -p "$cache"
        tmp=$(mktemp -d)
        # A second try after refreshing the package lists (a fresh machine
        # may have none, or an old one).
        if ! sm_download "$tmp" && ! { apt-get update -qq && sm_download "$tmp"; }; then
            rm -rf "$tmp"
            echo "sendmail.sh: apt-get download ${SM_PKG_NAMES[*]} failed" >&2
            return 1
        fi
        rm -f "$cache"/*.deb
        mv "$tmp"/*.deb "$cache"/
        rmdir "$tmp"
    fi
    local -a want missing=()
    local p
    mapfile -t want < <(dpkg-deb -f "$cache"/sendmail-bin_*.deb Depends | tr ',' '\n' \
        | sed -e 's/([^)]*)//g' -e 's/|.*//' -e 's/[[:space:]]//g' | grep '^lib')
    # The PLAIN/LOGIN and sasldb plugins of libsasl2 (no daemons here; m4
    # and sasl2-bin come from scripts/install-test-deps.sh).
    want+=(libsasl2-modules libsasl2-modules-db)
    for p in "${want[@]}"; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "sendmail.sh: installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
    fi
}

# gatehouse.mc for this run: the gatehouse socket (Sendmail writes
# port@host), and each daemon's port with Addr=127.0.0.1. Fails when a line
# it substitutes is not in the packaging file.
sm_snippet() {
    local gh_port=${GH_MILTER##*:} out
    out=$(sed -e "s/S=inet:8890@127\.0\.0\.1,/S=inet:$gh_port@127.0.0.1,/" \
              -e "s/^DAEMON_OPTIONS(\`Port=smtp, Name=bridgehead/DAEMON_OPTIONS(\`Port=$SM_BH_PORT, Addr=127.0.0.1, Name=bridgehead/" \
              -e "s/^DAEMON_OPTIONS(\`Port=587, Name=submission/DAEMON_OPTIONS(\`Port=$SM_SUB_PORT, Addr=127.0.0.1, Name=submission/" \
              "$SM_SNIPPET")
    grep -q "^INPUT_MAIL_FILTER(\`gatehouse', \`S=inet:$gh_port@127.0.0.1, F=T," <<<"$out" || return 1
    grep -q "^DAEMON_OPTIONS(\`Port=$SM_BH_PORT, Addr=127.0.0.1, Name=bridgehead'" <<<"$out" || return 1
    grep -q "^DAEMON_OPTIONS(\`Port=$SM_SUB_PORT, Addr=127.0.0.1, Name=submission" <<<"$out" || return 1
    printf '%s\n' "$out"
}

# The local delivery agent: store.sh ADDRESS < message.
sm_write_store() {
    cat >"$SM_DIR/store.sh" <<EOF
#!/bin/sh
# Sendmail "store" mailer of the gatehouse e2e suite: one file per message.
set -e
d='$SM_STORE'/"\$1"
mkdir -p "\$d"
f="\$d/\$(date +%s%N).\$\$"
cat >"\$f.tmp"
mv "\$f.tmp" "\$f.eml"
EOF
    chmod 755 "$SM_DIR/store.sh"
}

sm_write_sasl() {
    local u
    mkdir -p "$SM_DIR/sasl"
    for u in "${E2E_USERS[@]}"; do
        sasl_password "$u" | saslpasswd2 -p -c -f "$SM_DIR/sasl/sasldb2" -u example.com "$u" || return 1
    done
    cat >"$SM_DIR/sasl/Sendmail.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $SM_DIR/sasl/sasldb2
mech_list: PLAIN LOGIN
EOF
}

sm_write_config() {
    local cf=$SM_CF tab=$'\t'
    mkdir -p "$SM_DIR/queue" "$SM_STORE"
    chmod 700 "$SM_DIR/queue"
    sm_snippet >"$SM_DIR/gatehouse.mc" || { echo "e2e: expected lines not found in $SM_SNIPPET" >&2; return 1; }
    sm_write_store
    sm_write_sasl || return 1
    printf 'hosts files\naliases files\n' >"$SM_DIR/service.switch"
    # Generated: m4 quotes are `...' and Sendmail's macros are $x, so the
    # here-document is unquoted and escapes every $ that is Sendmail's.
    cat >"$SM_DIR/test.mc" <<EOF
divert(-1)
# Sendmail for the gatehouse e2e suite (generated by tests/e2e/sendmail.sh).
divert(0)dnl
OSTYPE(\`linux')dnl
dnl No DNS, no probing: names from /etc/hosts (the sandbox's own), files only.
define(\`confDONT_PROBE_INTERFACES', \`True')dnl
define(\`confSERVICE_SWITCH_FILE', \`$SM_DIR/service.switch')dnl
define(\`confTO_IDENT', \`0s')dnl
FEATURE(\`nocanonify')dnl
FEATURE(\`accept_unresolvable_domains')dnl
dnl ONLY for this test: Sendmail relays anything, so that gatehouse is what
dnl decides. In production Sendmail's own relay rules stay on.
FEATURE(\`promiscuous_relay')dnl
dnl Everything in the temp root; /tmp is sticky and world-writable.
define(\`confDONT_BLAME_SENDMAIL', \`TrustStickyBit')dnl
define(\`QUEUE_DIR', \`$SM_DIR/queue')dnl
define(\`confPID_FILE', \`$SM_DIR/sendmail.pid')dnl
define(\`STATUS_FILE', \`$SM_DIR/statistics')dnl
define(\`HELP_FILE', \`$SM_PKG/etc/mail/helpfile')dnl
define(\`ALIAS_FILE', \`')dnl
define(\`confDELIVERY_MODE', \`interactive')dnl
define(\`confQUEUE_LA', \`100')dnl
define(\`confREFUSE_LA', \`100')dnl
dnl AUTH: Cyrus sasldb, offered on both daemons, required by Sendmail on none.
define(\`confAUTH_MECHANISMS', \`PLAIN LOGIN')dnl
TRUST_AUTH_MECH(\`PLAIN LOGIN')dnl
define(\`confAUTH_REALM', \`example.com')dnl
dnl "The Internet": smtp-sink.
define(\`SMART_HOST', \`relay:[127.0.0.1]')dnl
define(\`RELAY_MAILER_ARGS', \`TCP \$h $SINK_PORT')dnl
dnl --- packaging/sendmail/gatehouse.mc (ports and socket substituted) ---
include(\`$SM_DIR/gatehouse.mc')dnl
dnl ---
LOCAL_CONFIG
ESASL_CONF_PATH=$SM_DIR/sasl
dnl The MTA's own name under gatehouse's local pattern ".example.com".
Cwmx.example.com
MAILER_DEFINITIONS
Mstore, P=$SM_DIR/store.sh, F=lsDFMS, S=EnvFromSMTP/HdrFromSMTP, R=EnvToSMTP, T=DNS/RFC822/X-Unix, A=store.sh \$u
LOCAL_RULE_0
R\$+ < @ example.com . >${tab}\$#store \$@ localhost \$: \$1 < @ example.com . >
MAILER(\`smtp')dnl
EOF
    if ! m4 -D_CF_DIR_="$cf/" "$cf/m4/cf.m4" "$SM_DIR/test.mc" >"$SM_DIR/sendmail.cf" 2>"$SM_DIR/m4.log"; then
        cat "$SM_DIR/m4.log" >&2
        return 1
    fi
}

sm_start() {
    SM_DIR=$E2E_ROOT/sendmail
    SM_PKG=$SM_DIR/pkg
    SM_STORE=$SM_DIR/store
    local cmd
    for cmd in m4 saslpasswd2 dpkg-deb; do
        command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] \
            || { echo "e2e: $cmd not found (scripts/install-test-deps.sh installs it)" >&2; return 1; }
    done
    if ! sm_debs_cached; then
        echo "e2e: Sendmail .debs not in $(sm_cache): run 'bash tests/e2e/sendmail.sh prepare' (scripts/install-test-deps.sh does) before the suite" >&2
        return 1
    fi
    local deb
    mkdir -p "$SM_PKG"
    for deb in "$(sm_cache)"/*.deb; do
        dpkg-deb -x "$deb" "$SM_PKG" || return 1
    done
    SM_BIN=$SM_PKG/usr/libexec/sendmail/sendmail
    [ -x "$SM_BIN" ] || SM_BIN=$SM_PKG/usr/lib/sm.bin/sendmail
    [ -x "$SM_BIN" ] || { echo "e2e: no sendmail binary in the extracted packages" >&2; return 1; }
    chmod g-s "$SM_BIN"
    if ldd "$SM_BIN" | grep -q 'not found'; then
        ldd "$SM_BIN" | grep 'not found' >&2
        echo "e2e: libraries missing: run 'bash tests/e2e/sendmail.sh prepare'" >&2
        return 1
    fi
    SM_CF=$SM_PKG/usr/share/sendmail/cf
    SM_BH_PORT=$(free_port)
    SM_SUB_PORT=$(free_port)
    sm_write_config || return 1
    # -bD: daemon in the foreground, so $! is Sendmail's own PID. -X: a
    # transcript of every SMTP session and delivery, since Sendmail logs
    # only to syslog, which the sandbox has not. (No -d debug flags: a
    # session child writes its debug output into the SMTP session.)
    "$SM_BIN" -bD -C "$SM_DIR/sendmail.cf" -X "$SM_DIR/traffic.log" \
        </dev/null >>"$SM_DIR/sendmail.out" 2>&1 &
    SM_PID=$!
    e2e_track_pid "$SM_PID" sendmail
    e2e_on_cleanup sm_stop
    if ! wait_listen "$SM_BH_PORT" "$SM_PID" || ! wait_listen "$SM_SUB_PORT" "$SM_PID"; then
        tail -n 20 "$SM_DIR/sendmail.out" >&2
        return 1
    fi
}

# Stop the daemon by its PID; it stops its own session children, which are
# checked for and stopped by PID if they linger.
sm_stop() {
    [ -n "${SM_PID:-}" ] || return 0
    local -a kids
    mapfile -t kids < <(pgrep -P "$SM_PID" 2>/dev/null)
    e2e_stop_pid "$SM_PID"
    local k
    for k in ${kids[@]+"${kids[@]}"}; do
        e2e_alive "$k" && grep -q '^sendmail' "/proc/$k/comm" 2>/dev/null && kill -TERM "$k" 2>/dev/null
    done
    SM_PID=
}

# True when no process runs the extracted sendmail binary (any left over
# would be a session child the daemon did not stop).
sm_none_left() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$SM_BIN" ] && { echo "e2e: left running: ${p#/proc/}" >&2; return 1; }
    done
    return 0
}

# store_has ADDRESS MARKER: the message of case MARKER was delivered locally
# to ADDRESS.
store_has() {
    local dir=$SM_STORE/$1
    [ -d "$dir" ] && grep -rqxF "X-E2E-Case: $2" "$dir"
}

# sm_delivered MARKER: the message of case MARKER was delivered locally.
sm_delivered() { grep -rqxF "X-E2E-Case: $1" "$SM_STORE"; }

# No message waits in the queue (all delivered at once, interactive mode).
sm_queue_empty() { [ -z "$(find "$SM_DIR/queue" -name 'qf*' -print -quit)" ]; }

sendmail_suite() {
    if ! sm_start; then
        fail "sendmail: start Sendmail"
        return 1
    fi
    e2e_log "Sendmail $("$SM_BIN" -d0.1 -bt -C "$SM_DIR/sendmail.cf" </dev/null 2>/dev/null | awk '/^Version/ { print $2; exit }'): bridgehead 127.0.0.1:$SM_BH_PORT, submission 127.0.0.1:$SM_SUB_PORT (PID $SM_PID)"
    local bh=$SM_BH_PORT sub=$SM_SUB_PORT n
    local sender_ok='250 2.1.0 <*>... Sender ok' accepted='250 2.0.0 * Message accepted for delivery'

    # --- bridgehead (anonymous allowed) ---------------------------------
    n=sendmail-bridgehead-anonymous-to-local
    smtp_case "$n" --port "$bh" --from partner@partner.example --to carol@example.com \
        --expect mail '250 2.1.0 <partner@partner.example>... Sender ok' \
        --expect rcpt:carol@example.com '250 2.1.5 <carol@example.com>... Recipient ok' \
        --expect-glob dot "$accepted"
    check "$n: in carol's store" wait_until 15 store_has carol@example.com "$n"

    n=sendmail-bridgehead-anonymous-relay
    smtp_case "$n" --port "$bh" --from partner@partner.example --to victim@elsewhere.example \
        --expect rcpt:victim@elsewhere.example '550 5.7.1 <victim@elsewhere.example>... <victim@elsewhere.example>: Unable to relay' \
        --expect data '(none)'

    n=sendmail-bridgehead-trusted-relay
    smtp_case "$n" --port "$bh" --client 127.0.0.2 --from app@example.com --to someone@elsewhere.example \
        --expect rcpt:someone@elsewhere.example '250 2.1.5 <someone@elsewhere.example>... Recipient ok' \
        --expect-glob dot "$accepted"
    check "$n: reached smtp-sink" wait_until 15 sink_has "$n" someone@elsewhere.example

    # AUTH LOGIN here (smtp_case's --auth is PLAIN; the last --auth wins).
    # The login and the password are client lines of their own (stage
    # "other"): the final AUTH reply is the last reply of that stage.
    n=sendmail-bridgehead-authenticated-relay-login-mech
    smtp_case "$n" --port "$bh" --auth alice --swaks --auth --swaks LOGIN \
        --from alice@example.com --to x@elsewhere.example \
        --expect auth '334 VXNlcm5hbWU6' \
        --expect other '235 2.0.0 OK Authenticated' \
        --expect rcpt:x@elsewhere.example '250 2.1.5 <x@elsewhere.example>... Recipient ok' \
        --expect-glob dot "$accepted"
    check "$n: AUTH LOGIN was used" grep -q '^ -> AUTH LOGIN' "$E2E_ROOT/cases/$n.txt"
    check "$n: reached smtp-sink" wait_until 15 sink_has "$n" x@elsewhere.example

    n=sendmail-bridgehead-anonymous-to-restricted-list
    smtp_case "$n" --port "$bh" --from partner@partner.example --to all-staff@example.com \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>... <all-staff@example.com>: Authentication required to send to this recipient'

    n=sendmail-bridgehead-anonymous-local-sender
    smtp_case "$n" --port "$bh" --from ceo@example.com --to carol@example.com \
        --expect mail '550 5.7.1 <ceo@example.com>... Anonymous client does not have permissions to send as this sender'

    # --- submission (AUTH required by gatehouse, not by Sendmail) --------
    n=sendmail-submission-anonymous
    smtp_case "$n" --port "$sub" --from sendmail-anonymous@partner.example --to carol@example.com \
        --expect mail '530 5.7.0 Authentication required'
    check "$n: refused by gatehouse" gh_logged '.listener == "submission" and .sender == "sendmail-anonymous@partner.example" and .rule == "anonymous_access"'

    n=sendmail-submission-not-in-mail-senders
    smtp_case "$n" --port "$sub" --auth carol --from carol@example.com --to alice@example.com \
        --expect auth '235 2.0.0 OK Authenticated' \
        --expect mail '550 5.7.1 <carol@example.com>... Client does not have permissions to submit to this server'

    # A login typed with its domain: Sendmail passes it on as typed in
    # {auth_authen}, gatehouse resolves it by address.
    n=sendmail-submission-login-with-domain
    smtp_case "$n" --port "$sub" --auth alice@example.com --swaks --auth-password --swaks "$(sasl_password alice)" \
        --from alice@example.com --to all-staff@example.com \
        --expect auth '235 2.0.0 OK Authenticated' \
        --expect rcpt:all-staff@example.com '250 2.1.5 <all-staff@example.com>... Recipient ok' \
        --expect-glob dot "$accepted"
    check "$n: in all-staff's store" wait_until 15 store_has all-staff@example.com "$n"

    n=sendmail-submission-send-as-other
    smtp_case "$n" --port "$sub" --auth alice --from bob@example.com --to carol@example.com \
        --expect mail '550 5.7.1 <bob@example.com>... Client does not have permissions to send as this sender'

    n=sendmail-submission-nested-group-to-list
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to all-staff@example.com \
        --expect-glob mail "$sender_ok" \
        --expect rcpt:all-staff@example.com '250 2.1.5 <all-staff@example.com>... Recipient ok' \
        --expect-glob dot "$accepted"
    check "$n: in all-staff's store" wait_until 15 store_has all-staff@example.com "$n"

    n=sendmail-submission-contractor-to-list
    smtp_case "$n" --port "$sub" --auth bob --from bob@example.com --to all-staff@example.com \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>... <all-staff@example.com>: Not authorized to send to this recipient'

    n=sendmail-submission-relay-allowed-group
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to x@elsewhere.example \
        --expect rcpt:x@elsewhere.example '250 2.1.5 <x@elsewhere.example>... Recipient ok' \
        --expect-glob dot "$accepted"
    check "$n: reached smtp-sink" wait_until 15 sink_has "$n" x@elsewhere.example

    n=sendmail-submission-relay-deny-beats-allow
    smtp_case "$n" --port "$sub" --auth bob --from bob@example.com --to x@elsewhere.example \
        --expect rcpt:x@elsewhere.example '550 5.7.1 <x@elsewhere.example>... <x@elsewhere.example>: Not permitted to relay'

    n=sendmail-submission-multi-recipient
    smtp_case "$n" --port "$sub" --auth bob --from bob@example.com \
        --to carol@example.com --to x@elsewhere.example --to all-staff@example.com --to dave@example.com \
        --expect rcpt:carol@example.com '250 2.1.5 <carol@example.com>... Recipient ok' \
        --expect rcpt:x@elsewhere.example '550 5.7.1 <x@elsewhere.example>... <x@elsewhere.example>: Not permitted to relay' \
        --expect rcpt:all-staff@example.com '550 5.7.1 <all-staff@example.com>... <all-staff@example.com>: Not authorized to send to this recipient' \
        --expect rcpt:dave@example.com '250 2.1.5 <dave@example.com>... Recipient ok' \
        --expect-glob dot "$accepted"
    check "$n: in carol's store" wait_until 15 store_has carol@example.com "$n"
    check "$n: in dave's store" wait_until 15 store_has dave@example.com "$n"

    # Everything accepted so far is delivered: now the negative checks.
    check "sendmail: queue empty" wait_until 15 sm_queue_empty
    check_not "sendmail-bridgehead-anonymous-relay: not relayed" sink_has sendmail-bridgehead-anonymous-relay
    check_not "sendmail-submission-relay-deny-beats-allow: not relayed" sink_has sendmail-submission-relay-deny-beats-allow
    check_not "sendmail-submission-multi-recipient: not relayed" sink_has sendmail-submission-multi-recipient
    check_not "sendmail-submission-multi-recipient: not delivered to all-staff" \
        store_has all-staff@example.com sendmail-submission-multi-recipient
    check_not "sendmail-submission-contractor-to-list: not delivered" \
        store_has all-staff@example.com sendmail-submission-contractor-to-list

    # --- addresses as Sendmail rewrites them (tests/e2e/addresses.sh) ---
    address_battery sendmail "$bh" "$sub" sm_queue_empty sm_delivered

    # --- gatehouse down (F=T) -------------------------------------------
    stop_gatehouse
    n=sendmail-gatehouse-down-anonymous
    smtp_case "$n" --port "$bh" --from partner@partner.example --to carol@example.com \
        --expect-glob banner '220 *' \
        --expect mail '451 4.3.2 Please try again later' \
        --expect dot '(none)'
    n=sendmail-gatehouse-down-trusted-relay
    smtp_case "$n" --port "$bh" --client 127.0.0.2 --from app@example.com --to someone@elsewhere.example \
        --expect mail '451 4.3.2 Please try again later' \
        --expect dot '(none)'
    n=sendmail-gatehouse-down-submission
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to x@elsewhere.example \
        --expect auth '454 4.3.0 Please try again later' \
        --expect mail '(none)' \
        --expect dot '(none)'
    check "sendmail: queue empty after gatehouse down" sm_queue_empty
    check_not "sendmail-gatehouse-down-trusted-relay: not relayed" sink_has sendmail-gatehouse-down-trusted-relay
    check_not "sendmail-gatehouse-down-submission: not relayed" sink_has sendmail-gatehouse-down-submission
    check_not "sendmail-gatehouse-down-anonymous: not delivered" store_has carol@example.com sendmail-gatehouse-down-anonymous
    if ! start_gatehouse "$GH_CONFIG"; then
        fail "sendmail: restart gatehouse"
    fi
    n=sendmail-gatehouse-back
    smtp_case "$n" --port "$bh" --from partner@partner.example --to victim@elsewhere.example \
        --expect rcpt:victim@elsewhere.example '550 5.7.1 <victim@elsewhere.example>... <victim@elsewhere.example>: Unable to relay'

    sm_stop
    check "sendmail: no Sendmail process left" sm_none_left
}

# Run alone: bash tests/e2e/sendmail.sh [prepare]
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    if [ "${1:-}" = prepare ]; then
        sendmail_prepare
        exit $?
    fi
    # shellcheck source=tests/e2e/lib.sh
    . "$(dirname "$0")/lib.sh"
    # shellcheck source=tests/e2e/addresses.sh
    . "$(dirname "$0")/addresses.sh"
    e2e_enter_sandbox "$@"
    e2e_setup
    e2e_start_shared
    sendmail_suite
    e2e_summary
    exit $?
fi
