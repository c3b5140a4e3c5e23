#!/usr/bin/env bash
# Active Directory membership methods side by side, on the test Samba AD DC:
#
#     bash bench/ad-membership.sh        (as root)
#
# Starts the DC of the AD tests (tests/ad/samba.sh) in a private network
# namespace, then resolves the same users cold (ttl 0: every lookup asks the
# DC) with membership = "ad-in-chain", "ad-token-groups" and "memberof",
# interleaved round by round, and prints per method the lookup latency (p50,
# p99), the LDAP operations per lookup and the groups found per user. The
# users: bob (3 groups through 2 levels of nesting, one of them a
# distribution group), grace (3 levels), alice (direct), user0042 (in a group
# of 1,601 members).
# Environment: ROUNDS (default 50), BENCH_PROFILE (release, default, or
# debug for the test command's smoke run).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-50}
PROFILE=${BENCH_PROFILE:-release}

# shellcheck source=bench/lib/ad-dc.sh
. bench/lib/ad-dc.sh
ad_dc_sandbox ad-membership ad_membership_bench "$0" "$@"
ad_dc_start

configs=()
for method in ad-in-chain ad-token-groups memberof; do
    cat >"$TMP/$method.toml" <<CONF
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
membership = "$method"
pool_size = 1

[cache]
ttl = "0s"
negative_ttl = "0s"

[[listener]]
name = "default"
CONF
    configs+=("$TMP/$method.toml")
done

echo "Active Directory membership methods, Samba $(samba -V 2>/dev/null | sed 's/^Version //'), $ROUNDS rounds, cold lookups (ttl 0):"
target/"$PROFILE"/examples/ad_membership_bench "$ROUNDS" bob,grace,alice,user0042 "${configs[@]}" \
    | sed 's/^/  /'
