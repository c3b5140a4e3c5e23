//! The design's rules, table-driven over the example configuration, through
//! the same code path as a live session (`enforcer::explain`).

use std::net::IpAddr;
use std::path::Path;

use gatehouse::config;
use gatehouse::enforcer::{explain, verdict_for, Envelope, Snapshot};
use gatehouse::milter::Verdict;
use gatehouse::policy::{Address, ListenerId};

const EXAMPLE: &str = include_str!("../conf/gatehouse.toml");

fn snapshot(text: &str) -> Snapshot {
    let c = config::parse(text, Path::new("test.toml")).unwrap();
    Snapshot {
        policy: c.policy,
        directory: c.directory,
    }
}

/// (MAIL outcome, RCPT outcome) as "continue" or the reply text, plus the RCPT rule.
fn decide(
    snap: &Snapshot,
    listener: &str,
    login: &str,
    client: &str,
    from: &str,
    rcpt: &str,
) -> (String, String, String) {
    let p = &*snap.policy;
    let id = (0..p.listeners.len())
        .map(ListenerId::Index)
        .chain(p.default_listener.iter().map(|_| ListenerId::Default))
        .find(|id| p.listener_by_id(*id).name == listener)
        .unwrap();
    let sender = Address::parse(from);
    let client: Option<IpAddr> = (!client.is_empty()).then(|| client.parse().unwrap());
    let env = Envelope {
        listener,
        client,
        login: (!login.is_empty()).then_some(login),
        sender: sender.as_ref(),
    };
    let rcpt = Address::parse(rcpt).unwrap();
    let x = block_on(explain(snap, id, &env, std::slice::from_ref(&rcpt)));
    let show = |v: Verdict| match v {
        Verdict::Continue => "continue".to_string(),
        Verdict::Tempfail => "tempfail".to_string(),
        Verdict::Reply(b) => String::from_utf8(b.to_vec()).unwrap(),
    };
    let mail = show(verdict_for(p, &x.mail, None));
    match x.rcpts.first() {
        Some((a, d)) => (mail, show(verdict_for(p, d, Some(a))), d.rule.to_string()),
        None => (mail, "-".into(), x.mail.rule.to_string()),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

const C: &str = "continue";

/// listener, login, client, from, rcpt, expected MAIL reply, expected RCPT reply, rule.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

#[test]
fn example_policy_table() {
    let snap = snapshot(EXAMPLE);
    // listener, login, client, from, rcpt, MAIL, RCPT, rule
    let table: &[Row] = &[
        // Open relay prevention on the Internet-facing listener.
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "x@partner.example",
            "carol@example.com",
            C,
            C,
            "local_recipient",
        ),
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "x@partner.example",
            "v@elsewhere.example",
            C,
            "550 5.7.1 <v@elsewhere.example>: Unable to relay",
            "relay",
        ),
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "x@partner.example",
            "v@sub.example.com",
            C,
            C,
            "local_recipient",
        ),
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "x@partner.example",
            "v@notexample.com",
            C,
            "550 5.7.1 <v@notexample.com>: Unable to relay",
            "relay",
        ),
        // Trusted network may relay; authenticated may relay on the bridgehead.
        (
            "bridgehead",
            "",
            "10.9.8.7",
            "app@example.com",
            "v@elsewhere.example",
            C,
            C,
            "relay_allowed",
        ),
        (
            "bridgehead",
            "bob",
            "198.51.100.7",
            "bob@example.com",
            "v@elsewhere.example",
            C,
            C,
            "relay_allowed",
        ),
        // Anonymous claiming a local sender: the spoofing case.
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "carol@example.com",
            "bob@example.com",
            "550 5.7.1 Anonymous client does not have permissions to send as this sender",
            "-",
            "anonymous_local_sender",
        ),
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "x@Sub.Example.COM",
            "bob@example.com",
            "550 5.7.1 Anonymous client does not have permissions to send as this sender",
            "-",
            "anonymous_local_sender",
        ),
        // Null sender: anonymous, never refused for being null.
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "<>",
            "carol@example.com",
            C,
            C,
            "local_recipient",
        ),
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "<>",
            "all-staff@example.com",
            C,
            "550 5.7.1 <all-staff@example.com>: Authentication required to send to this recipient",
            "recipient_require_authenticated",
        ),
        // Postmaster is exempt from recipient restrictions, not from relay rules.
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "<>",
            "Postmaster@example.com",
            C,
            C,
            "postmaster",
        ),
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "<>",
            "postmaster@elsewhere.example",
            C,
            "550 5.7.1 <postmaster@elsewhere.example>: Unable to relay",
            "relay",
        ),
        // Restricted list: nested member, direct member, denied group, outsider.
        (
            "bridgehead",
            "alice",
            "198.51.100.7",
            "alice@example.com",
            "all-staff@example.com",
            C,
            C,
            "recipient_accept_from",
        ),
        (
            "bridgehead",
            "carol",
            "198.51.100.7",
            "carol@example.com",
            "ALL-STAFF@example.com",
            C,
            C,
            "recipient_accept_from",
        ),
        (
            "bridgehead",
            "bob",
            "198.51.100.7",
            "bob@example.com",
            "all-staff@example.com",
            C,
            "550 5.7.1 <all-staff@example.com>: Not authorized to send to this recipient",
            "recipient_reject_from",
        ),
        (
            "bridgehead",
            "mallory",
            "198.51.100.7",
            "m@example.org",
            "all-staff@example.com",
            C,
            "550 5.7.1 <all-staff@example.com>: Not authorized to send to this recipient",
            "recipient_accept_from",
        ),
        // sender: entries: an external contact counts only if authenticated here (require_authenticated).
        (
            "bridgehead",
            "",
            "198.51.100.7",
            "ceo@partner.example",
            "all-staff@example.com",
            C,
            "550 5.7.1 <all-staff@example.com>: Authentication required to send to this recipient",
            "recipient_require_authenticated",
        ),
        // Trusted client: identity is the envelope sender.
        (
            "bridgehead",
            "",
            "10.1.1.1",
            "alice@example.com",
            "all-staff@example.com",
            C,
            C,
            "recipient_accept_from",
        ),
        (
            "bridgehead",
            "",
            "10.1.1.1",
            "bob@example.com",
            "all-staff@example.com",
            C,
            "550 5.7.1 <all-staff@example.com>: Not authorized to send to this recipient",
            "recipient_reject_from",
        ),
        // Submission: anonymous refused, submit by group, send-as, relay by group with deny winning.
        (
            "submission",
            "",
            "198.51.100.7",
            "x@partner.example",
            "carol@example.com",
            "530 5.7.0 Authentication required",
            "-",
            "anonymous_access",
        ),
        (
            "submission",
            "carol",
            "198.51.100.7",
            "carol@example.com",
            "bob@example.com",
            "550 5.7.1 Client does not have permissions to submit to this server",
            "-",
            "submit",
        ),
        (
            "submission",
            "alice",
            "198.51.100.7",
            "bob@example.com",
            "carol@example.com",
            "550 5.7.1 Client does not have permissions to send as this sender",
            "-",
            "send_as",
        ),
        (
            "submission",
            "alice",
            "198.51.100.7",
            "A.Smith@Example.com",
            "v@elsewhere.example",
            C,
            C,
            "relay_allowed",
        ),
        (
            "submission",
            "alice@example.com",
            "198.51.100.7",
            "alice@example.com",
            "carol@example.com",
            C,
            C,
            "local_recipient",
        ),
        (
            "submission",
            "alice",
            "198.51.100.7",
            "<>",
            "carol@example.com",
            C,
            C,
            "local_recipient",
        ),
        (
            "submission",
            "bob",
            "198.51.100.7",
            "bob@example.com",
            "v@elsewhere.example",
            C,
            "550 5.7.1 <v@elsewhere.example>: Not permitted to relay",
            "relay_group",
        ),
        (
            "submission",
            "bob",
            "198.51.100.7",
            "bob@example.com",
            "carol@example.com",
            C,
            C,
            "local_recipient",
        ),
        // A login unknown to the directory: in no group, owns no address.
        (
            "submission",
            "mallory",
            "198.51.100.7",
            "mallory@example.com",
            "carol@example.com",
            "550 5.7.1 Client does not have permissions to submit to this server",
            "-",
            "submit",
        ),
        // The default listener: anonymous allowed, no relay.
        (
            "default",
            "",
            "198.51.100.7",
            "x@partner.example",
            "v@elsewhere.example",
            C,
            "550 5.7.1 <v@elsewhere.example>: Unable to relay",
            "relay",
        ),
    ];
    for (i, (l, login, client, from, rcpt, mail, rcpt_reply, rule)) in table.iter().enumerate() {
        let got = decide(&snap, l, login, client, from, rcpt);
        assert_eq!(
            (got.0.as_str(), got.1.as_str(), got.2.as_str()),
            (*mail, *rcpt_reply, *rule),
            "row {i}: {l} login={login:?} client={client} from={from} rcpt={rcpt}"
        );
    }
}

#[test]
fn deny_beats_allow_and_member_paths_are_reported() {
    let text = EXAMPLE.replace(
        "reject_from = [\"group:Contractors\"]        # default []",
        "reject_from = [\"group:Contractors\", \"user:alice\"]",
    );
    let snap = snapshot(&text);
    let (_, reply, rule) = decide(
        &snap,
        "bridgehead",
        "alice",
        "",
        "alice@example.com",
        "all-staff@example.com",
    );
    assert_eq!(rule, "recipient_reject_from");
    assert!(reply.contains("Not authorized"));
    // The path behind a nested acceptance.
    let p = &*snap.policy;
    let env = Envelope {
        listener: "bridgehead",
        client: None,
        login: Some("carol"),
        sender: None,
    };
    let x = block_on(explain(
        &snap,
        ListenerId::Index(0),
        &env,
        &[Address::parse("all-staff@example.com").unwrap()],
    ));
    assert_eq!(x.rcpts[0].1.path, vec!["carol", "All Staff"]);
    assert_eq!(p.listener_by_id(ListenerId::Index(0)).name, "bridgehead");
}

#[test]
fn monitor_mode_logs_but_lets_through_at_each_level() {
    for (needle, replacement) in [
        ("mode = \"enforce\"", "mode = \"monitor\""),
        (
            "# mode = \"monitor\"                         # default: [milter] mode",
            "mode = \"monitor\"",
        ),
        ("# mode = \"monitor\"\n", "mode = \"monitor\"\n"),
    ] {
        assert!(EXAMPLE.contains(needle), "{needle}");
        let snap = snapshot(&EXAMPLE.replacen(needle, replacement, 1));
        let (mail, reply, rule) = decide(
            &snap,
            "bridgehead",
            "",
            "",
            "x@partner.example",
            "all-staff@example.com",
        );
        assert_eq!(
            (mail.as_str(), reply.as_str(), rule.as_str()),
            (C, C, "recipient_require_authenticated"),
            "{replacement} after {needle}"
        );
    }
    // Per-recipient monitor leaves the listener's relay rule enforced.
    let snap = snapshot(&EXAMPLE.replacen("# mode = \"monitor\"\n", "mode = \"monitor\"\n", 1));
    let (_, reply, _) = decide(
        &snap,
        "bridgehead",
        "",
        "",
        "x@partner.example",
        "v@elsewhere.example",
    );
    assert!(reply.ends_with("Unable to relay"));
}

#[test]
fn reply_texts_can_be_overridden() {
    let snap = snapshot(&EXAMPLE.replace(
        "relay_anonymous = \"550 5.7.1 {rcpt}: Unable to relay\"",
        "relay_anonymous = \"554 5.7.1 {rcpt}: Relay access denied\"",
    ));
    let (_, reply, _) = decide(
        &snap,
        "bridgehead",
        "",
        "",
        "x@partner.example",
        "v@elsewhere.example",
    );
    assert_eq!(reply, "554 5.7.1 <v@elsewhere.example>: Relay access denied");
}
