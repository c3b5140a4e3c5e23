//! The design's rules, table-driven over the example configuration, through
//! the same code path as a live session (`enforcer::explain`).

mod common;

use std::net::IpAddr;
use std::path::Path;

use gatehouse::config;
use gatehouse::enforcer::{explain, sender_address, verdict_for, Envelope, Snapshot};
use gatehouse::milter::Verdict;
use gatehouse::policy::ListenerId;

const EXAMPLE: &str = include_str!("../conf/gatehouse.toml");

fn snapshot(text: &str) -> Snapshot {
    let c = config::parse(text, Path::new("test.toml")).unwrap();
    Snapshot {
        directory: c.build_directory().unwrap(),
        policy: c.policy,
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
    let sender = sender_address(&snap.policy, from);
    let client: Option<IpAddr> = (!client.is_empty()).then(|| client.parse().unwrap());
    let env = Envelope {
        listener,
        client,
        login: (!login.is_empty()).then_some(login),
        sender: sender.as_ref(),
    };
    let x = block_on(explain(snap, id, &env, &[rcpt.to_string()]));
    let show = |v: Verdict| match v {
        Verdict::Continue => "continue".to_string(),
        Verdict::Tempfail => "tempfail".to_string(),
        Verdict::Reply(b) => String::from_utf8(b.to_vec()).unwrap(),
    };
    let mail = show(verdict_for(p, &x.mail, None));
    match x.rcpts.first() {
        Some(j) => (
            mail,
            show(verdict_for(p, &j.decision, Some(&j.shown))),
            j.decision.rule.to_string(),
        ),
        None => (mail, "-".into(), x.mail.rule.to_string()),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

use common::matrix::C;

#[test]
fn example_policy_table() {
    let snap = snapshot(EXAMPLE);
    // listener, login, client, from, rcpt, MAIL, RCPT, rule
    let table = common::matrix::ROWS;
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
        &["all-staff@example.com".to_string()],
    ));
    assert_eq!(x.rcpts[0].decision.path(), ["carol", "All Staff"]);
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

/// The example policy with its directory on LDAP at a port where nothing listens.
fn unreachable_directory(on_error: &str) -> Snapshot {
    let start = EXAMPLE.find("[directory]\n").unwrap();
    let end = EXAMPLE.find("[domains]\n").unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ldap = format!(
        "[directory]\nbackend = \"ldap\"\n[directory.ldap]\nurls = [\"ldap://{dead}\"]\nbase_dn = \"dc=example,dc=com\"\ntimeout = \"1s\"\n\n"
    );
    let text = format!("{}{ldap}{}", &EXAMPLE[..start], &EXAMPLE[end..]).replace(
        "on_directory_error = \"tempfail\"",
        &format!("on_directory_error = \"{on_error}\""),
    );
    snapshot(&text)
}

#[test]
fn on_directory_error_tempfail_accept_reject() {
    // (action, MAIL reply for alice on submission, RCPT reply for bob to the restricted list on the bridgehead)
    let cases = [
        (
            "tempfail",
            "451 4.4.3 Directory server unavailable, try again later",
            "451 4.4.3 Directory server unavailable, try again later",
        ),
        ("accept", C, C),
        (
            "reject",
            "550 5.7.1 Client does not have permissions to submit to this server",
            "550 5.7.1 <all-staff@example.com>: Not authorized to send to this recipient",
        ),
    ];
    for (action, mail, rcpt) in cases {
        let snap = unreachable_directory(action);
        let (got_mail, _, _) = decide(
            &snap,
            "submission",
            "alice",
            "",
            "alice@example.com",
            "carol@example.com",
        );
        assert_eq!(got_mail, mail, "{action}: MAIL");
        let (_, got_rcpt, _) = decide(
            &snap,
            "bridgehead",
            "bob",
            "",
            "bob@example.com",
            "all-staff@example.com",
        );
        assert_eq!(got_rcpt, rcpt, "{action}: RCPT");
        // Rules that need no directory hold whatever the setting: no open relay.
        let (_, relay, _) = decide(
            &snap,
            "bridgehead",
            "",
            "",
            "x@partner.example",
            "v@elsewhere.example",
        );
        assert_eq!(
            relay, "550 5.7.1 <v@elsewhere.example>: Unable to relay",
            "{action}"
        );
    }
}
