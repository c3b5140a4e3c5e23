#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh Debian machine:
# installs what the tests need (scripts/install-test-deps.sh), checks format
# and lints, runs every test (unit, integration, property, miltertest, real
# slapd), the end-to-end suite through real Postfix and Sendmail (in a
# private network namespace), then builds the Debian package and checks it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
git ls-files -z '*.sh' .ci/run | xargs -0 shellcheck
bash scripts/check-msrv.sh
bash scripts/check-supply-chain.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
bash tests/ad/run.sh
GATEHOUSE_BIN=target/debug/gatehouse bash tests/e2e/run.sh
bash packaging/test-deb.sh
# Each benchmark once, tiny and on the debug build: a broken benchmark fails
# here (its figures mean nothing).
BENCH_PROFILE=debug ROUNDS=1 TRANSACTIONS=200 HOLD_CONNECTIONS=50 HOLD_SECONDS=1 bash bench/run.sh >/dev/null
BENCH_PROFILE=debug USERS=20 HITS=1000 bash bench/directory.sh >/dev/null
BENCH_PROFILE=debug ROUNDS=1 bash bench/ad-membership.sh >/dev/null
BENCH_PROFILE=debug ROUNDS=3 LOAD_SECONDS=1 bash bench/follow-changes.sh >/dev/null
BENCH_PROFILE=debug ROUNDS=2 LOAD_SECONDS=1 bash bench/follow-changes-ad.sh >/dev/null
GATEHOUSE_BIN=target/debug/gatehouse ECHO_MILTER_BIN=target/debug/examples/echo_milter NOOP_POLICY_BIN=target/debug/examples/noop_policy MESSAGES=50 ROUNDS=1 bash bench/postfix.sh >/dev/null
