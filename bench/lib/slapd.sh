# shellcheck shell=bash
# Sourced by the slapd benchmarks (bench/directory.sh,
# bench/follow-changes.sh), from the repository root:
#
#   slapd_bench_start NAME EXAMPLE
#       install the test dependencies, build examples/EXAMPLE.rs
#       (BENCH_PROFILE: release, default, or debug for the test command's
#       smoke run), then start a throw-away slapd with the test directory
#       (tests/ldap/) on an unused loopback port, stopped at exit. Sets TMP
#       (a temporary folder, removed at exit), PROFILE and URL.

slapd_bench_start() {
    local name=$1 example=$2 port
    bash scripts/install-test-deps.sh
    PROFILE=${BENCH_PROFILE:-release}
    if [ "$PROFILE" = release ]; then
        cargo build --release --example "$example"
    else
        cargo build --example "$example"
    fi
    TMP=$(mktemp -d -t "gatehouse-$name.XXXXXX")
    trap slapd_bench_cleanup EXIT
    # shellcheck source=tests/lib/ports.sh
    . tests/lib/ports.sh
    port=$(unused_port)
    bash tests/ldap/slapd.sh start "$TMP/slapd" "$port" >/dev/null
    # shellcheck disable=SC2034 # read by the benchmark that sources this
    URL="ldap://127.0.0.1:$port"
}

slapd_bench_cleanup() {
    bash tests/ldap/slapd.sh stop "$TMP/slapd" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
