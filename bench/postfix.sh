#!/usr/bin/env bash
# bench/postfix.sh - what gatehouse costs a real Postfix.
#
#     bash bench/postfix.sh        (as root; Postfix, slapd: see
#                                   scripts/install-test-deps.sh)
#
# One Postfix (from a temporary config directory, inside the same private
# network namespace as the e2e suite: tests/e2e/lib.sh) with smtpd
# listeners that differ only in the milter:
#   plain      -o smtpd_milters= (no milter)
#   gatehouse  smtpd_milters from packaging/postfix/main.cf.snippet
#   echo       the echo milter (examples/echo_milter: negotiates exactly as
#              gatehouse does and answers without looking), when its binary
#              is there: what any milter with gatehouse's round trips costs,
#              so that gatehouse / echo is gatehouse's own share.
#   policy     no milter; gatehouse's policy-delegation listener in
#              smtpd_recipient_restrictions, as
#              packaging/postfix/main.cf.policy.snippet sets it (one
#              question per recipient)
#   noop-policy  the same with the do-nothing policy server
#              (examples/noop_policy: answers DUNNO without reading), when
#              its binary is there: the floor of any policy service.
# Postfix's smtp-source sends MESSAGES messages (one SMTP session each,
# SESSIONS in parallel) to one listener, then the next, ROUNDS times,
# interleaved (plain, gatehouse, echo, policy, noop-policy, plain, ...) so that
# drift in the machine's load hits all alike. Each message is from alice@example.com to
# all-staff@example.com and is discarded after queueing (discard(8)), so the
# figure is Postfix's SMTP receive path with and without gatehouse.
#
# gatehouse runs the e2e configuration (conf/gatehouse.toml with the LDAP
# backend on a throw-away slapd, normal cache ttl) with the bridgehead's
# trusted_networks = 127.0.0.0/8: the client is trusted, so its envelope
# sender is resolved in the directory (alice, from the cache after the first
# message) and all-staff@example.com's restriction (accept_from group:All
# Staff, nested twice) is evaluated for every message - the whole policy,
# answered ACCEPT at DATA.
#
# Environment:
#   MESSAGES       messages per run (default 5000)
#   ROUNDS         runs per listener (default 3)
#   SESSIONS       parallel SMTP sessions of smtp-source (default 10)
#   MILTER_SOCKET  unix (default: the milters listen on unix sockets, the
#                  usual set-up with gatehouse on the MTA host) or inet
#                  (127.0.0.1 TCP ports)
#   GATEHOUSE_BIN  gatehouse binary (default target/release/gatehouse;
#                  build it with cargo build --release)
#   ECHO_MILTER_BIN  the echo milter (default
#                  target/release/examples/echo_milter; skipped if missing)
#   NOOP_POLICY_BIN  the do-nothing policy server (default
#                  target/release/examples/noop_policy; skipped if missing)
#
# Prints messages/s per run, the median per listener, the cost
# 1 - gatehouse/plain (goal: < 3%), and the CPU time per message: the whole
# machine's (from /proc/stat) and the milter or policy process's own. For
# policy delegation: gatehouse's cost against the do-nothing server's (goal:
# at most 1.25 times) and its own CPU per message against the do-nothing
# server's (goal: at most 2 times). Exit status 0 when the benchmark ran.
set -uo pipefail

MESSAGES=${MESSAGES:-5000}
ROUNDS=${ROUNDS:-3}
SESSIONS=${SESSIONS:-10}
MILTER_SOCKET=${MILTER_SOCKET:-unix}
export GATEHOUSE_BIN=${GATEHOUSE_BIN:-target/release/gatehouse}

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/../tests/e2e/lib.sh"
e2e_enter_sandbox "$@"
e2e_setup

die() { echo "bench/postfix.sh: $*" >&2; exit 1; }

start_slapd || die "slapd did not start"
gatehouse_config "$E2E_ROOT/gatehouse.toml" || die "gatehouse config"
# Production-like cache; the client (127.0.0.1) is trusted.
sed -i -e 's/^ttl = "2s"/ttl = "5m"/' -e 's/^negative_ttl = "2s"/negative_ttl = "30s"/' \
    -e 's/^stale_if_error = "2s"/stale_if_error = "1h"/' \
    -e 's|^trusted_networks = \["127.0.0.2/32"\]|trusted_networks = ["127.0.0.0/8"]|' \
    "$E2E_ROOT/gatehouse.toml"
grep -q '^trusted_networks = \["127.0.0.0/8"\]' "$E2E_ROOT/gatehouse.toml" || die "trusted_networks not set"
if [ "$MILTER_SOCKET" = unix ]; then
    # Postfix's smtpd (user postfix, not chrooted here) must be able to connect.
    GH_SOCK=$E2E_ROOT/gatehouse.sock
    sed -i -e "s|^listen = \[\"$GH_MILTER\"\]|listen = [\"unix:$GH_SOCK\"]|" \
        -e 's/^socket_mode = "0660"/socket_mode = "0666"/' "$E2E_ROOT/gatehouse.toml"
    grep -q "^listen = \[\"unix:$GH_SOCK\"\]" "$E2E_ROOT/gatehouse.toml" || die "listen not set to the unix socket"
    GH_MILTER=unix:$GH_SOCK
    GH_POLICY_SOCK=$E2E_ROOT/gatehouse-policy.sock
    sed -i -e "s|^listen = \[\"$GH_POLICY\"\]|listen = [\"unix:$GH_POLICY_SOCK\"]|" "$E2E_ROOT/gatehouse.toml"
    grep -q "^listen = \[\"unix:$GH_POLICY_SOCK\"\]" "$E2E_ROOT/gatehouse.toml" || die "policy listen not set to the unix socket"
    GH_POLICY=unix:$GH_POLICY_SOCK
fi
start_gatehouse "$E2E_ROOT/gatehouse.toml" || die "gatehouse did not start"

# start_reference LABEL BINARY NAME: start a reference server (the echo
# milter, the do-nothing policy server) on a unix socket or a TCP port as
# MILTER_SOCKET says; sets REF_ENDPOINT, REF_PORT and REF_PID. Returns 1
# (measuring without it) when BINARY is missing.
start_reference() {
    local label=$1 bin=$2 name=$3
    case $bin in /*) ;; *) bin=$E2E_REPO/$bin ;; esac
    if [ ! -x "$bin" ]; then
        echo "bench/postfix.sh: no $label at $bin; measuring without it" >&2
        return 1
    fi
    cp "$bin" "$E2E_ROOT/bin/$name"
    REF_PORT=$(free_port)
    if [ "$MILTER_SOCKET" = unix ]; then
        REF_ENDPOINT=unix:$E2E_ROOT/$name.sock
    else
        REF_ENDPOINT=inet:127.0.0.1:$REF_PORT
    fi
    "$E2E_ROOT/bin/$name" "$REF_ENDPOINT" </dev/null >"$E2E_ROOT/$name.log" 2>&1 &
    REF_PID=$!
    e2e_track_pid "$REF_PID" "$name"
    if [ "$MILTER_SOCKET" = unix ]; then
        wait_until 10 test -S "$E2E_ROOT/$name.sock" || die "$label did not start"
        chmod 666 "$E2E_ROOT/$name.sock"
    else
        wait_listen "$REF_PORT" "$REF_PID" || die "$label did not start"
    fi
}

ECHO_PORT=
if start_reference "echo milter" "${ECHO_MILTER_BIN:-target/release/examples/echo_milter}" echo_milter; then
    ECHO_PORT=$REF_PORT ECHO_MILTER=$REF_ENDPOINT ECHO_PID=$REF_PID
fi
NOOP_PORT=
if start_reference "do-nothing policy server" "${NOOP_POLICY_BIN:-target/release/examples/noop_policy}" noop_policy; then
    NOOP_PORT=$REF_PORT NOOP_POLICY=$REF_ENDPOINT NOOP_PID=$REF_PID
fi

PF=$E2E_ROOT/postfix
PF_CONF=$PF/etc
PF_QUEUE=$PF/spool
PLAIN_PORT=$(free_port)
GH_LISTENER_PORT=$(free_port)
mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF/data"
chown postfix "$PF/data"
{
    cat <<EOF
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $PF/data
maillog_file = $PF/maillog
maillog_file_prefixes = $E2E_ROOT
myhostname = $E2E_HOSTNAME
mydomain = gatehouse-e2e.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_relay_restrictions = check_client_access static:OK, reject_unauth_destination
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
# Accept for example.com, then throw everything away.
virtual_mailbox_domains = example.com
virtual_mailbox_maps = static:discarded
virtual_transport = discard:
default_transport = discard:
# Room for the bench's parallel sessions.
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
# As packaging/postfix/main.cf.policy.snippet has them, for the policy
# listeners (which set their restriction lists in master.cf).
smtpd_policy_service_default_action = 451 4.7.1 Service unavailable - try again later
smtpd_policy_service_timeout = 10s
smtpd_policy_service_max_idle = 300s
EOF
    sed -e "s|^smtpd_milters = inet:127.0.0.1:8890\$|smtpd_milters = $GH_MILTER|" \
        "$E2E_REPO/packaging/postfix/main.cf.snippet"
} >"$PF_CONF/main.cf"
grep -q "^smtpd_milters = $GH_MILTER\$" "$PF_CONF/main.cf" || die "smtpd_milters not found in main.cf.snippet"
cat >"$PF_CONF/master.cf" <<EOF
127.0.0.1:$PLAIN_PORT inet n - n - - smtpd
  -o smtpd_milters=
127.0.0.1:$GH_LISTENER_PORT inet n - n - - smtpd
  -o milter_macro_daemon_name=bridgehead
EOF
if [ -n "$ECHO_PORT" ]; then
    ECHO_LISTENER_PORT=$(free_port)
    cat >>"$PF_CONF/master.cf" <<EOF
127.0.0.1:$ECHO_LISTENER_PORT inet n - n - - smtpd
  -o milter_macro_daemon_name=bridgehead
  -o smtpd_milters=$ECHO_MILTER
EOF
fi
# The policy listeners: no milter, the service where the policy snippet
# puts it.
policy_listener() {
    cat <<EOF
127.0.0.1:$1 inet n - n - - smtpd
  -o smtpd_milters=
  -o smtpd_policy_service_policy_context=bridgehead
  -o { smtpd_recipient_restrictions = check_policy_service $2 }
EOF
}
POLICY_LISTENER_PORT=$(free_port)
policy_listener "$POLICY_LISTENER_PORT" "$GH_POLICY" >>"$PF_CONF/master.cf"
if [ -n "$NOOP_PORT" ]; then
    NOOP_LISTENER_PORT=$(free_port)
    policy_listener "$NOOP_LISTENER_PORT" "$NOOP_POLICY" >>"$PF_CONF/master.cf"
fi
pf_master_base >>"$PF_CONF/master.cf"

pf() { script -q -e -c "postfix -c '$PF_CONF' $*" /dev/null </dev/null >>"$PF/postfix-cmd.log" 2>&1; }
if ! pf check || ! pf start; then
    cat "$PF/postfix-cmd.log" >&2
    die "postfix did not start"
fi
master_pid=$(tr -d ' ' <"$PF_QUEUE/pid/master.pid")
e2e_track_pid "$master_pid" postfix-master
e2e_on_cleanup "pf stop || true"
wait_listen "$PLAIN_PORT" "$master_pid" || die "postfix not listening"
wait_listen "$GH_LISTENER_PORT" "$master_pid" || die "postfix not listening"
if [ -n "$ECHO_PORT" ]; then wait_listen "$ECHO_LISTENER_PORT" "$master_pid" || die "postfix not listening"; fi
wait_listen "$POLICY_LISTENER_PORT" "$master_pid" || die "postfix not listening"
if [ -n "$NOOP_PORT" ]; then wait_listen "$NOOP_LISTENER_PORT" "$master_pid" || die "postfix not listening"; fi

queue_empty() { [ -z "$(postqueue -c "$PF_CONF" -j 2>/dev/null)" ]; }

# Busy CPU time of the whole machine, in clock ticks.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# CPU time of one process (user + system), in clock ticks.
pid_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# One run against PORT (milter PID or ""): prints
# "messages/s machine-µs-per-message milter-µs-per-message".
run() {
    local port=$1 pid=$2 t0 t1 m0 m1 p0=0 p1=0
    m0=$(machine_ticks)
    if [ -n "$pid" ]; then p0=$(pid_ticks "$pid"); fi
    t0=$(date +%s.%N)
    smtp-source -s "$SESSIONS" -m "$MESSAGES" -l 1000 -M bench-client.gatehouse-e2e.test \
        -f alice@example.com -t all-staff@example.com 127.0.0.1:"$port" \
        >>"$E2E_ROOT/smtp-source.log" 2>&1 || return 1
    t1=$(date +%s.%N)
    # Deliveries (discard) overlap the run; let the queue drain so that the
    # next run starts from the same state, and count their CPU here.
    wait_until 120 queue_empty || echo "bench/postfix.sh: queue not empty after 120 s" >&2
    m1=$(machine_ticks)
    if [ -n "$pid" ]; then p1=$(pid_ticks "$pid"); fi
    awk -v n="$MESSAGES" -v a="$t0" -v b="$t1" -v m="$((m1 - m0))" -v p="$((p1 - p0))" -v hz="$HZ" \
        'BEGIN { printf "%.1f %.0f %.0f\n", n / (b - a), m / hz / n * 1e6, p / hz / n * 1e6 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# Warm-up (not measured): every listener, the directory cache, Postfix's
# process pools; and proof that gatehouse accepts (smtp-source stops at a
# rejection).
for port in "$PLAIN_PORT" "$GH_LISTENER_PORT" ${ECHO_PORT:+"$ECHO_LISTENER_PORT"} \
    "$POLICY_LISTENER_PORT" ${NOOP_PORT:+"$NOOP_LISTENER_PORT"}; do
    smtp-source -s 2 -m 200 -f alice@example.com -t all-staff@example.com \
        127.0.0.1:"$port" >>"$E2E_ROOT/smtp-source.log" 2>&1 \
        || { tail -n 5 "$E2E_ROOT/smtp-source.log" >&2; die "warm-up on port $port failed"; }
done
wait_until 60 queue_empty
if grep -qE 'milter-reject|NOQUEUE: reject' "$PF/maillog"; then
    grep -E 'milter-reject|NOQUEUE: reject' "$PF/maillog" | head -n 3 >&2
    die "gatehouse rejected a warm-up message"
fi

echo "Postfix $(postconf -d -h mail_version), $(nproc) cores, $MESSAGES messages per run (1 session each), $SESSIONS sessions in parallel, $ROUNDS rounds, milters on $MILTER_SOCKET sockets"
declare -A rate cpu own
names=(plain gatehouse)
if [ -n "$ECHO_PORT" ]; then names+=(echo); fi
names+=(policy)
if [ -n "$NOOP_PORT" ]; then names+=(noop-policy); fi
for ((r = 1; r <= ROUNDS; r++)); do
    line="round $r:"
    for name in "${names[@]}"; do
        case $name in
            plain) out=$(run "$PLAIN_PORT" "") ;;
            gatehouse) out=$(run "$GH_LISTENER_PORT" "$GH_PID") ;;
            echo) out=$(run "$ECHO_LISTENER_PORT" "$ECHO_PID") ;;
            policy) out=$(run "$POLICY_LISTENER_PORT" "$GH_PID") ;;
            noop-policy) out=$(run "$NOOP_LISTENER_PORT" "$NOOP_PID") ;;
        esac || die "smtp-source failed on the $name listener"
        read -r a b c <<<"$out"
        rate[$name]+="$a "
        cpu[$name]+="$b "
        own[$name]+="$c "
        line+=" $name $a msg/s ($b µs CPU/msg);"
    done
    echo "$line"
done
if grep -qE 'milter-reject|NOQUEUE: reject' "$PF/maillog"; then
    die "gatehouse rejected messages during the runs (see the maillog)"
fi
med() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | median; }
printf '%-12s %10s %16s %16s\n' listener 'msg/s' 'machine µs/msg' 'filter µs/msg'
for name in "${names[@]}"; do
    if [ "$name" = plain ]; then o=-; else o=$(med "${own[$name]}"); fi
    printf '%-12s %10s %16s %16s\n' "$name" "$(med "${rate[$name]}")" "$(med "${cpu[$name]}")" "$o"
done
p=$(med "${rate[plain]}")
g=$(med "${rate[gatehouse]}")
awk -v p="$p" -v g="$g" 'BEGIN {
    printf "gatehouse / no milter: %.3f, cost %.1f%% (goal < 3%%)\n", g / p, (1 - g / p) * 100
}'
if [ -n "$ECHO_PORT" ]; then
    e=$(med "${rate[echo]}")
    awk -v p="$p" -v e="$e" -v g="$g" 'BEGIN {
        printf "echo milter / no milter: %.3f (what any milter with these round trips costs)\n", e / p
        printf "gatehouse / echo milter: %.3f (gatehouse'"'"'s own share)\n", g / e
    }'
fi
q=$(med "${rate[policy]}")
awk -v p="$p" -v q="$q" 'BEGIN {
    printf "gatehouse policy listener / no filter: %.3f, cost %.1f%%\n", q / p, (1 - q / p) * 100
}'
if [ -n "$NOOP_PORT" ]; then
    z=$(med "${rate[noop-policy]}")
    gq=$(med "${own[policy]}")
    zq=$(med "${own[noop-policy]}")
    awk -v p="$p" -v q="$q" -v z="$z" -v gq="$gq" -v zq="$zq" 'BEGIN {
        cq = 1 - q / p; cz = 1 - z / p
        printf "do-nothing policy server / no filter: %.3f, cost %.1f%% (the floor)\n", z / p, cz * 100
        if (cz > 0) printf "policy cost, gatehouse / do-nothing: %.2f (goal <= 1.25)\n", cq / cz
        else printf "policy cost, gatehouse / do-nothing: n/a (the do-nothing server cost nothing measurable)\n"
        if (zq > 0) printf "policy CPU per message, gatehouse / do-nothing: %.0f / %.0f µs = %.2f (goal <= 2)\n", gq, zq, gq / zq
    }'
    # The same cost as machine CPU per message above no filter: less noisy
    # than throughput on a shared machine.
    awk -v a="$(med "${cpu[plain]}")" -v q="$(med "${cpu[policy]}")" -v z="$(med "${cpu[noop-policy]}")" 'BEGIN {
        if (z > a) printf "policy machine CPU above no filter, gatehouse / do-nothing: %.0f / %.0f µs = %.2f\n", q - a, z - a, (q - a) / (z - a)
    }'
fi
