#!/usr/bin/env bash
# The directory change follower on the test Samba AD DC (follow_changes =
# "ad": uSNChanged polled every follow_interval, default 1 s):
#
#     bash bench/follow-changes-ad.sh        (as root)
#
# Starts the DC of the AD tests (tests/ad/samba.sh) in a private network
# namespace and runs examples/follow_bench.rs against it (see
# bench/follow-changes.sh for what it measures): write-to-enforcement
# latency over ROUNDS membership changes, then 1,000 changes per minute
# beside 2,000 lookups per second, follower off and on. Goal: p99 under 2 s.
# Environment: ROUNDS (default 50), LOAD_SECONDS (default 20),
# BENCH_PROFILE (release, default, or debug for the test command's smoke run).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-50}
LOAD_SECONDS=${LOAD_SECONDS:-20}
PROFILE=${BENCH_PROFILE:-release}

# shellcheck source=bench/lib/ad-dc.sh
. bench/lib/ad-dc.sh
ad_dc_sandbox follow-changes-ad follow_bench "$0" "$@"
ad_dc_start

for follow in ad off; do
    cat >"$TMP/$follow.toml" <<CONF
[directory]
backend = "ldap"

[directory.ldap]
urls = ["$AD_URL"]
bind_dn = "$AD_BIND_DN"
bind_password_file = "$AD_BIND_PASSWORD_FILE"
base_dn = "$AD_BASE_DN"
user_filter = "(&(objectCategory=person)(objectClass=user)(|(sAMAccountName={login})(mail={address})))"
login_attribute = "sAMAccountName"
address_attributes = ["mail", "proxyAddresses"]
membership = "memberof"
pool_size = 2
follow_changes = "$follow"

[cache]
capacity = 100000

[[listener]]
name = "default"
CONF
done

echo "gatehouse change follower (ad: uSNChanged every 1 s, Samba $(samba -V 2>/dev/null | sed 's/^Version //'), memberof mode):"
AD_BASE_DN=$AD_BASE_DN AD_BULK_DN=$AD_BULK_DN target/"$PROFILE"/examples/follow_bench \
    "$TMP/ad.toml" "$TMP/off.toml" "$AD_URL" "$AD_ADMIN_DN" "$AD_ADMIN_PASSWORD" "$ROUNDS" "$LOAD_SECONDS" \
    | sed 's/^/  /'
