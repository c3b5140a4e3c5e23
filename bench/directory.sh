#!/usr/bin/env bash
# Directory benchmark, one command from the repository root:
#
#     bash bench/directory.sh
#
# Starts a throw-away slapd with the test directory (tests/ldap/, 1,204
# users) on a loopback port, then measures, in one run:
#   - gatehouse's cold lookups/s (sequential, every lookup a cache miss),
#     against ldapsearch running the same LDAP queries sequentially;
#   - cache-hit lookup latency;
#   - LDAP work caused by 1,000 concurrent lookups of one uncached user.
# Environment: USERS (default 1000), HITS (default 200000), BENCH_PROFILE
# (release, default, or debug for the test command's smoke run).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

USERS=${USERS:-1000}
HITS=${HITS:-200000}

# shellcheck source=bench/lib/slapd.sh
. bench/lib/slapd.sh
slapd_bench_start dirbench directory_bench

cat >"$TMP/gatehouse.toml" <<CONF
[directory]
backend = "ldap"

[directory.ldap]
urls = ["$URL"]
base_dn = "dc=example,dc=com"
pool_size = 1

[cache]
capacity = 100000

[[listener]]
name = "default"
CONF

echo "gatehouse (memberof mode, nested, one connection):"
out=$(target/"$PROFILE"/examples/directory_bench "$TMP/gatehouse.toml" "$USERS" "$HITS")
while IFS= read -r line; do printf '  %s\n' "$line"; done <<<"$out"
cold_s=$(echo "$out" | sed -n 's/^COLD .*seconds=\([0-9.]*\).*/\1/p')
cold_ops=$(echo "$out" | sed -n 's/^COLD .*ldap_ops=\([0-9]*\).*/\1/p')

# The same queries with ldapsearch, one process per query, sequentially:
# per user the user search (asking for memberOf), then the read of each of
# its groups for their memberOf (here: "Big List").
echo "ldapsearch, the same $cold_ops queries sequentially:"
start=$(date +%s.%N)
for i in $(seq 1 "$USERS"); do
    u=$(printf 'user%04d' "$i")
    ldapsearch -x -LLL -H "$URL" -b dc=example,dc=com \
        "(&(objectClass=inetOrgPerson)(|(uid=$u)(mail=$u)))" uid mail memberOf >/dev/null
    ldapsearch -x -LLL -H "$URL" -b "cn=Big List,ou=groups,dc=example,dc=com" -s base \
        '(objectClass=*)' memberOf >/dev/null
done
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v n="$USERS" -v g="$cold_s" 'BEGIN {
    t = e - s
    printf "  COLD lookups=%d seconds=%.3f lookups_per_s=%.0f\n", n, t, n / t
    printf "ratio: gatehouse cold lookups/s = %.1fx ldapsearch running the same queries\n", t / g
}'
