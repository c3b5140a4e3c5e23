#!/usr/bin/env bash
# cargo deny over the locked dependency graph (deny.toml): licences,
# duplicate crates, sources, and RustSec advisories. Installs cargo-deny
# from crates.io when missing (about two minutes on two cores).
#
# The advisory database is a git repository on GitHub. Where GitHub cannot
# be reached (CI here reaches only the package registries) that one check
# says so loudly and is skipped; any advisory it does find fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null 2>&1; then
    cargo install --locked cargo-deny@0.20.2
fi

cargo deny --locked check licenses bans sources

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if cargo deny --locked check advisories >"$log" 2>&1; then
    echo "check-supply-chain: advisories ok"
elif grep -q "failed to fetch advisory database" "$log" &&
    compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-*/crates" >/dev/null; then
    # A copy fetched earlier: check against it, and say how old it is.
    db=$(compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-*" | head -1)
    echo "check-supply-chain: advisory database unreachable; using the local copy of $(git -C "$db" log -1 --format=%cs 2>/dev/null || echo 'unknown date')" >&2
    cargo deny --offline check advisories
elif grep -q "failed to fetch advisory database" "$log"; then
    echo "check-supply-chain: WARNING: the RustSec advisory database could not be fetched; advisories NOT checked:" >&2
    grep "failed to fetch" "$log" | head -1 >&2
else
    cat "$log" >&2
    exit 1
fi
