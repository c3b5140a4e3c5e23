# shellcheck shell=bash
# `gatehouse replay` on the end-to-end suite's own recording.
#
# Sourced by tests/e2e/run.sh after the MTA suites: the shared gatehouse
# has logged every decision of the Postfix (milter and policy service) and
# Sendmail suites as JSON, accepted ones included (gatehouse_config ...
# record). replay_suite decides that log again, with the live directory:
#
#  1. with the running configuration: what changes is exactly what was
#     decided while the directory was down (the suites stop slapd): every
#     logged tempfail, and nothing else. Every spelling the suites sent
#     through the real MTAs (routed, quoted, rewritten by aliases, the
#     MTA's view of a recipient) is decided again as the live session
#     decided it;
#  2. with a candidate that adds "user:alice" to all-staff@example.com's
#     reject_from: exactly those, and every decision that let alice's
#     identity write to the list (accepted by recipient_accept_from on a
#     membership path from alice to All Staff, under whatever spelling of
#     the list, login or trusted sender), which now refuse.

# replay_key: each decision as one line, "listener|client|login|sender|
# recipient|mta_recipient|action|rule", from a log line or from a replay
# envelope with its "before" (null, "unknown" and "" alike).
REPLAY_KEY='def key: [.listener, ((.client // "") | if . == "unknown" then "" else . end),
    (.login // ""), (.sender // ""), (.recipient // ""), (.mta_recipient // ""), .action, .rule] | join("|");'

# The decision lines of a JSON log, as keys, sorted; a jq condition narrows them.
replay_logged_keys() {
    local log=$1 cond=${2:-true}
    jq -Rr "$REPLAY_KEY"' fromjson?
        | select(.message == "rejected" or .message == "accepted" or .message == "would reject (monitor mode)")
        | select(.sender != null) | select('"$cond"') | key' <"$log" | sort
}

# The changed decisions of a replay's --json output, as keys, sorted.
replay_changed_keys() {
    jq -r "$REPLAY_KEY"' .changed[] | .envelope + {action: .before.action, rule: .before.rule} | key' <"$1" | sort
}

replay_suite() {
    local dir=$E2E_ROOT/replay rc n
    mkdir -p "$dir"
    # What the suites recorded, frozen: the daemon goes on logging.
    cp "$GH_LOG" "$dir/recorded.log"
    local decisions tempfails
    decisions=$(replay_logged_keys "$dir/recorded.log" | wc -l)
    tempfails=$(replay_logged_keys "$dir/recorded.log" '.action == "tempfail"' | wc -l)
    e2e_log "replay: $decisions decisions recorded, $tempfails of them tempfail"
    check "replay: the suites recorded decisions, accepted ones too" \
        gh_logged '.message == "accepted" and .recipient != ""'
    check "replay: outages recorded (tempfails)" [ "$tempfails" -gt 0 ]
    check "replay: decisions with the MTA's own view of a recipient recorded" \
        gh_logged '.message == "rejected" and .mta_recipient != ""'

    # 1. The running configuration.
    n="replay: same configuration"
    "$GH_BIN" --config "$GH_CONFIG" replay "$dir/recorded.log" --json >"$dir/same.json" 2>"$dir/same.err"
    rc=$?
    check "$n: exit 1 (the outage's decisions change)" [ "$rc" = 1 ]
    check "$n: every decision replayed" [ "$(jq .envelopes "$dir/same.json")" = "$decisions" ]
    check "$n: no errors" [ "$(jq '.errors | length' "$dir/same.json")" = 0 ]
    replay_logged_keys "$dir/recorded.log" '.action == "tempfail"' >"$dir/same.expected"
    replay_changed_keys "$dir/same.json" >"$dir/same.got"
    if diff "$dir/same.expected" "$dir/same.got" >"$dir/same.diff"; then
        pass "$n: exactly the $tempfails tempfails change"
    else
        fail "$n: exactly the tempfails change" "$(head -n 40 "$dir/same.diff")"
    fi

    # 2. A candidate: alice may no longer write to all-staff@example.com.
    n="replay: candidate refusing alice on all-staff"
    sed 's|^reject_from = \["group:Contractors"\]|reject_from = ["group:Contractors", "user:alice"]|' \
        "$GH_CONFIG" >"$dir/candidate.toml"
    check "$n: candidate written" grep -q '"user:alice"' "$dir/candidate.toml"
    "$GH_BIN" --config "$dir/candidate.toml" replay "$dir/recorded.log" --json >"$dir/candidate.json" 2>"$dir/candidate.err"
    rc=$?
    check "$n: exit 1" [ "$rc" = 1 ]
    check "$n: no errors" [ "$(jq '.errors | length' "$dir/candidate.json")" = 0 ]
    local alice='.action == "accept" and .rule == "recipient_accept_from"
        and (.path | startswith("alice > ")) and (.path | endswith(" > All Staff"))'
    replay_logged_keys "$dir/recorded.log" "$alice" >"$dir/alice.expected"
    # At least the submissions to the list through Postfix (milter, policy
    # service) and Sendmail, and its +tag spelling.
    check "$n: alice wrote to the list through every MTA" [ "$(wc -l <"$dir/alice.expected")" -ge 4 ]
    sort -m "$dir/same.expected" "$dir/alice.expected" >"$dir/candidate.expected"
    replay_changed_keys "$dir/candidate.json" >"$dir/candidate.got"
    if diff "$dir/candidate.expected" "$dir/candidate.got" >"$dir/candidate.diff"; then
        pass "$n: exactly the tempfails and alice's writes to the list change"
    else
        fail "$n: exactly the tempfails and alice's writes to the list change" "$(head -n 40 "$dir/candidate.diff")"
    fi
    check "$n: each of alice's now refused by reject_from" [ "$(jq '[.changed[]
        | select(.before.rule == "recipient_accept_from")
        | select(.after.action != "reject" or .after.rule != "recipient_reject_from")] | length' "$dir/candidate.json")" = 0 ]
    check "$n: counted by rule" [ "$(jq '.by_rule["accept recipient_accept_from -> reject recipient_reject_from"]' "$dir/candidate.json")" \
        = "$(wc -l <"$dir/alice.expected")" ]

    # The text report: the same exit status and count.
    "$GH_BIN" --config "$dir/candidate.toml" replay "$dir/recorded.log" >"$dir/candidate.txt" 2>&1
    rc=$?
    check "$n: text report, exit 1" [ "$rc" = 1 ]
    check "$n: text report, the same count" \
        grep -q "^$decisions decision(s) replayed against .*: $(wc -l <"$dir/candidate.expected") would change$" "$dir/candidate.txt"
}
