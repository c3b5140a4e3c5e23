#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh Debian machine:
# installs what the tests need (scripts/install-test-deps.sh), checks format
# and lints, runs every test (unit, integration, property, miltertest, real
# slapd), the end-to-end suite through real Postfix and Sendmail (in a
# private network namespace), then builds the Debian package and checks it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
GATEHOUSE_BIN=target/debug/gatehouse bash tests/e2e/run.sh
bash packaging/test-deb.sh
