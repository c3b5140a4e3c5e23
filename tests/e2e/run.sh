#!/usr/bin/env bash
# gatehouse's end-to-end suite: real MTAs, real SMTP sessions, real LDAP.
#
#   bash tests/e2e/run.sh        (as root; scripts/install-test-deps.sh
#                                 installs what it needs)
#
# Enters a private network namespace (only loopback; see lib.sh), starts
# slapd with the test directory, gatehouse with the LDAP backend and
# smtp-sink as "the Internet", then runs the Postfix suite
# (tests/e2e/postfix.sh, function postfix_suite) with gatehouse as a
# milter, again as a policy service, compares the two (postfix_parity),
# and, when
# tests/e2e/sendmail.sh exists, the Sendmail suite (function
# sendmail_suite), then replays gatehouse's recording of them all
# (tests/e2e/replay.sh). Prints one line per case (`ok   NAME` / `FAIL NAME`),
# then "N passed, M failed"; exits 1 when a case failed.
#
# Environment: GATEHOUSE_BIN (default target/debug/gatehouse), E2E_KEEP=1
# keeps the temp root (logs, transcripts, maildirs, sink dumps).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
e2e_enter_sandbox "$@"
e2e_setup
started=$SECONDS
e2e_start_shared

# shellcheck source=tests/e2e/addresses.sh
. "$here/addresses.sh"
# shellcheck source=tests/e2e/postfix.sh
. "$here/postfix.sh"
postfix_suite milter
postfix_suite policy
postfix_parity

if [ -f "$here/sendmail.sh" ]; then
    # shellcheck source=/dev/null
    . "$here/sendmail.sh"
    sendmail_suite
fi

# shellcheck source=tests/e2e/replay.sh
. "$here/replay.sh"
replay_suite

# shellcheck source=tests/e2e/ad.sh
. "$here/ad.sh"
ad_suite

e2e_log "e2e run took $((SECONDS - started)) s"
e2e_summary
