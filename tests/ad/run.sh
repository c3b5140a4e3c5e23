#!/usr/bin/env bash
# The Active Directory tests: a Samba AD domain controller (tests/ad/samba.sh)
# and the tests of tests/ad_directory.rs against it.
#
#   bash tests/ad/run.sh [TEST-FILTER...]   (as root)
#
# Samba's LDAP server binds ports 389 and 636, which cannot be changed, so
# this re-executes itself in a private network and mount namespace: only
# loopback, and a private /etc/hosts in which dc1.example.com (the name in
# the test DC's certificate, used by the README's recipe) is 127.0.0.1.
# The DC is started once for the whole run and stopped by its PID at exit.
# The tests find it through GATEHOUSE_AD_ENV (tests/ad/samba.sh's ad.env);
# they are #[ignore]d in a plain `cargo test`, which has no DC.
#
# Environment: AD_KEEP=1 keeps the DC's folder (logs) after the run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [ -z "${GATEHOUSE_AD_SANDBOX:-}" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "ad tests: must run as root (network namespace, ports 389/636)" >&2
        exit 1
    fi
    # Built outside: the namespace has no network for cargo to reach.
    (cd "$repo" && cargo test --locked --test ad_directory --no-run >/dev/null 2>&1) \
        || (cd "$repo" && cargo test --locked --test ad_directory --no-run)
    export GATEHOUSE_AD_SANDBOX=1
    exec unshare --net --mount -- bash "$0" "$@"
fi

ip link set lo up
# Private name resolution: files only, the DC's name on loopback.
etc=$(mktemp -d /tmp/gatehouse-ad-etc.XXXXXX)
printf '127.0.0.1 localhost dc1.example.com dc1\n::1 localhost\n' >"$etc/hosts"
printf 'hosts: files\n' >"$etc/nsswitch.conf"
mount --bind "$etc/hosts" /etc/hosts
mount --bind "$etc/nsswitch.conf" /etc/nsswitch.conf

dir=$(mktemp -d /tmp/gatehouse-ad.XXXXXX)
cleanup() {
    bash "$here/samba.sh" stop "$dir" || true
    if [ "${AD_KEEP:-0}" = 1 ]; then
        echo "ad tests: kept $dir" >&2
    else
        rm -rf "$dir"
    fi
    umount /etc/hosts /etc/nsswitch.conf 2>/dev/null || true
    rm -rf "$etc"
}
trap cleanup EXIT

started=$SECONDS
bash "$here/samba.sh" start "$dir"
echo "ad tests: Samba AD DC ready in $((SECONDS - started)) s" >&2

cd "$repo"
GATEHOUSE_AD_ENV="$dir/ad.env" cargo test --locked --offline --test ad_directory -- \
    --ignored --test-threads=2 "$@"
