# shellcheck shell=bash
# Sourced by the Active Directory benchmarks (bench/ad-membership.sh,
# bench/follow-changes-ad.sh), from the repository root:
#
#   ad_dc_sandbox NAME EXAMPLE SCRIPT ARGS...
#       outside the namespace: install the test dependencies, build
#       examples/EXAMPLE.rs (BENCH_PROFILE), then re-run SCRIPT as root in a
#       private network namespace (the DC binds ports 389/636); inside it:
#       bring loopback up and return.
#   ad_dc_start
#       start the test DC (tests/ad/samba.sh) in a temporary folder, stopped
#       by PID at exit, and load its ad.env (AD_URL, AD_BASE_DN, ...); TMP
#       is the folder.

ad_dc_sandbox() {
    local name=$1 example=$2 script=$3
    shift 3
    if [ -n "${GATEHOUSE_AD_SANDBOX:-}" ]; then
        ip link set lo up
        return
    fi
    bash scripts/install-test-deps.sh
    if [ "${BENCH_PROFILE:-release}" = release ]; then
        cargo build --release --example "$example"
    else
        cargo build --example "$example"
    fi
    [ "$(id -u)" -eq 0 ] || { echo "$name: must run as root (network namespace)" >&2; exit 1; }
    export GATEHOUSE_AD_SANDBOX=1
    exec unshare --net -- bash "$script" "$@"
}

ad_dc_cleanup() {
    bash tests/ad/samba.sh stop "$TMP/dc" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}

ad_dc_start() {
    TMP=$(mktemp -d -t gatehouse-adbench.XXXXXX)
    trap ad_dc_cleanup EXIT
    bash tests/ad/samba.sh start "$TMP/dc" >"$TMP/start.log" 2>&1 || { cat "$TMP/start.log" >&2; exit 1; }
    # shellcheck disable=SC1091 # written by tests/ad/samba.sh
    . "$TMP/dc/ad.env"
}
