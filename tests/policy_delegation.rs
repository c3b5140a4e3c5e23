//! The policy-delegation listener through the real binary, as Postfix's
//! smtpd and as a hostile local client talk to it: connection reuse, one
//! log line per refusal, and every way a peer can misbehave closing only
//! its own connection within bounded time and memory. (The decisions
//! themselves: the policy matrix, tests/policy_matrix.rs.)

mod common;

use std::time::Duration;

use common::{
    example_config, policy_request, rss_kib, with_policy_service, Gatehouse, ANY_PORT, POLICY_ANY_PORT,
};
use gatehouse::milter::Endpoint;
use gatehouse::policy_delegation::client::PolicyClient;

/// gatehouse with the example policy and the policy listener (with the
/// example's `[policy_service]` lines replaced by `policy_lines`).
fn start(policy_lines: &[(&str, &str)]) -> (Gatehouse, Endpoint) {
    let mut config = with_policy_service(&example_config(ANY_PORT, ""), POLICY_ANY_PORT);
    let section = config.find("[policy_service]").unwrap();
    for (old, new) in policy_lines {
        let at = section + config[section..].find(old).expect("line in [policy_service]");
        config.replace_range(at..at + old.len(), new);
    }
    let g = Gatehouse::start_with(&config, ANY_PORT);
    let endpoint = g.policy_endpoint(POLICY_ANY_PORT);
    (g, endpoint)
}

/// A fresh connection still gets right answers.
async fn still_answers(endpoint: &Endpoint) {
    let mut c = PolicyClient::connect(endpoint).await.unwrap();
    let local = c.ask(&policy_request(&[])).await.unwrap();
    assert_eq!(local, "DUNNO");
    let relay = c
        .ask(&policy_request(&[("recipient", "v@elsewhere.example")]))
        .await
        .unwrap();
    assert_eq!(relay, "550 5.7.1 Unable to relay");
}

/// The server closes the connection within `limit`.
async fn closed_within(c: &mut PolicyClient, limit: Duration) {
    tokio::time::timeout(limit, c.closed())
        .await
        .expect("gatehouse kept the connection open")
        .expect("read error");
}

#[tokio::test]
async fn one_connection_carries_many_transactions_and_each_refusal_is_logged_once() {
    let (g, endpoint) = start(&[]);
    let mut c = PolicyClient::connect(&endpoint).await.unwrap();
    for i in 0..20 {
        let instance = format!("reuse.{i}");
        let rcpt = format!("v{i}@elsewhere.example");
        let request = policy_request(&[("instance", &instance), ("recipient", &rcpt)]);
        let answer = c.ask(&request).await.unwrap();
        // Postfix writes "<rcpt>: Recipient address rejected: " before it.
        assert_eq!(answer, "550 5.7.1 Unable to relay");
        // Asked again for the same recipient (smtpd_sender_restrictions and
        // smtpd_recipient_restrictions both name the service, evaluated
        // together at RCPT): the same answer, not a second log line.
        assert_eq!(c.ask(&request).await.unwrap(), answer);
    }
    // A MAIL-stage refusal holds for every recipient of its transaction,
    // logged once.
    for rcpt in ["carol@example.com", "dave@example.com"] {
        let answer = c
            .ask(&policy_request(&[
                ("instance", "spoof.1"),
                ("sender", "ceo@example.com"),
                ("recipient", rcpt),
            ]))
            .await
            .unwrap();
        assert_eq!(
            answer,
            "550 5.7.1 Anonymous client does not have permissions to send as this sender"
        );
    }
    still_answers(&endpoint).await;
    let log = g.wait_for_log("recipient=v@elsewhere.example", Duration::from_secs(5));
    assert_eq!(g.log_count("rejected"), 22, "{log}");
    assert_eq!(g.log_count("recipient=v7@elsewhere.example"), 1, "{log}");
    assert_eq!(g.log_count("sender=ceo@example.com"), 1, "{log}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_g, endpoint) = start(&[]);
    let mut c = PolicyClient::connect(&endpoint).await.unwrap();
    let mut both = policy_request(&[("instance", "p.1"), ("recipient", "v@elsewhere.example")]).encode();
    both.extend(policy_request(&[("instance", "p.2")]).encode());
    c.send_raw(&both).await.unwrap();
    assert_eq!(c.answer().await.unwrap(), "550 5.7.1 Unable to relay");
    assert_eq!(c.answer().await.unwrap(), "DUNNO");
}

#[tokio::test]
async fn requests_that_are_not_access_policy_questions_are_never_a_pass() {
    let (_g, endpoint) = start(&[]);
    let mut c = PolicyClient::connect(&endpoint).await.unwrap();
    let other = c
        .ask(&policy_request(&[("request", "junk_request")]))
        .await
        .unwrap();
    assert!(other.starts_with("451 4."), "{other}");
    // Stages gatehouse has no rule for let Postfix go on.
    for state in ["CONNECT", "EHLO", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"] {
        let a = c
            .ask(&policy_request(&[
                ("protocol_state", state),
                ("recipient", "v@elsewhere.example"),
            ]))
            .await
            .unwrap();
        assert_eq!(a, "DUNNO", "{state}");
    }
}

#[tokio::test]
async fn malformed_requests_close_only_their_connection() {
    let (g, endpoint) = start(&[]);
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        (
            "no name=value",
            b"request=smtpd_access_policy\nthis is not an attribute\n\n".to_vec(),
        ),
        ("empty name", b"=x\n\n".to_vec()),
        ("upper-case name", b"REQUEST=smtpd_access_policy\n\n".to_vec()),
        (
            "duplicate",
            b"recipient=a@example.com\nrecipient=v@elsewhere.example\n\n".to_vec(),
        ),
        ("empty request", b"\n".to_vec()),
        ("binary", vec![0u8, 1, 2, 255, b'\n', b'\n']),
        // Over max_request_bytes (16384) without a newline, then with many.
        ("one endless line", vec![b'a'; 20000]),
        (
            "too large",
            b"ccert_subject=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n".repeat(300),
        ),
        // Over max_attributes (128).
        ("too many attributes", b"a=1\n".repeat(200)),
    ];
    for (what, bytes) in &garbage {
        let mut c = PolicyClient::connect(&endpoint).await.unwrap();
        c.send_raw(bytes).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), c.closed())
            .await
            .unwrap_or_else(|_| panic!("{what}: connection kept open"))
            .unwrap();
        still_answers(&endpoint).await;
    }
    let log = g.wait_for_log("policy protocol error", Duration::from_secs(5));
    for reason in [
        "not name=value",
        "given twice",
        "longer than 16384",
        "more than 128 attributes",
    ] {
        assert!(log.contains(reason), "{reason} not logged:\n{log}");
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_dropped_in_bounded_time() {
    let (g, endpoint) = start(&[
        ("request_timeout = \"10s\"", "request_timeout = \"1s\""),
        ("idle_timeout = \"330s\"", "idle_timeout = \"2s\""),
    ]);
    // Half a request, then nothing: dropped after request_timeout.
    let mut slow = PolicyClient::connect(&endpoint).await.unwrap();
    let wire = policy_request(&[]).encode();
    slow.send_raw(&wire[..wire.len() / 2]).await.unwrap();
    // A request trickled a few bytes at a time never gets longer than
    // request_timeout either: the deadline is the request's, not the read's.
    let mut trickle = PolicyClient::connect(&endpoint).await.unwrap();
    let trickling = async {
        for chunk in wire.chunks(8) {
            if trickle.send_raw(chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the whole trickled request was read");
    };
    tokio::time::timeout(Duration::from_secs(10), trickling)
        .await
        .expect("trickling client kept");
    closed_within(&mut slow, Duration::from_secs(5)).await;
    // Connected and silent: dropped after idle_timeout.
    let mut idle = PolicyClient::connect(&endpoint).await.unwrap();
    closed_within(&mut idle, Duration::from_secs(6)).await;
    // A connection in use is not idle: answers keep it.
    still_answers(&endpoint).await;
    let log = g.log();
    assert!(log.contains("request not complete within 1s"), "{log}");
    assert!(log.contains("closing idle policy connection"), "{log}");
}

#[tokio::test]
async fn many_connections_holding_partial_requests_cost_bounded_memory() {
    let (g, endpoint) = start(&[]);
    let before = rss_kib(g.pid());
    let mut held = Vec::new();
    // 300 connections, each with a request just under max_request_bytes.
    let partial = b"ccert_subject="
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'x', 16000))
        .collect::<Vec<u8>>();
    for _ in 0..300 {
        let mut c = PolicyClient::connect(&endpoint).await.unwrap();
        c.send_raw(&partial).await.unwrap();
        held.push(c);
    }
    // Each connection was accepted before the next (one accept loop) and
    // its task reads what is there; a fresh one is still answered.
    still_answers(&endpoint).await;
    let grown = rss_kib(g.pid()).saturating_sub(before);
    // 300 × (16 KiB buffer + 4 KiB read step) is ~6 MiB; far below 40 MiB.
    assert!(
        grown < 40 * 1024,
        "RSS grew by {grown} KiB for 300 partial requests"
    );
    drop(held);
    still_answers(&endpoint).await;
}

#[tokio::test]
async fn a_missing_policy_context_is_reported_once_with_the_fix() {
    let (g, endpoint) = start(&[]);
    let mut c = PolicyClient::connect(&endpoint).await.unwrap();
    for i in 0..3 {
        let instance = format!("noctx.{i}");
        // No policy_context: the request falls through to "default",
        // which allows anonymous senders and refuses relaying.
        let a = c
            .ask(&policy_request(&[
                ("instance", &instance),
                ("policy_context", ""),
                ("recipient", "v@elsewhere.example"),
            ]))
            .await
            .unwrap();
        assert_eq!(a, "550 5.7.1 Unable to relay");
    }
    let log = g.wait_for_log(
        "did not send the policy attribute policy_context",
        Duration::from_secs(5),
    );
    // Once per listener that matches on daemon_name (bridgehead, submission).
    assert_eq!(
        g.log_count("did not send the policy attribute policy_context"),
        2,
        "{log}"
    );
    assert!(log.contains("smtpd_policy_service_policy_context"), "{log}");
}
