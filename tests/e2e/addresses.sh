# shellcheck shell=bash
# The address battery: every spelling an MTA rewrites, through a real MTA.
# Sourced by tests/e2e/run.sh after lib.sh; postfix_suite and sendmail_suite
# call address_battery with their ports once their MTA runs.
#
# Both MTAs are set up as the attacks were found: their own host name
# (mx.example.com, in Postfix's mydestination and Sendmail's class w) lies
# under gatehouse's local pattern ".example.com"; Postfix keeps its defaults
# allow_percent_hack, swap_bangpath, resolve_dequoted_address and
# append_at_myorigin, with recipient_delimiter = +, and aliases all-staff on
# mx.example.com to the list; relaying is left to gatehouse.
#
# Each refused case asserts a 5xx at RCPT, no DATA, and after the queue
# settled, that nothing of the case reached smtp-sink ("the Internet") or a
# local mailbox. The controls assert where accepted mail went.

# Routed forms that Postfix or Sendmail deliver to victim@external.org.
ADDR_ROUTED=(
    'victim%external.org@mx.example.com'
    'external.org!victim@mx.example.com'
    '"victim@external.org"@mx.example.com'
    '"victim%external.org"@mx.example.com'
    'VICTIM%EXTERNAL.ORG@MX.EXAMPLE.COM'
    'victim%external.org@mx.example.com.'
    'victim%external.org@example.com'
    'external.org!victim@example.com'
    '"victim@external.org"@example.com'
    'victim%external.org%mx.example.com@mx.example.com'
    'mx.example.com!external.org!victim@mx.example.com'
    'external.org!victim'
    'victim%external.org'
    '@mx.example.com:victim@external.org'
    'victim@[127.0.0.1]'
)

# Not addresses, though they end in a local domain.
ADDR_INVALID=(
    'x@elsewhere.example .example.com'
    'x@elsewhere.example(x).example.com'
    'x@elsewhere.example;@example.com'
    'x@elsewhere.example#.example.com'
    'x@..example.com'
    '@example.com'
    'victim@external.org@mx.example.com'
    'all\-staff@example.com'
    '<x@elsewhere.example>.example.com'
)

# Invalid spellings Postfix tidies into another address before a policy
# service sees it (the milter sees them as typed and refuses them as
# invalid): index in ADDR_INVALID -> the address Postfix makes of it, and
# delivers to. Through the policy service they are judged as that address.
declare -A ADDR_TIDIED=(
    [0]='x@elsewhere.example.example.com'
    [7]='all-staff@example.com'
)
# Names (without the MTA prefix) of the cases judged as tidied, for
# postfix_parity.
ADDR_TIDIED_CASES=()

# Spellings that reach the restricted list all-staff@example.com.
ADDR_LIST=(
    'all-staff'
    'all-staff@'
    'ALL-Staff@Example.COM'
    'all-staff@example.com.'
    'all-staff+tag@example.com'
    '"all-staff"@example.com'
    'all-staff%example.com@example.com'
    'example.com!all-staff'
    'example.com!all-staff@mx.example.com'
    '"all-staff@example.com"@example.com'
    'all-staff@example.com@example.com'
    'all-staff@mx.example.com'
    'all-staff+tag@mx.example.com'
)

# The RCPT stage name e2e_replies gives an address.
addr_stage() {
    local a
    a=$(printf '<%s>' "$1" | sed -e 's/^[^<]*<//' -e 's/>.*$//' | tr '[:upper:]' '[:lower:]')
    printf 'rcpt:%s' "$a"
}

# addr_refused NAME RCPT SMTP_CASE_OPTIONS...: RCPT is refused (5xx) and no
# DATA is sent; the name is remembered for the delivery checks.
addr_refused() {
    local n=$1 r=$2
    shift 2
    smtp_case "$n" "$@" --to "$r" --expect-glob "$(addr_stage "$r")" '5[0-9][0-9] 5.*' --expect dot '(none)'
    ADDR_REFUSED+=("$n")
}

# addr_judged_as NAME RCPT TIDIED SMTP_CASE_OPTIONS...: RCPT gets the
# reply that TIDIED gets, typed plainly in its own session.
addr_judged_as() {
    local n=$1 r=$2 t=$3 a b
    shift 3
    smtp_case "$n" "$@" --to "$r" --quit-after RCPT --expect-glob "$(addr_stage "$r")" '[245][0-9][0-9] *'
    smtp_case "$n-tidied" "$@" --to "$t" --quit-after RCPT --expect-glob "$(addr_stage "$t")" '[245][0-9][0-9] *'
    a=$(e2e_replies <"$E2E_ROOT/cases/${n//[^A-Za-z0-9._-]/_}.txt" | awk -F'\t' '$1 ~ /^rcpt:/ { print $2 }')
    b=$(e2e_replies <"$E2E_ROOT/cases/${n//[^A-Za-z0-9._-]/_}-tidied.txt" | awk -F'\t' '$1 ~ /^rcpt:/ { print $2 }')
    if [ -n "$a" ] && [ "$a" = "$b" ]; then
        pass "$n: judged as $t"
    else
        fail "$n: judged as $t" "typed: '$a', tidied: '$b'"
    fi
}

# address_battery MTA BRIDGEHEAD_PORT SUBMISSION_PORT SETTLE DELIVERED
#   SETTLE: waits until the MTA's queue is empty.
#   DELIVERED MARKER: true when case MARKER reached any local mailbox.
address_battery() {
    local mta=$1 bh=$2 sub=$3 settle=$4 delivered=$5
    local i r n
    local -a anonymous=(--port "$bh" --from partner@partner.example)
    # bob: in relay.deny_groups and a Contractor (reject_from of all-staff).
    local -a bob=(--port "$sub" --auth bob --from bob@example.com)
    local -a alice=(--port "$sub" --auth alice --from alice@example.com)
    ADDR_REFUSED=()
    for i in "${!ADDR_ROUTED[@]}"; do
        addr_refused "$mta-addr-anonymous-routed-$i" "${ADDR_ROUTED[$i]}" "${anonymous[@]}"
        addr_refused "$mta-addr-relay-denied-routed-$i" "${ADDR_ROUTED[$i]}" "${bob[@]}"
    done
    for i in "${!ADDR_INVALID[@]}"; do
        if [ "${E2E_REPLIES_FROM:-}" = postfix-policy ] && [ -n "${ADDR_TIDIED[$i]:-}" ]; then
            addr_judged_as "$mta-addr-anonymous-invalid-$i" "${ADDR_INVALID[$i]}" "${ADDR_TIDIED[$i]}" "${anonymous[@]}"
            addr_judged_as "$mta-addr-authenticated-invalid-$i" "${ADDR_INVALID[$i]}" "${ADDR_TIDIED[$i]}" "${alice[@]}"
            ADDR_TIDIED_CASES+=("addr-anonymous-invalid-$i" "addr-authenticated-invalid-$i")
            continue
        fi
        addr_refused "$mta-addr-anonymous-invalid-$i" "${ADDR_INVALID[$i]}" "${anonymous[@]}"
        addr_refused "$mta-addr-authenticated-invalid-$i" "${ADDR_INVALID[$i]}" "${alice[@]}"
    done
    for i in "${!ADDR_LIST[@]}"; do
        addr_refused "$mta-addr-anonymous-list-$i" "${ADDR_LIST[$i]}" "${anonymous[@]}"
        addr_refused "$mta-addr-contractor-list-$i" "${ADDR_LIST[$i]}" "${bob[@]}"
    done
    # Anonymous senders the MTA completes into one of our domains.
    for r in alice 'alice@'; do
        n=$mta-addr-anonymous-bare-sender-${r//@/-at}
        smtp_case "$n" --port "$bh" --from "$r" --to carol@example.com \
            --expect-glob mail '5[0-9][0-9] 5.*' \
            --expect dot '(none)'
        ADDR_REFUSED+=("$n")
    done

    # Controls: what may pass still passes, and goes where it should.
    n=$mta-addr-relay-allowed-routed
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com \
        --to 'victim%external.org@mx.example.com' \
        --expect-glob "$(addr_stage 'victim%external.org@mx.example.com')" '250 *' \
        --expect-glob dot '250 *'
    check "$n: reached smtp-sink for victim@external.org" wait_until 15 sink_has "$n" victim@external.org
    n=$mta-addr-member-to-list-with-extension
    smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to 'all-staff+tag@example.com' \
        --expect-glob rcpt:all-staff+tag@example.com '250 *' \
        --expect-glob dot '250 *'
    check "$n: delivered locally" wait_until 15 "$delivered" "$n"
    n=$mta-addr-anonymous-quoted-local
    smtp_case "$n" --port "$bh" --from partner@partner.example --to '"carol"@Example.COM' \
        --expect-glob 'rcpt:"carol"@example.com' '250 *' \
        --expect-glob dot '250 *'
    check "$n: delivered locally" wait_until 15 "$delivered" "$n"
    n=$mta-addr-anonymous-trailing-dot
    smtp_case "$n" --port "$bh" --from partner@partner.example --to 'carol@example.com.' \
        --expect-glob rcpt:carol@example.com. '250 *' \
        --expect-glob dot '250 *'
    check "$n: delivered locally" wait_until 15 "$delivered" "$n"

    check "$mta: queue empty after the address battery" "$settle"
    for n in "${ADDR_REFUSED[@]}"; do
        check_not "$n: nothing reached smtp-sink" sink_has "$n"
        check_not "$n: nothing delivered locally" "$delivered" "$n"
    done
}
