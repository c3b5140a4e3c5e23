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
    [slapd]=slapd          # OpenLDAP server for the LDAP directory tests (/usr/sbin)
    [slapadd]=slapd        # builds the test cn=config (/usr/sbin)
    [ldapadd]=ldap-utils   # loads test data; ldapsearch for manual checks
    [openssl]=openssl      # test CA and server certificate for the TLS tests
)

# True when the command is installed. Daemons and admin tools live in
# /usr/sbin, which is not on a normal user's PATH on Debian.
have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

missing=()
for cmd in "${!NEED[@]}"; do
    have "$cmd" || missing+=("${NEED[$cmd]}")
done
# One package may provide several commands: list it once.
mapfile -t missing < <(printf '%s\n' ${missing[@]+"${missing[@]}"} | sort -u | sed '/^$/d')

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
# Leave the system slapd unconfigured: no /etc/ldap/slapd.d database, no
# example.com tree, nothing for a system daemon to serve.
echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
