//! `gatehouse replay`: a decision log recorded from live milter sessions
//! (`[log] format = "json"`, `accepted = true`) decided again with a
//! changed configuration lists exactly the decisions that change.

mod common;

use std::time::{Duration, Instant};

use common::{example_config, reply_text, session, Gatehouse, ANY_PORT};
use gatehouse::milter::client::Envelope;

const RELAY: &str = "relay = { allow_groups = [\"Internet Mail Users\"], deny_groups = [\"Contractors\"] }";

async fn submit(g: &Gatehouse, login: Option<&str>, daemon: &str, from: &str, to: &str) -> String {
    let mut c = session(&g.endpoint, daemon, "198.51.100.7").await;
    let env = Envelope {
        mail_macros: login
            .map(|l| vec![("{auth_authen}".to_string(), l.to_string())])
            .unwrap_or_default(),
        sender: from.into(),
        recipients: vec![to.into()],
    };
    let r = c.transaction(&env).await.unwrap();
    match r.rcpts.first() {
        Some(rcpt) => reply_text(rcpt),
        None => reply_text(&r.mail),
    }
}

/// The JSON object `replay --json` printed: its first line (a warning on
/// stderr may follow).
fn report(out: &str) -> serde_json::Value {
    let first = out.lines().next().unwrap_or_default();
    serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn replay(config: &std::path::Path, log: &std::path::Path) -> (Option<i32>, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("--config")
        .arg(config)
        .arg("replay")
        .arg(log)
        .arg("--json")
        .output()
        .unwrap();
    (
        o.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[tokio::test]
async fn a_changed_config_changes_exactly_the_decisions_it_should() {
    let config = example_config(ANY_PORT, "format = \"json\"\naccepted = true");
    assert!(config.contains(RELAY));
    let g = Gatehouse::start_with(&config, ANY_PORT);
    // Decided by the running configuration.
    assert_eq!(
        submit(
            &g,
            Some("alice"),
            "submission",
            "alice@example.com",
            "x@elsewhere.example"
        )
        .await,
        "continue"
    );
    assert!(submit(
        &g,
        Some("bob"),
        "submission",
        "bob@example.com",
        "x@elsewhere.example"
    )
    .await
    .starts_with("550"));
    assert_eq!(
        submit(
            &g,
            Some("alice"),
            "submission",
            "alice@example.com",
            "carol@example.com"
        )
        .await,
        "continue"
    );
    assert!(submit(
        &g,
        None,
        "bridgehead",
        "someone@partner.example",
        "victim@elsewhere.example"
    )
    .await
    .starts_with("550"));
    // Each transaction: a MAIL and a RCPT decision line.
    let deadline = Instant::now() + Duration::from_secs(10);
    while g.log_count("\"rule\":") < 8 {
        assert!(Instant::now() < deadline, "decision lines missing:\n{}", g.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gatehouse.log");
    std::fs::write(&log, g.log()).unwrap();

    // The same configuration decides the same.
    let same = dir.path().join("same.toml");
    std::fs::write(&same, &config).unwrap();
    let (code, out) = replay(&same, &log);
    let v = report(&out);
    assert_eq!((code, v["envelopes"].as_u64()), (Some(0), Some(8)), "{out}");
    assert_eq!(v["changed"].as_array().map(Vec::len), Some(0), "{out}");

    // Full-Time Employees may no longer relay: alice's relaying, and only that.
    let candidate = dir.path().join("candidate.toml");
    std::fs::write(
        &candidate,
        config.replace(
            RELAY,
            &RELAY.replace("[\"Contractors\"]", "[\"Contractors\", \"Full-Time Employees\"]"),
        ),
    )
    .unwrap();
    let (code, out) = replay(&candidate, &log);
    assert_eq!(code, Some(1), "{out}");
    let v = report(&out);
    let changed = v["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{out}");
    let c = &changed[0];
    assert_eq!(c["envelope"]["login"], "alice");
    assert_eq!(c["envelope"]["recipient"], "x@elsewhere.example");
    assert_eq!(c["before"]["action"], "accept");
    assert_eq!(c["before"]["rule"], "relay_allowed");
    assert_eq!(c["after"]["action"], "reject");
    assert_eq!(c["after"]["rule"], "relay_group");
    assert_eq!(
        c["after"]["reply"],
        "550 5.7.1 <x@elsewhere.example>: Not permitted to relay"
    );
    assert_eq!(
        v["by_rule"]["accept relay_allowed -> reject relay_group"], 1,
        "{out}"
    );

    // A log that cannot be read, or holds no decision (a text log): exit 2.
    let (code, _) = replay(&candidate, &dir.path().join("missing.log"));
    assert_eq!(code, Some(2));
    let text = dir.path().join("text.log");
    std::fs::write(
        &text,
        "2026-12-06T00:00:00Z  INFO rejected listener=\"bridgehead\"\n",
    )
    .unwrap();
    let (code, out) = replay(&candidate, &text);
    assert_eq!(code, Some(2), "{out}");
    // journalctl's prefix before each object is fine.
    let journal = dir.path().join("journal.log");
    let prefixed: String = g
        .log()
        .lines()
        .map(|l| format!("Dec 06 mx gatehouse[42]: {l}\n"))
        .collect();
    std::fs::write(&journal, prefixed).unwrap();
    let (code, _) = replay(&candidate, &journal);
    assert_eq!(code, Some(1));
}

/// A recipient the MTA resolved to another address (`{rcpt_addr}`, logged
/// as `mta_recipient`) is replayed with that view too: with `mta_view =
/// "enforce"` the stricter of the two decided, and decides again.
#[test]
fn the_mtas_view_of_a_recipient_is_replayed() {
    let config = example_config(ANY_PORT, "format = \"json\"\naccepted = true");
    assert!(config.contains("mta_view = \"enforce\""));
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("same.toml");
    std::fs::write(&same, &config).unwrap();
    // An anonymous client typed a plain local address that the MTA
    // rewrote to the restricted list (an alias): refused as the list.
    let line = |mta: &str| {
        serde_json::json!({
            "timestamp": "2026-12-08T05:00:00.000000Z",
            "level": "INFO",
            "message": "rejected",
            "queue_id": "Q1",
            "listener": "bridgehead",
            "client": "198.51.100.7",
            "login": "",
            "sender": "someone@partner.example",
            "recipient": "staff-alias@example.com",
            "mta_recipient": mta,
            "rule": "recipient_require_authenticated",
            "path": "",
            "reply": "550 5.7.1 <staff-alias@example.com>: Authentication required to send to this recipient",
            "action": "reject",
            "config_version": 1
        })
        .to_string()
    };
    let log = dir.path().join("alias.log");
    std::fs::write(&log, line("all-staff@example.com") + "\n").unwrap();
    let (code, out) = replay(&same, &log);
    assert_eq!(code, Some(0), "the same decision again: {out}");
    // The same line without the MTA's view is the typed address alone,
    // which is open: replay would call that a change.
    std::fs::write(&log, line("") + "\n").unwrap();
    let (code, out) = replay(&same, &log);
    let v = report(&out);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(v["changed"][0]["after"]["action"], "accept", "{out}");
}
