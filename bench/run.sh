#!/usr/bin/env bash
# bench/run.sh - the gatehouse benchmark.  Run from the repository root:
#
#     bash bench/run.sh
#
# Targets checked (from the performance issue):
#   * transactions/s at concurrency 32  >= 2.0 x the libmilter no-op milter
#   * transactions/s at concurrency 1   >= 1.0 x the libmilter no-op milter
#   * transactions/s at concurrency 32  >= 0.8 x a bare echo server
#   * peak RSS <= 10 KiB per idle connection, 1,000 idle connections held
#
# What it does:
#   1. installs libmilter-dev, libc6-dev and gcc with apt-get if missing;
#   2. cargo build --release --bins --examples (the only cargo call);
#   3. compiles bench/noop-milter.c into a temporary directory;
#   4. starts gatehouse, the no-op milter and the echo example, each on its
#      own unix socket in that directory;
#   5. runs target/release/gatehouse-load against each server in turn
#      (gatehouse, no-op, echo; interleaved so that drift in machine load
#      hits all three alike), ROUNDS times per concurrency, and reports the
#      median of the rounds;
#   6. starts a fresh gatehouse, holds 1,000 idle connections open on it
#      and reads its memory from /proc.
#
# Environment:
#   ROUNDS          rounds per concurrency (default 5)
#   TRANSACTIONS    transactions per run, for both concurrencies
#                   (default: 20000 at concurrency 32, 5000 at concurrency 1)
#   LOAD_TIMEOUT    seconds before a single load run is abandoned (default 600)
#   HOLD_CONNECTIONS, HOLD_SECONDS  the idle-memory test (default 1000, 5)
#   BENCH_PROFILE   release (default) or debug: the test command's smoke run
#
# Output goes to stdout only; nothing is written to the repository except
# cargo's target/ directory.  The exit status is 0 when the benchmark ran,
# whether or not the targets were met (it is a report, not a gate); it is
# non-zero only when the benchmark itself could not run.

set -euo pipefail

# ---------------------------------------------------------------- settings

ROUNDS=${ROUNDS:-5}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-600}
CONCURRENCIES=(1 32)
HOLD_CONNECTIONS=${HOLD_CONNECTIONS:-1000}
HOLD_SECONDS=${HOLD_SECONDS:-5}
# Targets, as "minimum ratio" for throughput and "maximum KiB" for memory.
TARGET_NOOP_C32=2.0
TARGET_NOOP_C1=1.0
TARGET_ECHO_C32=0.8
TARGET_LDAP_NOOP=1.0
TARGET_KIB_PER_CONN=10
# 1,000 connections cost the load generator and gatehouse one descriptor
# each, plus whatever the runtimes keep open; 4096 leaves ample headroom.
NOFILE_WANTED=4096

SERVERS=(gatehouse gatehouse-ldap noop echo)
declare -A SERVER_LABEL=(
	[gatehouse]="gatehouse"
	[gatehouse-ldap]="gatehouse, LDAP (warm cache)"
	[noop]="libmilter no-op (C)"
	[echo]="echo server"
)

transactions_for() {
	local c=$1
	if [[ -n ${TRANSACTIONS:-} ]]; then
		echo "$TRANSACTIONS"
	elif ((c == 1)); then
		echo 5000
	else
		echo 20000
	fi
}

# ---------------------------------------------------------------- helpers

log() { printf '%s\n' "$*" >&2; }

die() {
	log "bench/run.sh: error: $*"
	exit 1
}

is_pos_int() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }

is_pos_int "$ROUNDS" || die "ROUNDS must be a positive integer (got '$ROUNDS')"
is_pos_int "$LOAD_TIMEOUT" || die "LOAD_TIMEOUT must be a positive integer (got '$LOAD_TIMEOUT')"
if [[ -n ${TRANSACTIONS:-} ]]; then
	is_pos_int "$TRANSACTIONS" || die "TRANSACTIONS must be a positive integer (got '$TRANSACTIONS')"
fi

# Processes this script started and has not reaped yet.  Cleanup signals
# exactly these PIDs; nothing is ever killed by name.
declare -A LIVE_PIDS=()
TMP=""

# Stop some of our children: SIGTERM to all of them at once, up to 10 s
# grace (libmilter only notices SIGTERM at its next poll timeout, which
# takes about 4-5 s), then SIGKILL; reap them.
stop_pids() {
	local pid i alive
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for ((i = 0; i < 100; i++)); do
		alive=0
		for pid in "$@"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		((alive)) || break
		sleep 0.1
	done
	for pid in "$@"; do
		if kill -0 "$pid" 2>/dev/null; then
			log "bench/run.sh: PID $pid ignored SIGTERM for 10 s, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
		unset "LIVE_PIDS[$pid]"
	done
}

cleanup() {
	trap - EXIT INT TERM
	if ((${#LIVE_PIDS[@]})); then
		stop_pids "${!LIVE_PIDS[@]}"
	fi
	if [[ -n $TMP && -f $TMP/slapd/slapd.pid ]]; then
		bash tests/ldap/slapd.sh stop "$TMP/slapd" >/dev/null 2>&1 || true
	fi
	if [[ -n $TMP && -d $TMP ]]; then
		rm -rf -- "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Print the last lines of a server's log, to explain a failure.
show_log() {
	local name=$1 file=$2
	if [[ -s $file ]]; then
		log "---- last lines of the $name log ----"
		tail -n 20 -- "$file" >&2 || true
		log "----"
	fi
}

# Poll (never connect) until a unix socket file exists; max 10 s.
wait_for_socket() {
	local path=$1 pid=$2 name=$3 logfile=$4 i
	for ((i = 0; i < 100; i++)); do
		[[ -S $path ]] && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			show_log "$name" "$logfile"
			die "$name exited before creating its socket $path"
		fi
		sleep 0.1
	done
	show_log "$name" "$logfile"
	die "$name did not create its socket $path within 10 s"
}

# Read one field (kB) from /proc/PID/status.
proc_kib() {
	local pid=$1 field=$2 value
	value=$(awk -v f="$field:" '$1 == f { print $2; exit }' "/proc/$pid/status" 2>/dev/null) || true
	[[ -n $value ]] || die "cannot read $field of PID $pid from /proc/$pid/status"
	echo "$value"
}

# Extract key=value from a RESULT line.
result_field() {
	local line=$1 key=$2
	awk -v k="$key" '{
		for (i = 1; i <= NF; i++) {
			eq = index($i, "=")
			if (eq > 0 && substr($i, 1, eq - 1) == k) { print substr($i, eq + 1); exit }
		}
	}' <<<"$line"
}

# Median of numbers given as arguments.
median() {
	printf '%s\n' "$@" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "nan"; exit }
			if (NR % 2) print v[(NR + 1) / 2]
			else printf "%.10g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
		}'
}

# ratio A B -> A/B with two decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }

# verdict VALUE OP TARGET -> PASS or FAIL (OP is ">=" or "<=")
verdict() {
	awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
		if (v == "nan") { print "FAIL"; exit }
		ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0)
		print ok ? "PASS" : "FAIL"
	}'
}

# ---------------------------------------------------------------- setup

# Run from the repository root whatever the caller's directory.
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
[[ -f Cargo.toml && -f bench/noop-milter.c ]] || die "run me from the gatehouse repository: bash bench/run.sh"
# gatehouse runs the example policy, moved to a unix socket.
LISTEN_LINE='listen = ["inet:127.0.0.1:8890"]'
grep -qF "$LISTEN_LINE" conf/gatehouse.toml || die "conf/gatehouse.toml has no line starting with: $LISTEN_LINE"

# System packages: only installed when missing, and apt-get update only then.
# libc6-dev is only a Recommends of gcc, but the C no-op needs its headers.
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
pkg_installed libmilter-dev || missing+=(libmilter-dev)
pkg_installed libc6-dev || missing+=(libc6-dev)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
if ((${#missing[@]})); then
	log "bench/run.sh: installing missing packages: ${missing[*]}"
	SUDO=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]}"
		SUDO=(sudo)
	fi
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found (install a Rust toolchain, see Cargo.toml for the minimum version)"

# Descriptor limit: raised here so the servers and the load generator,
# which inherit it, can all hold 1,000 connections.
nofile=$(ulimit -n)
if [[ $nofile != unlimited ]] && ((nofile < NOFILE_WANTED)); then
	ulimit -S -n "$NOFILE_WANTED" 2>/dev/null || ulimit -n "$NOFILE_WANTED" 2>/dev/null ||
		die "cannot raise the open-file limit to $NOFILE_WANTED (now $nofile; hard limit $(ulimit -H -n))"
fi

# BENCH_PROFILE=debug: the test command's smoke run (the debug build is
# already there); figures from it mean nothing.
PROFILE=${BENCH_PROFILE:-release}
case $PROFILE in
release) log "bench/run.sh: cargo build --release --bins --examples"
	cargo build --release --bins --examples ;;
debug) cargo build --bins --examples ;;
*) die "BENCH_PROFILE must be release or debug (got '$PROFILE')" ;;
esac

GATEHOUSE=target/$PROFILE/gatehouse
LOADGEN=target/$PROFILE/gatehouse-load
ECHO=target/$PROFILE/examples/echo_milter
for bin in "$GATEHOUSE" "$LOADGEN" "$ECHO"; do
	[[ -x $bin ]] || die "$bin was not built"
done

TMP=$(mktemp -d -t gatehouse-bench.XXXXXX) # honours TMPDIR
# sun_path holds 108 bytes including the NUL; keep well inside it.
((${#TMP} <= 80)) || die "temporary directory path too long for unix sockets: $TMP (set TMPDIR to something shorter)"

log "bench/run.sh: compiling bench/noop-milter.c"
gcc -O2 -o "$TMP/noop-milter" bench/noop-milter.c -lmilter -lpthread

# Write a gatehouse config for SOCKET into FILE: the example configuration
# (conf/gatehouse.toml, the full policy) listening on the unix socket.
make_gatehouse_config() {
	local socket=$1 file=$2 escaped
	# Escape the characters special in a sed replacement (and the delimiter).
	escaped=$(printf '%s' "$socket" | sed 's/[\\|&]/\\&/g')
	sed "s|^listen = \\[\"inet:127.0.0.1:8890\"\\]|listen = [\"unix:$escaped\"]|" conf/gatehouse.toml >"$file"
	grep -qF "listen = [\"unix:$socket\"]" "$file" || die "could not point the benchmark config at $socket"
}

declare -A SOCK=() PID=() LOG=()

# start_server NAME SOCKET COMMAND... ; records PID[NAME] etc.
start_server() {
	local name=$1 socket=$2
	shift 2
	local logfile="$TMP/$name.log"
	"$@" >"$logfile" 2>&1 &
	local pid=$!
	LIVE_PIDS[$pid]=1
	SOCK[$name]=$socket
	PID[$name]=$pid
	LOG[$name]=$logfile
	wait_for_socket "$socket" "$pid" "$name" "$logfile"
}

check_alive() {
	local name=$1
	if ! kill -0 "${PID[$name]}" 2>/dev/null; then
		show_log "$name" "${LOG[$name]}"
		die "$name (PID ${PID[$name]}) died during the benchmark"
	fi
}

make_gatehouse_config "$TMP/gatehouse.sock" "$TMP/gatehouse.toml"
start_server gatehouse "$TMP/gatehouse.sock" "$GATEHOUSE" --config "$TMP/gatehouse.toml"
start_server noop "$TMP/noop.sock" "$TMP/noop-milter" "unix:$TMP/noop.sock"
start_server echo "$TMP/echo.sock" "$ECHO" "unix:$TMP/echo.sock"

# The same policy with its groups from LDAP: a throw-away slapd with the test
# directory (tests/ldap/), which has the example's people and groups.
bash scripts/install-test-deps.sh
# shellcheck source=tests/lib/ports.sh
. tests/lib/ports.sh
LDAP_PORT=$(unused_port)
LDAP_BIG=0 bash tests/ldap/slapd.sh start "$TMP/slapd" "$LDAP_PORT" >/dev/null
make_gatehouse_config "$TMP/gatehouse-ldap.sock" "$TMP/gatehouse-ldap-static.toml"
awk -v url="ldap://127.0.0.1:$LDAP_PORT" '
	/^\[directory\]$/ { skip = 1
		print "[directory]\nbackend = \"ldap\"\n\n[directory.ldap]\nurls = [\"" url "\"]\nbase_dn = \"dc=example,dc=com\"\n"
		next }
	/^\[domains\]$/ { skip = 0 }
	!skip { print }' "$TMP/gatehouse-ldap-static.toml" >"$TMP/gatehouse-ldap.toml"
start_server gatehouse-ldap "$TMP/gatehouse-ldap.sock" "$GATEHOUSE" --config "$TMP/gatehouse-ldap.toml"
# Warm the cache (the default ttl of 5 minutes outlasts the run).
"$LOADGEN" --socket "unix:$TMP/gatehouse-ldap.sock" --concurrency 1 --transactions 10 >/dev/null

# ---------------------------------------------------------------- throughput

# run_load NAME OUTFILE ARGS... : run the load generator against server NAME
# in the background (so the cleanup trap knows its PID) and wait for it.
run_load() {
	local name=$1 out=$2 rc=0 pid
	shift 2
	timeout "$LOAD_TIMEOUT" "$LOADGEN" --socket "unix:${SOCK[$name]}" "$@" >"$out" 2>"$out.err" &
	pid=$!
	LIVE_PIDS[$pid]=1
	wait "$pid" || rc=$?
	unset "LIVE_PIDS[$pid]"
	if ((rc != 0)); then
		log "---- gatehouse-load output (exit $rc) ----"
		tail -n 20 -- "$out" "$out.err" >&2 || true
		show_log "$name" "${LOG[$name]}"
		((rc == 124)) && die "gatehouse-load against $name timed out after ${LOAD_TIMEOUT}s"
		die "gatehouse-load against $name failed (exit $rc): gatehouse-load $*"
	fi
}

# Per "server:concurrency": space-separated values, one per round.
declare -A TPS=() P50=() P99=() P999=() ERRORS=()

log "bench/run.sh: $ROUNDS rounds; servers: ${SERVERS[*]}"
for c in "${CONCURRENCIES[@]}"; do
	n=$(transactions_for "$c")
	for ((round = 1; round <= ROUNDS; round++)); do
		for name in "${SERVERS[@]}"; do
			out="$TMP/load-$name-c$c-r$round.out"
			run_load "$name" "$out" --concurrency "$c" --transactions "$n"
			check_alive "$name"
			line=$(grep '^RESULT ' "$out" | tail -n 1) || true
			[[ -n $line ]] || die "no RESULT line from gatehouse-load against $name (see output above)"
			tps=$(result_field "$line" tps)
			p50=$(result_field "$line" p50_us)
			p99=$(result_field "$line" p99_us)
			p999=$(result_field "$line" p999_us)
			errs=$(result_field "$line" errors)
			for v in "$tps" "$p50" "$p99" "$p999" "$errs"; do
				is_number "$v" || die "cannot parse RESULT line from gatehouse-load: $line"
			done
			key="$name:$c"
			TPS[$key]="${TPS[$key]:-} $tps"
			P50[$key]="${P50[$key]:-} $p50"
			P99[$key]="${P99[$key]:-} $p99"
			P999[$key]="${P999[$key]:-} $p999"
			ERRORS[$key]=$((${ERRORS[$key]:-0} + errs))
			log "  c=$c round $round/$ROUNDS  $(printf '%-10s' "$name") $tps tx/s  p50=${p50}us p99=${p99}us errors=$errs"
		done
	done
done

# Memory after the throughput runs, for information only (VmHWM there
# includes the busy connections; the target uses the idle test below).
throughput_hwm=$(proc_kib "${PID[gatehouse]}" VmHWM)

# The throughput servers are no longer needed; the memory test uses a
# fresh gatehouse so that its VmHWM reflects only start-up plus the idle
# connections, not the peaks of the runs above.
stop_pids "${PID[gatehouse]}" "${PID[noop]}" "${PID[echo]}"

# ---------------------------------------------------------------- memory

make_gatehouse_config "$TMP/gatehouse-rss.sock" "$TMP/gatehouse-rss.toml"
start_server gatehouse-rss "$TMP/gatehouse-rss.sock" "$GATEHOUSE" --config "$TMP/gatehouse-rss.toml"
gh=${PID[gatehouse-rss]}
# Give the freshly started server a moment to finish initialising (the
# socket appears before start-up allocations are necessarily done).
sleep 1
rss_baseline=$(proc_kib "$gh" VmRSS)

hold_out="$TMP/load-hold.out"
timeout "$LOAD_TIMEOUT" "$LOADGEN" --socket "unix:${SOCK[gatehouse-rss]}" --concurrency 1 \
	--transactions 1 --hold "$HOLD_CONNECTIONS" --hold-seconds "$HOLD_SECONDS" \
	>"$hold_out" 2>"$hold_out.err" &
hold_pid=$!
LIVE_PIDS[$hold_pid]=1

# Wait (max 60 s) for the load generator to report all connections open.
held=""
for ((i = 0; i < 600; i++)); do
	held=$(awk -F'[ =]' '/^HOLD connections=/ { print $3; exit }' "$hold_out" 2>/dev/null) || true
	[[ -n $held ]] && break
	kill -0 "$hold_pid" 2>/dev/null || break
	sleep 0.1
done
if [[ -z $held ]]; then
	tail -n 20 -- "$hold_out" "$hold_out.err" >&2 || true
	show_log gatehouse-rss "${LOG[gatehouse-rss]}"
	die "gatehouse-load --hold did not report 'HOLD connections=...' within 60 s"
fi
check_alive gatehouse-rss
rss_held=$(proc_kib "$gh" VmRSS)
hwm_held=$(proc_kib "$gh" VmHWM)

hold_rc=0
wait "$hold_pid" || hold_rc=$?
unset "LIVE_PIDS[$hold_pid]"
((hold_rc == 0)) || {
	tail -n 20 -- "$hold_out" "$hold_out.err" >&2 || true
	die "gatehouse-load --hold failed (exit $hold_rc)"
}
check_alive gatehouse-rss
hold_line=$(grep '^RESULT ' "$hold_out" | tail -n 1) || true
hold_errors=$(result_field "${hold_line:-}" errors)
hwm_after=$(proc_kib "$gh" VmHWM)

# ---------------------------------------------------------------- report

printf '\n'
printf 'gatehouse benchmark  (%s; %s CPUs; kernel %s; %d rounds, median shown)\n' \
	"$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" "$(uname -r)" "$ROUNDS"
printf '\n'
printf '%-5s  %-22s %8s  %12s  %8s  %8s  %8s  %6s\n' \
	"conc" "server" "tx/run" "tx/s" "p50 us" "p99 us" "p99.9 us" "errors"
declare -A MED=()
total_errors=0
for c in "${CONCURRENCIES[@]}"; do
	for name in "${SERVERS[@]}"; do
		key="$name:$c"
		# Word splitting of the per-round lists is intended here.
		# shellcheck disable=SC2086
		{
			MED[$key]=$(median ${TPS[$key]})
			m50=$(median ${P50[$key]})
			m99=$(median ${P99[$key]})
			m999=$(median ${P999[$key]})
		}
		total_errors=$((total_errors + ERRORS[$key]))
		printf '%-5s  %-22s %8s  %12.1f  %8.0f  %8.0f  %8.0f  %6s\n' \
			"$c" "${SERVER_LABEL[$name]}" "$(transactions_for "$c")" \
			"${MED[$key]}" "$m50" "$m99" "$m999" "${ERRORS[$key]}"
	done
done
printf '(tx/s: median over the rounds; latency columns: median over the rounds of each run'"'"'s percentile;\n'
printf ' errors: sum over all rounds)\n'

report_ratio() {
	local label=$1 num=$2 den=$3 target=$4 r
	r=$(ratio "$num" "$den")
	printf '  %-36s %6sx   target >= %sx   %s\n' "$label" "$r" "$target" "$(verdict "$r" '>=' "$target")"
}
printf '\nthroughput ratios\n'
report_ratio "gatehouse / libmilter no-op, c=32" "${MED[gatehouse:32]}" "${MED[noop:32]}" "$TARGET_NOOP_C32"
report_ratio "gatehouse / libmilter no-op, c=1" "${MED[gatehouse:1]}" "${MED[noop:1]}" "$TARGET_NOOP_C1"
report_ratio "gatehouse / echo server, c=32" "${MED[gatehouse:32]}" "${MED[echo:32]}" "$TARGET_ECHO_C32"
# The same ratio round by round (each round's two runs are neighbours in
# time): how far the machine's noise moves it, for information.
printf '  %-36s %s\n' "  per round (min, median, max)" "$(
	# shellcheck disable=SC2086 # one value per round
	paste -d' ' <(printf '%s\n' ${TPS[gatehouse:32]}) <(printf '%s\n' ${TPS[echo:32]}) |
		awk '{ print $1 / $2 }' | sort -g |
		awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.2fx, %.2fx, %.2fx", v[1], m, v[NR] }'
)"
report_ratio "gatehouse LDAP / libmilter no-op, c=32" "${MED[gatehouse-ldap:32]}" "${MED[noop:32]}" "$TARGET_LDAP_NOOP"
report_ratio "gatehouse LDAP / libmilter no-op, c=1" "${MED[gatehouse-ldap:1]}" "${MED[noop:1]}" "$TARGET_LDAP_NOOP"
if ((total_errors > 0)); then
	printf '  WARNING: %d transaction errors during the runs; the ratios above are suspect\n' "$total_errors"
fi

per_conn_peak=$(awk -v h="$hwm_held" -v n="$HOLD_CONNECTIONS" 'BEGIN { printf "%.2f", h / n }')
per_conn_delta=$(awk -v a="$rss_held" -v b="$rss_baseline" -v n="$HOLD_CONNECTIONS" 'BEGIN { printf "%.2f", (a - b) / n }')
printf '\nmemory, fresh gatehouse with %d idle connections held for %d s\n' "$HOLD_CONNECTIONS" "$HOLD_SECONDS"
printf '  connections reported open by gatehouse-load: %s\n' "$held"
if [[ $held != "$HOLD_CONNECTIONS" ]]; then
	printf '  WARNING: expected %d connections; the figures below are per %d anyway\n' "$HOLD_CONNECTIONS" "$HOLD_CONNECTIONS"
fi
if [[ -n ${hold_errors:-} && $hold_errors != 0 ]]; then
	printf '  WARNING: gatehouse-load --hold reported %s errors\n' "$hold_errors"
fi
printf '  VmRSS before connections:           %8d KiB\n' "$rss_baseline"
printf '  VmRSS with connections held:        %8d KiB\n' "$rss_held"
printf '  VmHWM (peak RSS) while held:        %8d KiB\n' "$hwm_held"
printf '  VmHWM after the connections closed: %8d KiB\n' "$hwm_after"
printf '  peak RSS / %d:                    %8s KiB per connection   target <= %s   %s\n' \
	"$HOLD_CONNECTIONS" "$per_conn_peak" "$TARGET_KIB_PER_CONN" "$(verdict "$per_conn_peak" '<=' "$TARGET_KIB_PER_CONN")"
printf '  (RSS held - RSS before) / %d:     %8s KiB per connection   (information)\n' \
	"$HOLD_CONNECTIONS" "$per_conn_delta"
printf '  (throughput instance VmHWM after the load runs: %d KiB, information)\n' "$throughput_hwm"
