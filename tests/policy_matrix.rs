//! The policy matrix (tests/common/matrix.rs) through the real binary and
//! the project's milter client, once with the static directory of the example
//! configuration and once with the LDAP backend against a real slapd: every
//! row's exact MAIL and RCPT replies. Each run also asks every row of
//! the policy-delegation listener, as Postfix's smtpd would: the same
//! replies (one decision, two front ends).

mod common;

use common::matrix::{C, ROWS};
use common::slapd::{Options, Slapd};
use common::{
    assert_relay_refused, example_config, ldap_example_config, negotiated, policy_request, reply_text,
    session, with_policy_service, Gatehouse, ANY_PORT, POLICY_ANY_PORT,
};
use gatehouse::milter::client::Envelope;
use gatehouse::milter::Reply;
use gatehouse::policy_delegation::client::PolicyClient;

async fn run_matrix(g: &Gatehouse) {
    let mut failures = Vec::new();
    for (i, (listener, login, client, from, rcpt, want_mail, want_rcpt, rule)) in ROWS.iter().enumerate() {
        // The "default" listener is reached by a name no listener matches.
        let daemon_name = if *listener == "default" {
            "unlisted-service"
        } else {
            listener
        };
        let client = if client.is_empty() { "198.51.100.7" } else { client };
        let mut c = session(&g.endpoint, daemon_name, client).await;
        let mut mail_macros = vec![("i".to_string(), format!("Q{i:04}"))];
        if !login.is_empty() {
            mail_macros.push(("{auth_authen}".into(), login.to_string()));
        }
        let from = from.trim_start_matches('<').trim_end_matches('>');
        let r = c
            .transaction(&Envelope {
                mail_macros,
                sender: from.to_string(),
                recipients: vec![rcpt.to_string()],
            })
            .await
            .unwrap();
        let got_mail = reply_text(&r.mail);
        let got_rcpt = r.rcpts.first().map(reply_text).unwrap_or_else(|| "-".into());
        if (got_mail.as_str(), got_rcpt.as_str()) != (*want_mail, *want_rcpt) {
            failures.push(format!(
                "row {i} ({rule}): {listener} login={login:?} client={client} from={from} rcpt={rcpt}\n   want MAIL {want_mail:?} RCPT {want_rcpt:?}\n   got  MAIL {got_mail:?} RCPT {got_rcpt:?}"
            ));
        }
        // A message whose recipient was accepted is accepted at DATA.
        if got_rcpt == C {
            assert_eq!(r.end, Some(Reply::Accept), "row {i}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}

/// Every row through the policy-delegation listener: MAIL asked at MAIL
/// (`smtpd_sender_restrictions` with `smtpd_delay_reject = no`), the
/// recipient at RCPT, on one connection kept for all rows, as smtpd keeps it.
async fn run_policy_matrix(g: &Gatehouse) {
    let endpoint = g.policy_endpoint(POLICY_ANY_PORT);
    let mut c = PolicyClient::connect(&endpoint).await.unwrap();
    let mut failures = Vec::new();
    let as_milter = |action: String| if action == "DUNNO" { C.to_string() } else { action };
    // Postfix writes "<address>: Recipient address rejected: " (or
    // Sender) before a policy answer's text, so the answer leaves out the
    // "<address>: " that the milter's reply begins with.
    let without_address = |reply: &str| -> String {
        let mut parts = reply.splitn(3, ' ');
        let (code, enhanced, text) = (parts.next(), parts.next(), parts.next());
        match (code, enhanced, text) {
            (Some(c), Some(e), Some(t)) if t.starts_with('<') && t.contains(">: ") => {
                format!("{c} {e} {}", t.split_once(">: ").unwrap().1)
            }
            _ => reply.to_string(),
        }
    };
    for (i, (listener, login, client, from, rcpt, want_mail, want_rcpt, rule)) in ROWS.iter().enumerate() {
        let context = if *listener == "default" {
            "unlisted-service"
        } else {
            listener
        };
        let client = if client.is_empty() { "198.51.100.7" } else { client };
        // Postfix's internal form: no angle brackets, the null sender empty.
        let from = from.trim_start_matches('<').trim_end_matches('>');
        let instance = format!("row.{i}");
        let queue_id = format!("P{i:04}");
        let ask = |state: &'static str, recipient: &'static str| {
            policy_request(&[
                ("protocol_state", state),
                ("policy_context", context),
                ("client_address", client),
                ("sasl_username", login),
                ("sasl_method", if login.is_empty() { "" } else { "PLAIN" }),
                ("sender", from),
                ("recipient", recipient),
                ("instance", &instance),
                ("queue_id", &queue_id),
            ])
        };
        let got_mail = as_milter(c.ask(&ask("MAIL", "")).await.unwrap());
        let got_rcpt = if got_mail == C {
            as_milter(c.ask(&ask("RCPT", rcpt)).await.unwrap())
        } else {
            "-".to_string()
        };
        let want_rcpt = without_address(want_rcpt);
        if (got_mail.as_str(), got_rcpt.as_str()) != (*want_mail, want_rcpt.as_str()) {
            failures.push(format!(
                "row {i} ({rule}): {listener} login={login:?} client={client} from={from} rcpt={rcpt}\n   want MAIL {want_mail:?} RCPT {want_rcpt:?}\n   got  MAIL {got_mail:?} RCPT {got_rcpt:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "policy delegation: {} of {} rows differ:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn matrix_with_the_static_directory() {
    let g = Gatehouse::start_with(
        &with_policy_service(&example_config(ANY_PORT, ""), POLICY_ANY_PORT),
        ANY_PORT,
    );
    run_matrix(&g).await;
    run_policy_matrix(&g).await;
    // The policy path logs as the milter does: P0001 is row 1's refusal.
    let log = g.log();
    let line = log
        .lines()
        .find(|l| l.contains("P0001") && l.contains("rejected"))
        .expect("row 1 is a refusal through the policy listener too");
    assert!(line.contains("rule=\"relay\""), "{line}");
    // One log line per refusal, with queue id, listener, client, login, rule and reply.
    let log = g.log();
    let line = log
        .lines()
        .find(|l| l.contains("Q0001") && l.contains("rejected"))
        .expect("row 1 is a refusal");
    for field in [
        "listener=\"bridgehead\"",
        "client=198.51.100.7",
        "rule=\"relay\"",
        "reply=\"550 5.7.1 <v@elsewhere.example>: Unable to relay\"",
        "config_version=",
    ] {
        assert!(line.contains(field), "{field} missing in: {line}");
    }
}

#[tokio::test]
async fn matrix_with_ldap_against_a_real_slapd() {
    let slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    let config = with_policy_service(&ldap_example_config(ANY_PORT, &slapd, ""), POLICY_ANY_PORT);
    let g = Gatehouse::start_with(&config, ANY_PORT);
    run_matrix(&g).await;
    run_policy_matrix(&g).await;
}

#[tokio::test]
async fn json_log_lines() {
    let config = common::example_config(ANY_PORT, "").replace("format = \"text\"", "format = \"json\"");
    let g = Gatehouse::start_with(&config, ANY_PORT);
    let mut c = session(&g.endpoint, "bridgehead", "198.51.100.7").await;
    c.transaction(&Envelope {
        mail_macros: vec![("i".into(), "QJSON1".into())],
        sender: "x@partner.example".into(),
        recipients: vec!["v@elsewhere.example".into()],
    })
    .await
    .unwrap();
    let log = g.wait_for_log("QJSON1", std::time::Duration::from_secs(5));
    let line = log.lines().find(|l| l.contains("QJSON1")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["queue_id"], "QJSON1");
    assert_eq!(v["rule"], "relay");
    assert_eq!(v["recipient"], "v@elsewhere.example");
    assert_eq!(v["reply"], "550 5.7.1 <v@elsewhere.example>: Unable to relay");
    assert_eq!(v["action"], "reject");
}

#[tokio::test]
async fn a_missing_listener_macro_is_reported_once_with_the_fix() {
    let g = Gatehouse::start("");
    for _ in 0..3 {
        // No {daemon_name}: the session falls through to "default".
        let mut c = negotiated(&g.endpoint).await;
        c.connect_event("h", "198.51.100.7".parse().unwrap(), 1, &[("j", "mx")])
            .await
            .unwrap();
        assert_relay_refused(&mut c, "x@partner.example").await;
    }
    let log = g.wait_for_log("did not send {daemon_name}", std::time::Duration::from_secs(5));
    // Once per listener that matches on it (bridgehead, submission), not per session.
    assert_eq!(g.log_count("did not send {daemon_name}"), 2, "{log}");
    assert!(log.contains("milter_macro_daemon_name"), "{log}");
}

#[tokio::test]
async fn a_missing_client_address_is_reported_once_per_listener() {
    use gatehouse::milter::codec::ConnectAddress;
    use gatehouse::milter::Command;
    let g = Gatehouse::start("");
    for _ in 0..2 {
        let mut c = negotiated(&g.endpoint).await;
        c.macros(b'C', &[("{daemon_name}", "bridgehead")]);
        c.send(Command::Connect {
            hostname: "unknown".into(),
            address: ConnectAddress::Unknown,
        })
        .await
        .unwrap();
        // Without an address the client cannot be trusted: relaying is refused.
        assert_relay_refused(&mut c, "app@example.org").await;
    }
    let log = g.wait_for_log("sent no client address", std::time::Duration::from_secs(5));
    assert_eq!(g.log_count("sent no client address"), 1, "{log}");
    assert!(log.contains("milter_connect_macros"));
}
