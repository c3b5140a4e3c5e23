#!/usr/bin/env bash
# The directory change follower on a local slapd with syncprov:
#
#     bash bench/follow-changes.sh
#
# Prints the write-to-enforcement latency (p50, p99, max over ROUNDS
# membership changes: from the write's acknowledgement to the first lookup
# through the cache that sees it; without the follower it is the cache ttl,
# 5 minutes by default), then a steady load of 1,000 changes per minute
# beside 2,000 lookups per second, with the follower off and on: CPU time,
# cache hit ratio, changes applied. Goal: p99 under 2 s; hit ratio unchanged.
# Environment: ROUNDS (default 200), LOAD_SECONDS (default 20),
# BENCH_PROFILE (release, default, or debug for the test command's smoke run).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-200}
LOAD_SECONDS=${LOAD_SECONDS:-20}

# shellcheck source=bench/lib/slapd.sh
. bench/lib/slapd.sh
slapd_bench_start followbench follow_bench

for follow in syncrepl off; do
    cat >"$TMP/$follow.toml" <<CONF
[directory]
backend = "ldap"

[directory.ldap]
urls = ["$URL"]
base_dn = "dc=example,dc=com"
pool_size = 2
follow_changes = "$follow"

[cache]
capacity = 100000

[[listener]]
name = "default"
CONF
done

echo "gatehouse change follower (syncrepl, slapd with syncprov, memberof mode):"
target/"$PROFILE"/examples/follow_bench "$TMP/syncrepl.toml" "$TMP/off.toml" "$URL" \
    'cn=admin,dc=example,dc=com' secret "$ROUNDS" "$LOAD_SECONDS" | sed 's/^/  /'
echo "without the follower a change is enforced when the cached entry expires: ttl = 300 s by default"
