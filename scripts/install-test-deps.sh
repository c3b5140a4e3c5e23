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
    # End-to-end suite (tests/e2e): real Postfix from a temporary config
    # directory, Dovecot's auth service for SASL, swaks as the SMTP client.
    [postfix]=postfix      # also smtp-sink and smtp-source (/usr/sbin)
    [smtp-sink]=postfix
    [dovecot]=dovecot-core # SASL for Postfix (auth service only)
    [swaks]=swaks
    [unshare]=util-linux   # private network namespace for the e2e suite
    [ip]=iproute2          # `ip link set lo up` in that namespace; ss
    [ss]=iproute2
    [script]=bsdutils      # gives a failing postfix command a tty for its message
    [shellcheck]=shellcheck # lints every script of the repository (scripts/test.sh)
    [gcc]=gcc              # compiles bench/noop-milter.c for the benchmark smoke run
    [jq]=jq                # reads gatehouse's JSON log and replay's output in the e2e suite
    # Active Directory tests (tests/ad): a Samba AD domain controller.
    [samba]=samba-ad-dc
    [samba-tool]=samba-common-bin # provisions the test domain
    [ldbadd]=ldb-tools     # bulk test data and Exchange's schema attributes
)

# True when the command is installed. Daemons and admin tools live in
# /usr/sbin, which is not on a normal user's PATH on Debian.
have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# >>> Sendmail e2e suite (tests/e2e/sendmail.sh) >>>
NEED[m4]='m4'                # builds the test sendmail.cf
NEED[saslpasswd2]=sasl2-bin  # writes the test Sendmail's Cyrus sasldb
# Sendmail's package conflicts with Postfix's, so the suite runs it from its
# .debs: fetch them (once, into /var/cache/gatehouse-e2e/sendmail) and the
# libraries the binary links, before the suite enters its network namespace.
bash "$(dirname "$0")/../tests/e2e/sendmail.sh" prepare
# <<< Sendmail e2e suite <<<

missing=()
for cmd in "${!NEED[@]}"; do
    have "$cmd" || missing+=("${NEED[$cmd]}")
done
# A provision without these schema files fails (only recommended by samba-ad-dc).
[ -d /usr/share/samba/setup/ad-schema ] || missing+=(samba-ad-provision)
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
# Leave the system Postfix unconfigured (no /etc/postfix/main.cf): the e2e
# suite runs its own from a temporary config directory.
echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
