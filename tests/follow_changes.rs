//! The directory change follower (`follow_changes = "syncrepl"`) against a
//! real slapd with the syncprov overlay, through the real binary and a live
//! milter session: a membership change written with `ldapmodify` decides
//! the next transaction once gatehouse has heard it (the debug line
//! "directory change followed"), long before the 5-minute TTL; after a
//! slapd restart, a frozen slapd and a refused control it still decides
//! correctly; without the follower the old membership stays cached.

mod common;

use std::time::{Duration, Instant};

use common::slapd::{Options, Slapd};
use common::{gatehouse_check, ldap_example_config, reply_text, session, Gatehouse, ANY_PORT};
use gatehouse::milter::client::{Envelope, MilterClient};

const FOLLOWED: &str = "directory change followed";
const UP: &str = "following directory changes";
const RELAY_GROUP: &str = "cn=Internet Mail Users,ou=groups,dc=example,dc=com";
const ALICE: &str = "uid=alice,ou=people,dc=example,dc=com";
const REFUSED: &str = "550 5.7.1 <x@elsewhere.example>: Not permitted to relay";

fn small() -> Options {
    Options {
        tls: false,
        big: false,
    }
}

fn start(slapd: &Slapd, follow: &str) -> Gatehouse {
    let listen = ANY_PORT.to_string();
    let config = ldap_example_config(&listen, slapd, "ttl = \"5m\"").replace(
        "timeout = \"1s\"\n",
        &format!("timeout = \"1s\"\nfollow_changes = \"{follow}\"\n"),
    );
    Gatehouse::start_with(&config, &listen)
}

/// alice relaying to another domain, as the submission listener sees it.
async fn alice_relays(c: &mut MilterClient) -> String {
    let env = Envelope {
        mail_macros: vec![("{auth_authen}".into(), "alice".into())],
        sender: "alice@example.com".into(),
        recipients: vec!["x@elsewhere.example".into()],
    };
    let r = c.transaction(&env).await.unwrap();
    // Refused at MAIL: no recipient was asked.
    match r.rcpts.first() {
        Some(rcpt) => reply_text(rcpt),
        None => reply_text(&r.mail),
    }
}

fn membership(slapd: &Slapd, op: &str, group: &str) {
    slapd.modify(&format!(
        "dn: {group}\nchangetype: modify\n{op}: member\nmember: {ALICE}\n"
    ));
}

/// Write with ldapmodify, then wait until gatehouse has applied one more
/// change; returns how long that took.
fn change_and_wait(g: &Gatehouse, write: impl FnOnce()) -> Duration {
    let before = g.log_count(FOLLOWED);
    let t = Instant::now();
    write();
    let deadline = t + Duration::from_secs(5);
    while g.log_count(FOLLOWED) <= before {
        assert!(
            Instant::now() < deadline,
            "change never followed; log:\n{}",
            g.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    t.elapsed()
}

fn wait_up(g: &Gatehouse, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while g.log_count(UP) < times {
        assert!(
            Instant::now() < deadline,
            "follower never up ({times}); log:\n{}",
            g.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn a_membership_change_decides_the_next_transaction() {
    // With the 1,200 bulk users: more entries than the service account may
    // read in one search, which a full refresh would need.
    let slapd = Slapd::start_with(Options {
        tls: false,
        big: true,
    });
    let g = start(&slapd, "syncrepl");
    wait_up(&g, 1);
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    assert_eq!(alice_relays(&mut c).await, "continue");
    // Revocation: out of the relay group.
    let delay = change_and_wait(&g, || membership(&slapd, "delete", RELAY_GROUP));
    eprintln!("removal followed after {delay:?}");
    assert_eq!(alice_relays(&mut c).await, REFUSED);
    // Back in.
    change_and_wait(&g, || membership(&slapd, "add", RELAY_GROUP));
    assert_eq!(alice_relays(&mut c).await, "continue");
    // Into a deny group: her cached entry does not name it yet; the
    // group's new member list does.
    change_and_wait(&g, || {
        membership(&slapd, "add", "cn=Contractors,ou=groups,dc=example,dc=com")
    });
    assert_eq!(alice_relays(&mut c).await, REFUSED);
    // A nested change: Engineering (alice's group) becomes a member of Contractors.
    change_and_wait(&g, || {
        membership(&slapd, "delete", "cn=Contractors,ou=groups,dc=example,dc=com")
    });
    assert_eq!(alice_relays(&mut c).await, "continue");
    change_and_wait(&g, || {
        slapd.modify(
            "dn: cn=Contractors,ou=groups,dc=example,dc=com\nchangetype: modify\nadd: member\nmember: cn=Engineering,ou=groups,dc=example,dc=com\n",
        )
    });
    assert_eq!(
        alice_relays(&mut c).await,
        REFUSED,
        "through Engineering > Contractors"
    );
    // The group deleted: no longer in it.
    change_and_wait(&g, || {
        slapd.modify("dn: cn=Contractors,ou=groups,dc=example,dc=com\nchangetype: delete\n")
    });
    assert_eq!(alice_relays(&mut c).await, "continue");
    // A second group answering to the relay group's name (one of its cn
    // values), with alice in it: which one the rule means is undecidable
    // from then on, for her next transaction already; gone again, decided.
    let copy = "cn=IMU Copy,ou=groups,dc=example,dc=com";
    change_and_wait(&g, || {
        slapd.modify(&format!(
            "dn: {copy}\nchangetype: add\nobjectClass: groupOfNames\ncn: IMU Copy\ncn: Internet Mail Users\nmember: {ALICE}\n"
        ))
    });
    assert_eq!(
        alice_relays(&mut c).await,
        "451 4.4.3 Directory server unavailable, try again later"
    );
    change_and_wait(&g, || slapd.modify(&format!("dn: {copy}\nchangetype: delete\n")));
    assert_eq!(alice_relays(&mut c).await, "continue");
}

#[tokio::test]
async fn without_the_follower_the_cached_membership_stays_until_the_ttl() {
    let slapd = Slapd::start_with(small());
    let g = start(&slapd, "off");
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    assert_eq!(alice_relays(&mut c).await, "continue");
    membership(&slapd, "delete", RELAY_GROUP);
    // The write is on the server (a fresh lookup sees it) ...
    let out = gatehouse_lookup(&g, "alice");
    assert!(!out.contains("Internet Mail Users"), "{out}");
    // ... and the daemon still answers from its cache: what the follower fixes.
    assert_eq!(alice_relays(&mut c).await, "continue");
    assert_eq!(g.log_count(UP), 0);
}

fn gatehouse_lookup(g: &Gatehouse, login: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["lookup", "--config"])
        .arg(&g.config_path)
        .arg(login)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test]
async fn after_a_slapd_restart_the_stream_resumes_and_changes_apply() {
    let mut slapd = Slapd::start_with(small());
    let g = start(&slapd, "syncrepl");
    wait_up(&g, 1);
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    assert_eq!(alice_relays(&mut c).await, "continue");
    slapd.restart();
    g.wait_for_log("not following directory changes", Duration::from_secs(10));
    wait_up(&g, 2);
    change_and_wait(&g, || membership(&slapd, "delete", RELAY_GROUP));
    assert_eq!(alice_relays(&mut c).await, REFUSED);
}

#[tokio::test]
async fn a_frozen_slapd_is_noticed_and_followed_again_when_it_thaws() {
    let slapd = Slapd::start_with(small());
    let g = start(&slapd, "syncrepl");
    wait_up(&g, 1);
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    assert_eq!(alice_relays(&mut c).await, "continue");
    slapd.freeze();
    // The heartbeat (3 × timeout) goes unanswered.
    g.wait_for_log("not following directory changes", Duration::from_secs(15));
    // Cached answers keep serving meanwhile (within ttl): no false refusal.
    assert_eq!(alice_relays(&mut c).await, "continue");
    slapd.thaw();
    wait_up(&g, 2);
    change_and_wait(&g, || membership(&slapd, "delete", RELAY_GROUP));
    assert_eq!(alice_relays(&mut c).await, REFUSED);
}

#[tokio::test]
async fn a_server_without_syncprov_is_reported_and_decisions_stay_correct() {
    let slapd = Slapd::start_without_syncprov(small());
    let g = start(&slapd, "syncrepl");
    g.wait_for_log("cannot follow directory changes", Duration::from_secs(10));
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    assert_eq!(alice_relays(&mut c).await, "continue");
    assert_eq!(g.log_count("cannot follow directory changes"), 1, "logged once");
    // check says so before it is deployed.
    let text = std::fs::read_to_string(&g.config_path).unwrap();
    let out = gatehouse_check(&text);
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("syncprov"), "{report}");
    assert_eq!(out.status.code(), Some(1), "{report}");
    // With syncprov, check notes it works for this account.
    let good = Slapd::start_with(small());
    let g2 = start(&good, "auto");
    wait_up(&g2, 1);
    let text = std::fs::read_to_string(&g2.config_path).unwrap();
    let out = gatehouse_check(&text);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("follow_changes: syncrepl"), "{report}");
}
