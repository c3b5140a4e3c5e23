#!/usr/bin/env bash
# Install the Debian packages the test suite needs, when missing.
# Safe to run repeatedly; installs nothing when everything is present.
# Daemons from these packages are never started here: a policy-rc.d that
# refuses starts is in place during the install, and the tests run their
# own instances from temporary folders.
set -euo pipefail

# command -> Debian package
declare -A NEED=(
    [miltertest]=miltertest
)

missing=()
for cmd in "${!NEED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
fi

echo "install-test-deps: installing ${missing[*]}" >&2
policy_rc=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
    chmod 755 "$policy_rc"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy_rc"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
