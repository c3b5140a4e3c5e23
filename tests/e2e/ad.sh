# shellcheck shell=bash
# Active Directory through real Postfix: a Samba AD DC (tests/ad/samba.sh)
# holding Exchange's delivery restrictions, a second gatehouse with the
# README's Active Directory recipe, and a Postfix of its own in front of it.
# Sourced by run.sh (inside its network namespace, where the DC can bind
# 389/636); defines ad_suite.
#
# The DC's test data (tests/ad/samba.sh): Board (board@, alias directors@)
# takes mail from authenticated senders only, from Managers (erin; grace
# through two levels of nesting) but not Contractors (carol); ceo (alias
# chief@) from alice only; dave is disabled; alice sends as her aliases.

# The running e2e gatehouse's variables, kept while the AD one runs.
ad_save_gatehouse() {
    AD_SAVED=("$GH_PID" "$GH_MILTER" "$GH_POLICY" "$GH_CONFIG" "$GH_LOG" "${GH_PORT:-}" "${GH_POLICY_PORT:-}")
}

ad_restore_gatehouse() {
    GH_PID=${AD_SAVED[0]} GH_MILTER=${AD_SAVED[1]} GH_POLICY=${AD_SAVED[2]}
    GH_CONFIG=${AD_SAVED[3]} GH_LOG=${AD_SAVED[4]} GH_PORT=${AD_SAVED[5]} GH_POLICY_PORT=${AD_SAVED[6]}
}

# The e2e configuration (listeners, [[recipient]]) with the README's recipe
# as its directory, pointed at the test DC by IP with the certificate's name.
ad_gatehouse_config() {
    local out=$1 recipe
    # shellcheck disable=SC1090,SC1091 # written by tests/ad/samba.sh
    . "$AD_DIR/ad.env"
    recipe=$(sed -n '/^<!-- ad-recipe/,/^```$/p' "$E2E_REPO/README.md" | sed '1,2d;$d') || return 1
    grep -q '^membership = ' <<<"$recipe" || { echo "e2e: no AD recipe in README.md" >&2; return 1; }
    recipe=$(sed -e "s|^urls = .*|urls = [\"ldaps://127.0.0.1\"]\ntls_server_name = \"dc1.example.com\"|" \
                 -e "s|/etc/gatehouse/ad-ca.pem|$AD_CA_FILE|" \
                 -e "s|/etc/gatehouse/ldap.secret|$AD_BIND_PASSWORD_FILE|" <<<"$recipe")
    GH_PORT=$(free_port)
    GH_MILTER=inet:127.0.0.1:$GH_PORT
    GH_POLICY_PORT=$(free_port)
    GH_POLICY=inet:127.0.0.1:$GH_POLICY_PORT
    awk -v recipe="$recipe" '
        /^\[directory\]$/ { skip = 1; print recipe; print ""; next }
        /^\[cache\]$/ { skip = 1; next }
        # Last in the file, on the port of the running e2e gatehouse.
        /^\[metrics\]$/ { skip = 1; next }
        /^\[domains\]$/ { skip = 0 }
        # Submission for every directory user: the AD has no "Mail Senders".
        /^submit = / { next }
        !skip { print }
    ' "$E2E_ROOT/gatehouse.toml" \
        | sed -e "0,/^listen = / s|^listen = \[\"inet:127.0.0.1:[0-9]*\"\].*|listen = [\"$GH_MILTER\"]|" \
              -e "0,/^listen = \[\"$GH_MILTER\"\]\$/! s|^listen = \[\"inet:127.0.0.1:[0-9]*\"\].*|listen = [\"$GH_POLICY\"]|" \
              >"$out"
    grep -q "^listen = \[\"$GH_POLICY\"\]" "$out" || { echo "e2e: AD policy listen not set in $out" >&2; return 1; }
    grep -q "^listen = \[\"$GH_MILTER\"\]" "$out" || { echo "e2e: AD milter listen not set in $out" >&2; return 1; }
    grep -q '^tls_server_name = "dc1.example.com"$' "$out" || { echo "e2e: AD urls not set in $out" >&2; return 1; }
}

ad_suite() {
    AD_DIR=$E2E_ROOT/ad
    e2e_log "Samba AD DC for the Active Directory cases"
    if ! bash "$E2E_REPO/tests/ad/samba.sh" start "$AD_DIR" >"$E2E_ROOT/ad-start.log" 2>&1; then
        cat "$E2E_ROOT/ad-start.log" >&2
        fail "ad: start the Samba AD DC"
        return 1
    fi
    e2e_track_pid "$(cat "$AD_DIR/samba.pid")" samba
    ad_save_gatehouse
    if ! ad_gatehouse_config "$E2E_ROOT/gatehouse-ad.toml"; then
        fail "ad: gatehouse configuration"
        ad_restore_gatehouse
        return 1
    fi
    local check_out
    if check_out=$("$GH_BIN" check --config "$E2E_ROOT/gatehouse-ad.toml" 2>&1); then
        pass "ad: gatehouse check of the README recipe against the DC"
    else
        # Warnings only (exit 2) are the e2e policy's, not the recipe's.
        case $? in
            2) pass "ad: gatehouse check of the README recipe against the DC (warnings only)" ;;
            *) fail "ad: gatehouse check of the README recipe against the DC" "$check_out" ;;
        esac
    fi
    GH_LOG=$E2E_ROOT/gatehouse-ad.log
    if ! start_gatehouse "$E2E_ROOT/gatehouse-ad.toml"; then
        fail "ad: start gatehouse with the AD directory"
        ad_restore_gatehouse
        return 1
    fi
    # Mailboxes for the DC's recipients and their aliases, SASL logins for
    # its users: Postfix checks its own mailbox table before the milter,
    # so an alias it does not know would be refused for the wrong reason.
    local saved_users=("${E2E_USERS[@]}")
    E2E_USERS=(alice bob carol dave erin grace board directors ceo chief)
    # Read by pf_start and smtp_case (postfix.sh, lib.sh).
    # shellcheck disable=SC2034
    PF_INTERFACE=milter
    PF_NAME=postfix-ad
    # shellcheck disable=SC2034
    E2E_REPLIES_FROM=$PF_NAME
    if ! pf_start; then
        fail "ad: start Postfix"
        E2E_USERS=("${saved_users[@]}")
        ad_restore_gatehouse
        return 1
    fi
    local bh=$PF_BH_PORT sub=$PF_SUB_PORT queued='250 2.0.0 Ok: queued as *' n rcpt
    local auth_required='Authentication required to send to this recipient'
    local not_authorized='Not authorized to send to this recipient'

    for rcpt in board@example.com directors@example.com; do
        n=ad-anonymous-to-$rcpt
        smtp_case "$n" --port "$bh" --from someone@partner.example --to "$rcpt" \
            --expect rcpt:"$rcpt" "550 5.7.1 <$rcpt>: $auth_required" \
            --expect data '(none)'
        n=ad-manager-to-$rcpt
        smtp_case "$n" --port "$sub" --auth erin --from erin@example.com --to "$rcpt" \
            --expect rcpt:"$rcpt" '250 2.1.5 Ok' --expect-glob dot "$queued"
        check "$n: delivered" wait_until 15 maildir_has "${rcpt%@*}" "$n"
        n=ad-nested-manager-to-$rcpt
        smtp_case "$n" --port "$sub" --auth grace --from grace@example.com --to "$rcpt" \
            --expect rcpt:"$rcpt" '250 2.1.5 Ok' --expect-glob dot "$queued"
        n=ad-contractor-to-$rcpt
        smtp_case "$n" --port "$sub" --auth carol --from carol@example.com --to "$rcpt" \
            --expect rcpt:"$rcpt" "550 5.7.1 <$rcpt>: $not_authorized" \
            --expect data '(none)'
    done
    for rcpt in ceo@example.com chief@example.com; do
        n=ad-allowed-sender-to-$rcpt
        smtp_case "$n" --port "$sub" --auth alice --from alice@example.com --to "$rcpt" \
            --expect rcpt:"$rcpt" '250 2.1.5 Ok' --expect-glob dot "$queued"
        n=ad-rejected-sender-to-$rcpt
        smtp_case "$n" --port "$sub" --auth carol --from carol@example.com --to "$rcpt" \
            --expect rcpt:"$rcpt" "550 5.7.1 <$rcpt>: $not_authorized" \
            --expect data '(none)'
        n=ad-unlisted-sender-to-$rcpt
        smtp_case "$n" --port "$sub" --auth bob --from bob@example.com --to "$rcpt" \
            --expect rcpt:"$rcpt" "550 5.7.1 <$rcpt>: $not_authorized" \
            --expect data '(none)'
    done

    n=ad-send-as-alias-and-relay
    smtp_case "$n" --port "$sub" --auth alice --from a.smith@example.com --to partner@elsewhere.example \
        --expect mail '250 2.1.0 Ok' \
        --expect rcpt:partner@elsewhere.example '250 2.1.5 Ok' --expect-glob dot "$queued"
    check "$n: reached smtp-sink" wait_until 15 sink_has "$n" partner@elsewhere.example
    n=ad-nested-member-relays
    smtp_case "$n" --port "$sub" --auth bob --from robert@example.com --to partner@elsewhere.example \
        --expect rcpt:partner@elsewhere.example '250 2.1.5 Ok' --expect-glob dot "$queued"
    n=ad-disabled-account-submits-nothing
    smtp_case "$n" --port "$sub" --auth dave --from dave@example.com --to partner@elsewhere.example \
        --expect auth '235 2.7.0 Authentication successful' \
        --expect mail '550 5.7.1 Client does not have permissions to submit to this server'

    pf_stop
    e2e_stop_pid "$GH_PID"
    bash "$E2E_REPO/tests/ad/samba.sh" stop "$AD_DIR" >/dev/null 2>&1 || true
    E2E_USERS=("${saved_users[@]}")
    ad_restore_gatehouse
}
