# shellcheck shell=bash
# Shared pieces of gatehouse's end-to-end suites (real MTAs, real SMTP).
# Sourced by tests/e2e/run.sh, tests/e2e/postfix.sh, tests/e2e/sendmail.sh
# and bench/postfix.sh; it runs nothing when sourced.
#
# Sandbox (network safety)
#   e2e_enter_sandbox "$@"   first thing a script does: unless already inside,
#                            re-executes the calling script under
#                            `unshare --net --mount --uts`. Inside: only
#                            loopback is up (checked), the host name is
#                            $E2E_HOSTNAME, and private copies of /etc/hosts,
#                            /etc/nsswitch.conf (hosts: files) and
#                            /etc/resolv.conf (nameserver 127.0.0.1) are
#                            bind-mounted, so an MTA resolves its own FQDN
#                            without DNS and nothing leaves the machine.
#   e2e_setup                temp root $E2E_ROOT (mode 0755, so MTA users can
#                            reach their folders), the cleanup trap, and a
#                            private copy of the gatehouse binary ($GH_BIN,
#                            copied from env GATEHOUSE_BIN, default
#                            target/debug/gatehouse; relative to the current
#                            folder or else to the repository).
#   e2e_on_cleanup CMD...    run CMD at exit (last registered runs first).
#   e2e_track_pid PID NAME   the cleanup trap stops PID (TERM, then KILL
#                            after 10 s). Processes are only ever stopped by
#                            recorded PID, never by name.
#   e2e_stop_pid PID         stop one tracked process now and wait for it.
#
# Ports and readiness
#   free_port                prints a TCP port no socket uses, below the
#                            ephemeral range (never the same one twice in
#                            one run).
#   wait_listen PORT [PID] [SECONDS]
#                            polls `ss -ltn` until PORT listens (never
#                            connects: a probe would be an SMTP session);
#                            fails early when PID dies.
#   wait_until SECONDS CMD...  polls CMD every 0.1 s until it succeeds.
#
# Shared services (started by run.sh, used by every MTA suite)
#   start_slapd / stop_slapd   tests/ldap/slapd.sh (LDAP_BIG=0) in
#                            $E2E_ROOT/slapd on $LDAP_PORT; start_slapd after
#                            stop_slapd starts the same directory again.
#   gatehouse_config FILE    writes the e2e config: conf/gatehouse.toml with
#                            the LDAP backend (service bind, password file),
#                            cache ttl/negative_ttl/stale_if_error "2s",
#                            listen inet:127.0.0.1:$GH_PORT, and the
#                            bridgehead's trusted_networks =
#                            ["127.0.0.2/32"] (swaks --local-interface
#                            127.0.0.2 is a trusted client).
#   gatehouse_config FILE record   the same with the JSON log of every
#                            decision, accepted ones too ([log] format =
#                            "json", accepted = true): the recording
#                            tests/e2e/replay.sh replays. (Not for
#                            bench/postfix.sh: it would measure the log.)
#   gh_logged JQ-CONDITION   true when a JSON line of $GH_LOG satisfies the
#                            jq condition (e.g. '.rule == "relay"').
#   start_gatehouse CONFIG   runs $GH_BIN in the background (PID $GH_PID,
#                            log appended to $GH_LOG) and waits for its
#                            "listening" log line. stop_gatehouse stops it.
#                            GH_MILTER is "inet:127.0.0.1:$GH_PORT".
#   start_sink               Postfix's smtp-sink on 127.0.0.1:$SINK_PORT as
#                            "the Internet": each received transaction is
#                            dumped to a file under $SINK_DIR.
#   sink_has MARKER [RCPT]   true when a message whose headers hold
#                            "X-E2E-Case: MARKER" reached the sink (for RCPT
#                            when given). sink_count prints the number of
#                            transactions received.
#   e2e_start_shared         all three: slapd, gatehouse (config in
#                            $E2E_ROOT/gatehouse.toml), smtp-sink.
#   A suite that stops a shared service starts it again before it returns.
#
# Assertions
#   smtp_case NAME [options]  one SMTP session with swaks, then checks:
#       --port P           server port on 127.0.0.1 (required)
#       --client IP        source address (swaks --local-interface)
#       --auth LOGIN       AUTH PLAIN as LOGIN with password pw-LOGIN
#       --from ADDR        envelope sender (default <>)
#       --to ADDR          recipient; repeat for several
#       --quit-after STAGE swaks --quit-after (e.g. MAIL, RCPT)
#       --expect STAGE REPLY       the last line of the reply at STAGE must
#                                  be exactly REPLY
#       --expect-glob STAGE GLOB   ... must match the shell pattern GLOB
#       --swaks ARG        one more raw swaks argument
#     STAGE is banner, ehlo, auth, mail, rcpt:ADDR, data, dot (the final
#     reply after the message), or quit; a stage that never happened has the
#     reply "(none)". Every message carries the header "X-E2E-Case: NAME", so
#     sink_has / the MTA's own mailbox checks find it. The transcript stays in
#     $E2E_ROOT/cases/NAME.txt (and is printed when the case fails).
#   check NAME CMD...         a case that passes when CMD succeeds.
#   check_not NAME CMD...     a case that passes when CMD fails.
#   pass NAME / fail NAME [DETAIL]   count and print `ok   NAME` / `FAIL NAME`.
#   e2e_summary               prints "N passed, M failed" alone on a line;
#                             returns 1 when M > 0.
#   e2e_fatal MESSAGE         a setup step failed: counts a failure, prints
#                             the summary and exits 1 (the trap cleans up).
#
# SASL logins for tests: alice, bob, carol, dave with password pw-<login>
# (E2E_USERS, sasl_password LOGIN).
#
# Environment: GATEHOUSE_BIN (gatehouse binary), E2E_KEEP=1 keeps the temp
# root after the run (its path is printed).

E2E_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/lib/ports.sh
. "$E2E_REPO/tests/lib/ports.sh"
E2E_HOSTNAME=mx.gatehouse-e2e.test
# shellcheck disable=SC2034 # used by the MTA suites
E2E_USERS=(alice bob carol dave)
E2E_PASS=0
E2E_FAIL=0
E2E_PIDS=()
E2E_CLEANUP=()

e2e_log() { printf '== %s\n' "$*" >&2; }

sasl_password() { printf 'pw-%s' "$1"; }

# ---------------------------------------------------------------- sandbox

# Inside = the marker is set and this process's network namespace is not
# init's (a stray marker in the environment cannot skip the sandbox).
e2e_in_sandbox() {
    [ "${GATEHOUSE_E2E_SANDBOX:-}" = 1 ] \
        && [ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ]
}

e2e_enter_sandbox() {
    if ! e2e_in_sandbox; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "e2e: must run as root (network namespace, MTAs)" >&2
            exit 1
        fi
        export GATEHOUSE_E2E_SANDBOX=1
        exec unshare --net --mount --uts -- bash "$0" "$@"
    fi
    ip link set lo up || { echo "e2e: cannot bring up lo" >&2; exit 1; }
    local other
    other=$(ip -o addr | awk '$2 != "lo"')
    if [ -n "$other" ]; then
        echo "e2e: network namespace has interfaces other than lo:" >&2
        echo "$other" >&2
        exit 1
    fi
    echo "$E2E_HOSTNAME" >/proc/sys/kernel/hostname
}

# Private /etc files for the namespace (called by e2e_setup; the bind mounts
# vanish with the mount namespace).
e2e_private_etc() {
    local etc=$E2E_ROOT/etc
    mkdir -p "$etc"
    cat >"$etc/hosts" <<EOF
127.0.0.1 $E2E_HOSTNAME ${E2E_HOSTNAME%%.*} localhost
127.0.0.2 trusted.gatehouse-e2e.test
::1 localhost ip6-localhost ip6-loopback
EOF
    if [ -f /etc/nsswitch.conf ]; then
        sed -e 's/^hosts:.*/hosts: files/' -e 's/^networks:.*/networks: files/' \
            /etc/nsswitch.conf >"$etc/nsswitch.conf"
    else
        printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$etc/nsswitch.conf"
    fi
    grep -q '^hosts:' "$etc/nsswitch.conf" || echo 'hosts: files' >>"$etc/nsswitch.conf"
    echo 'nameserver 127.0.0.1' >"$etc/resolv.conf"
    mount --bind "$etc/hosts" /etc/hosts || e2e_fatal "bind-mount /etc/hosts"
    if [ -e /etc/nsswitch.conf ]; then
        mount --bind "$etc/nsswitch.conf" /etc/nsswitch.conf || e2e_fatal "bind-mount /etc/nsswitch.conf"
    fi
    # Without it (or if it cannot be covered) the resolver asks 127.0.0.1
    # anyway, and the namespace has nothing else to reach.
    if [ -e /etc/resolv.conf ]; then
        mount --bind "$etc/resolv.conf" /etc/resolv.conf 2>/dev/null \
            || echo "e2e: note: /etc/resolv.conf not covered" >&2
    fi
}

# ---------------------------------------------------------------- lifecycle

e2e_setup() {
    E2E_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-e2e.XXXXXX")
    chmod 0755 "$E2E_ROOT"
    trap e2e_cleanup EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$E2E_ROOT/bin" "$E2E_ROOT/cases"
    e2e_private_etc
    local bin=${GATEHOUSE_BIN:-target/debug/gatehouse}
    # A relative path: from the current folder, else from the repository.
    case $bin in /*) ;; *) [ -x "$bin" ] && bin=$PWD/$bin || bin=$E2E_REPO/$bin ;; esac
    [ -x "$bin" ] || e2e_fatal "gatehouse binary not found: $bin (set GATEHOUSE_BIN)"
    # A private copy: a rebuild during the run cannot change it.
    cp "$bin" "$E2E_ROOT/bin/gatehouse"
    GH_BIN=$E2E_ROOT/bin/gatehouse
    e2e_log "temp root $E2E_ROOT, host name $(uname -n)"
}

e2e_on_cleanup() { E2E_CLEANUP+=("$*"); }

e2e_track_pid() { E2E_PIDS+=("$1"); printf '%s\n' "$1 $2" >>"$E2E_ROOT/pids"; }

# True while PID is a live process (a zombie counts as exited).
e2e_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

e2e_stop_pid() {
    local pid=$1 i
    # Forget it first: a PID stopped once must never be signalled again (it
    # may belong to another process by then).
    for i in "${!E2E_PIDS[@]}"; do
        if [ "${E2E_PIDS[$i]}" = "$pid" ]; then unset 'E2E_PIDS[i]'; fi
    done
    e2e_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        e2e_alive "$pid" || break
        sleep 0.1
    done
    if e2e_alive "$pid"; then
        echo "e2e: PID $pid still running after 10 s, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
}

e2e_cleanup() {
    local status=$? i
    trap - EXIT
    for ((i = ${#E2E_CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${E2E_CLEANUP[$i]}" || true
    done
    local -a pids=(${E2E_PIDS[@]+"${E2E_PIDS[@]}"})
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        e2e_stop_pid "${pids[$i]}"
    done
    if [ -n "${LDAP_DIR:-}" ] && [ -f "$LDAP_DIR/slapd.pid" ]; then
        "$E2E_REPO/tests/ldap/slapd.sh" stop "$LDAP_DIR" || true
    fi
    if [ -n "${E2E_ROOT:-}" ] && [ -d "$E2E_ROOT" ]; then
        if [ "${E2E_KEEP:-0}" = 1 ]; then
            e2e_log "kept $E2E_ROOT"
        else
            rm -rf "$E2E_ROOT"
        fi
    fi
    exit "$status"
}

# ---------------------------------------------------------------- ports

free_port() { unused_port "$E2E_ROOT/ports.given"; }

wait_listen() {
    local port=$1 pid=${2:-} secs=${3:-20} i
    for ((i = 0; i < secs * 20; i++)); do
        if [ -n "$(ss -ltnH "sport = :$port" 2>/dev/null)" ]; then return 0; fi
        if [ -n "$pid" ] && ! e2e_alive "$pid"; then
            echo "e2e: PID $pid exited before port $port listened" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "e2e: nothing listens on port $port after $secs s" >&2
    return 1
}

wait_until() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 10; i++)); do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    "$@"
}

# ---------------------------------------------------------------- slapd

start_slapd() {
    LDAP_DIR=$E2E_ROOT/slapd
    LDAP_PORT=${LDAP_PORT:-$(free_port)}
    LDAP_URL=ldap://127.0.0.1:$LDAP_PORT
    LDAP_BIG=0 "$E2E_REPO/tests/ldap/slapd.sh" start "$LDAP_DIR" "$LDAP_PORT" >"$E2E_ROOT/slapd.start.log" 2>&1 \
        || { cat "$E2E_ROOT/slapd.start.log" >&2; return 1; }
}

stop_slapd() { "$E2E_REPO/tests/ldap/slapd.sh" stop "$LDAP_DIR"; }

# ---------------------------------------------------------------- gatehouse

# The e2e configuration, from conf/gatehouse.toml as tests/common/mod.rs
# ldap_example_config builds it: the part from "[directory]" up to
# "[domains]" is replaced by the LDAP directory and a short cache.
gatehouse_config() {
    local out=$1 record=${2:-} secret=$E2E_ROOT/gatehouse.secret
    local -a log_format=()
    if [ "$record" = record ]; then
        log_format=(-e 's|^format = "text"$|format = "json"|' -e 's|^accepted = false$|accepted = true|')
    fi
    GH_PORT=${GH_PORT:-$(free_port)}
    GH_MILTER=inet:127.0.0.1:$GH_PORT
    GH_POLICY_PORT=${GH_POLICY_PORT:-$(free_port)}
    GH_POLICY=inet:127.0.0.1:$GH_POLICY_PORT
    GH_METRICS_PORT=${GH_METRICS_PORT:-$(free_port)}
    printf 'gatehouse-secret\n' >"$secret"
    chmod 600 "$secret"
    awk -v url="$LDAP_URL" -v secret="$secret" '
        /^\[directory\]$/ {
            skip = 1
            print "[directory]"
            print "backend = \"ldap\""
            print ""
            print "[directory.ldap]"
            print "urls = [\"" url "\"]"
            print "bind_dn = \"cn=gatehouse,ou=services,dc=example,dc=com\""
            print "bind_password_file = \"" secret "\""
            print "base_dn = \"dc=example,dc=com\""
            print "timeout = \"1s\""
            print ""
            print "# Short, so that the directory-down cases are deterministic."
            print "[cache]"
            print "ttl = \"2s\""
            print "negative_ttl = \"2s\""
            print "stale_if_error = \"2s\""
            print ""
            next
        }
        /^\[domains\]$/ { skip = 0 }
        !skip { print }
    ' "$E2E_REPO/conf/gatehouse.toml" \
        | sed -e "s|^listen = \[\"inet:127.0.0.1:8890\"\]|listen = [\"$GH_MILTER\"]|" \
              -e 's|^trusted_networks = \["10.0.0.0/8"\]|trusted_networks = ["127.0.0.2/32"]|' \
              -e "s|^listen = \[\] .*\$|listen = [\"$GH_POLICY\"]|" \
              -e 's|^local_delivery_domains = \[\] .*$|local_delivery_domains = ["mx.example.com"]|' \
              ${log_format[@]+"${log_format[@]}"} \
              >"$out"
    printf '\n[metrics]\nlisten = "127.0.0.1:%s"\n' "$GH_METRICS_PORT" >>"$out"
    grep -q "^listen = \[\"$GH_MILTER\"\]" "$out" || { echo "e2e: listen not substituted in $out" >&2; return 1; }
    grep -q '^trusted_networks = \["127.0.0.2/32"\]' "$out" || { echo "e2e: trusted_networks not substituted in $out" >&2; return 1; }
    grep -q '^backend = "ldap"' "$out" || { echo "e2e: [directory] not replaced in $out" >&2; return 1; }
    grep -q "^listen = \[\"$GH_POLICY\"\]" "$out" || { echo "e2e: policy_service listen not substituted in $out" >&2; return 1; }
    grep -q '^local_delivery_domains = \["mx.example.com"\]' "$out" || { echo "e2e: local_delivery_domains not substituted in $out" >&2; return 1; }
    if [ "$record" = record ]; then
        if ! grep -q '^format = "json"$' "$out" || ! grep -q '^accepted = true$' "$out"; then
            echo "e2e: [log] format/accepted not substituted in $out" >&2
            return 1
        fi
    fi
}

gh_logged() {
    # (jq 1.6's any/2 misses matches behind `fromjson?`: limit/2 does not.)
    jq -Rne "[limit(1; inputs | fromjson? | select($1))] | length > 0" <"$GH_LOG" >/dev/null
}

# scrape_metrics: gatehouse's /metrics page (bash's /dev/tcp: no curl).
scrape_metrics() {
    local page
    exec 3<>"/dev/tcp/127.0.0.1/$GH_METRICS_PORT" || return 1
    printf 'GET /metrics HTTP/1.1\r\nHost: gatehouse\r\nConnection: close\r\n\r\n' >&3
    page=$(timeout 10 cat <&3)
    exec 3<&-
    printf '%s\n' "$page"
}

# metric_sum PAGE NAME LABEL...: the sum of NAME's samples carrying every
# LABEL (as written, e.g. 'action="reject"').
metric_sum() {
    local page=$1 name=$2
    shift 2
    printf '%s\n' "$page" | awk -v name="$name" -v want="$*" '
        BEGIN { n = split(want, labels, " ") }
        $0 !~ /^#/ && (index($0, name "{") == 1 || index($0, name " ") == 1) {
            ok = 1
            for (i = 1; i <= n; i++) if (index($0, labels[i]) == 0) ok = 0
            if (ok) sum += $NF
        }
        END { print sum + 0 }'
}

# check_metrics NAME SERVICE: every family on the page, and the counters
# moved as a suite through SERVICE (milter or policy) moves them.
check_metrics() {
    local name=$1 service=$2 page family
    page=$(scrape_metrics) || { fail "$name: /metrics answers"; return; }
    for family in decisions decision_duration_seconds connections connections_open protocol_errors \
        directory_operations directory_operation_duration_seconds directory_failovers reloads \
        config_version directory_cache_hits directory_cache_misses directory_cache_entries \
        directory_following; do
        check "$name: family gatehouse_$family" grep -q "^# TYPE gatehouse_$family " <<<"$page"
    done
    check "$name: refusals counted" [ "$(metric_sum "$page" gatehouse_decisions_total 'action="reject"')" -gt 0 ]
    check "$name: accepts counted" [ "$(metric_sum "$page" gatehouse_decisions_total 'action="accept"')" -gt 0 ]
    check "$name: $service decisions timed" \
        [ "$(metric_sum "$page" gatehouse_decision_duration_seconds_count "service=\"$service\"")" -gt 0 ]
    check "$name: $service connections counted" \
        [ "$(metric_sum "$page" gatehouse_connections_total "service=\"$service\"" 'event="opened"')" -gt 0 ]
    check "$name: directory searched" \
        [ "$(metric_sum "$page" gatehouse_directory_operations_total "server=\"$LDAP_URL\"" 'result="ok"')" -gt 0 ]
    check "$name: cache used" [ "$(metric_sum "$page" gatehouse_directory_cache_hits_total)" -gt 0 ]
    check_not "$name: no address in the metrics" grep -q '@' <<<"$page"
}

start_gatehouse() {
    GH_CONFIG=$1
    GH_LOG=${GH_LOG:-$E2E_ROOT/gatehouse.log}
    local from i
    touch "$GH_LOG"
    from=$(($(wc -l <"$GH_LOG") + 1))
    "$GH_BIN" --config "$GH_CONFIG" </dev/null >>"$GH_LOG" 2>&1 &
    GH_PID=$!
    e2e_track_pid "$GH_PID" gatehouse
    # Listening on every socket of its configuration (the milter's and the
    # policy service's, when configured).
    local -a want
    mapfile -t want < <(sed -n 's/^listen = \[\([^]]*\)\].*/\1/p' "$GH_CONFIG" | grep -o '"[^"]*"' | tr -d '"')
    for ((i = 0; i < 200; i++)); do
        if gatehouse_listens "$from" "${want[@]}"; then return 0; fi
        if ! e2e_alive "$GH_PID"; then
            tail -n +"$from" "$GH_LOG" >&2
            echo "e2e: gatehouse exited during startup" >&2
            return 1
        fi
        sleep 0.05
    done
    tail -n +"$from" "$GH_LOG" >&2
    echo "e2e: gatehouse not listening after 10 s" >&2
    return 1
}

# gatehouse_listens FROM SOCKET...: the log from line FROM on says
# "listening" for every SOCKET (text or JSON log).
gatehouse_listens() {
    local from=$1 socket lines
    shift
    # A blank after each line: a unix socket's line ends with its name.
    lines=$(tail -n +"$from" "$GH_LOG" | grep 'listening' | sed 's/$/ /')
    for socket in "$@"; do
        grep -qF -e "socket=$socket " -e "\"socket\":\"$socket\"" <<<"$lines" || return 1
    done
}

stop_gatehouse() { e2e_stop_pid "$GH_PID"; }

# ---------------------------------------------------------------- sink

start_sink() {
    SINK_PORT=${SINK_PORT:-$(free_port)}
    SINK_DIR=$E2E_ROOT/sink
    mkdir -p "$SINK_DIR"
    chown nobody "$SINK_DIR"
    # -d: one file per transaction (the dump holds the envelope as
    # X-Rcpt-Args etc. and the message); -u: smtp-sink refuses to run as root.
    smtp-sink -u nobody -d "$SINK_DIR/%Y%m%d%H%M%S." 127.0.0.1:"$SINK_PORT" 64 \
        </dev/null >"$E2E_ROOT/sink.log" 2>&1 &
    SINK_PID=$!
    e2e_track_pid "$SINK_PID" smtp-sink
    wait_listen "$SINK_PORT" "$SINK_PID" || { cat "$E2E_ROOT/sink.log" >&2; return 1; }
}

sink_count() { find "$SINK_DIR" -type f | wc -l; }

# A dump starts with X-Client-Addr, X-Client-Proto, X-Helo-Args,
# X-Mail-Args and one "X-Rcpt-Args: <rcpt> ..." per recipient, then the
# message as received.
sink_has() {
    local marker=$1 rcpt=${2:-} f
    while IFS= read -r f; do
        if [ -z "$rcpt" ] || grep -i '^X-Rcpt-Args:' "$f" | grep -qiF "<$rcpt>"; then
            return 0
        fi
    done < <(grep -rlxF "X-E2E-Case: $marker" "$SINK_DIR" 2>/dev/null)
    return 1
}

e2e_start_shared() {
    start_slapd || e2e_fatal "slapd did not start"
    gatehouse_config "$E2E_ROOT/gatehouse.toml" record || e2e_fatal "gatehouse config"
    start_gatehouse "$E2E_ROOT/gatehouse.toml" || e2e_fatal "gatehouse did not start"
    start_sink || e2e_fatal "smtp-sink did not start"
    e2e_log "slapd $LDAP_URL, gatehouse $GH_MILTER and policy service $GH_POLICY (PID $GH_PID), smtp-sink 127.0.0.1:$SINK_PORT"
}

# ---------------------------------------------------------------- assertions

pass() { E2E_PASS=$((E2E_PASS + 1)); printf 'ok   %s\n' "$1"; }

fail() {
    E2E_FAIL=$((E2E_FAIL + 1))
    printf 'FAIL %s\n' "$1"
    if [ -n "${2:-}" ]; then printf '%s\n' "$2" | sed 's/^/     /'; fi
}

check() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name" "command failed: $*"; fi
}

check_not() {
    local name=$1
    shift
    if "$@"; then fail "$name" "command succeeded: $*"; else pass "$name"; fi
}

e2e_summary() {
    printf '%s passed, %s failed\n' "$E2E_PASS" "$E2E_FAIL"
    [ "$E2E_FAIL" -eq 0 ]
}

e2e_fatal() {
    fail "setup: $*"
    e2e_summary
    exit 1
}

# The last reply line for each stage of a swaks transcript, as
# "STAGE<TAB>REPLY" lines. Client lines start with " -> ", server lines
# with "<- " or "<** " (swaks marks unexpected replies with **).
e2e_replies() {
    awk '
        function flush() { if (stage != "") print stage "\t" (reply == "" ? "(none)" : reply) }
        BEGIN { stage = "banner"; reply = "" }
        /^ -> / {
            line = substr($0, 5)
            next_stage = ""
            u = toupper(line)
            if (indata) {
                # swaks -n summarises the body as " -> N lines sent".
                if (line == "." || line ~ /^[0-9]+ lines sent$/) next_stage = "dot"
                else next
            } else if (u ~ /^(EHLO|HELO|LHLO) /) next_stage = "ehlo"
            else if (u ~ /^AUTH /) next_stage = "auth"
            else if (u ~ /^MAIL FROM:/) next_stage = "mail"
            else if (u ~ /^RCPT TO:/) {
                a = line; sub(/^[^<]*</, "", a); sub(/>.*$/, "", a)
                next_stage = "rcpt:" tolower(a)
            }
            else if (u == "DATA") next_stage = "data"
            else if (u == "QUIT") next_stage = "quit"
            else if (u == "STARTTLS") next_stage = "starttls"
            else if (u == "RSET") next_stage = "rset"
            else next_stage = "other"
            flush()
            stage = next_stage; reply = ""
            if (stage == "data") indata = 1
            if (stage == "dot") indata = 0
            next
        }
        /^<(-|\*\*) / { r = $0; sub(/^<(-|\*\*) +/, "", r); reply = r; if (stage == "data" && r ~ /^354/) indata = 1; else if (stage == "data") indata = 0; next }
        END { flush() }
    '
}

# e2e_replies output with what Postfix writes before a policy service's
# answer taken out: "<rcpt>: Recipient address rejected: " leaves the
# "<rcpt>: " that the milter's replies begin with, "<sender>: Sender
# address rejected: " nothing (the milter's MAIL replies name no address).
# What remains is gatehouse's code, enhanced code and text.
e2e_without_policy_prefix() {
    sed -E -e 's/^([^\t]*\t[45][0-9][0-9] [45]\.[0-9]+\.[0-9]+ )(<[^>]*>: )Recipient address rejected: /\1\2/' \
           -e 's/^([^\t]*\t[45][0-9][0-9] [45]\.[0-9]+\.[0-9]+ )<[^>]*>: Sender address rejected: /\1/'
}

smtp_case() {
    local name=$1
    shift
    local port='' client='' auth='' from='<>' quit_after=''
    local -a to=() expect_stage=() expect_value=() expect_kind=() extra=()
    while [ $# -gt 0 ]; do
        case $1 in
            --port) port=$2; shift 2 ;;
            --client) client=$2; shift 2 ;;
            --auth) auth=$2; shift 2 ;;
            --from) from=$2; shift 2 ;;
            --to) to+=("$2"); shift 2 ;;
            --quit-after) quit_after=$2; shift 2 ;;
            --expect) expect_kind+=(exact); expect_stage+=("$2"); expect_value+=("$3"); shift 3 ;;
            --expect-glob) expect_kind+=(glob); expect_stage+=("$2"); expect_value+=("$3"); shift 3 ;;
            --swaks) extra+=("$2"); shift 2 ;;
            *) echo "smtp_case: unknown option $1" >&2; fail "$name" "bad smtp_case call"; return 1 ;;
        esac
    done
    local transcript=$E2E_ROOT/cases/${name//[^A-Za-z0-9._-]/_}.txt
    local -a args=(--server 127.0.0.1 --port "$port" --helo client.gatehouse-e2e.test
        --timeout 30 --from "$from" --header "X-E2E-Case: $name" --header "Subject: $name")
    local rcpts
    rcpts=$(IFS=,; echo "${to[*]}")
    args+=(--to "$rcpts")
    if [ -n "$client" ]; then args+=(--local-interface "$client"); fi
    if [ -n "$auth" ]; then
        args+=(--auth PLAIN --auth-user "$auth" --auth-password "$(sasl_password "$auth")")
    fi
    if [ -n "$quit_after" ]; then args+=(--quit-after "$quit_after"); fi
    swaks "${args[@]}" ${extra[@]+"${extra[@]}"} >"$transcript" 2>&1 </dev/null
    local replies problems='' i got
    replies=$(e2e_replies <"$transcript")
    if [ "${E2E_REPLIES_FROM:-}" = postfix-policy ]; then
        replies=$(e2e_without_policy_prefix <<<"$replies")
    fi
    for i in "${!expect_stage[@]}"; do
        got=$(awk -F'\t' -v s="${expect_stage[$i]}" '$1 == s { r = $2 } END { print (r == "" ? "(none)" : r) }' <<<"$replies")
        if [ "${expect_kind[$i]}" = exact ]; then
            [ "$got" = "${expect_value[$i]}" ] && continue
        else
            # shellcheck disable=SC2053 # the expectation is a pattern
            [[ $got == ${expect_value[$i]} ]] && continue
        fi
        problems+="${expect_stage[$i]}: expected '${expect_value[$i]}', got '$got'"$'\n'
    done
    if [ -z "$problems" ]; then
        pass "$name"
    else
        fail "$name" "${problems}--- transcript:"$'\n'"$(cat "$transcript")"
        return 1
    fi
}

# Postfix's internal services (chroot off: the queue is a temp folder
# without the files a chroot needs). Used by tests/e2e/postfix.sh and
# bench/postfix.sh; the SMTP listeners are theirs.
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
