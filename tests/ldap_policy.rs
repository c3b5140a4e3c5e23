//! The whole policy through the real binary with the LDAP backend against a
//! real slapd: group rules with nested groups, and the outage behaviour
//! (4xx, never 5xx for a directory failure, never an open relay).

mod common;

use std::time::Duration;

use common::slapd::{Options, Slapd, SERVICE_PASSWORD};
use common::{gatehouse_check, ldap_example_config, reply_text, session, Gatehouse, ANY_PORT};
use gatehouse::milter::client::{Envelope, MilterClient};

fn start(slapd: &Slapd, cache: &str) -> Gatehouse {
    let listen = ANY_PORT.to_string();
    Gatehouse::start_with(&ldap_example_config(&listen, slapd, cache), &listen)
}

async fn submit(c: &mut MilterClient, login: &str, from: &str, rcpts: &[&str]) -> (String, Vec<String>) {
    let env = Envelope {
        mail_macros: vec![("{auth_authen}".into(), login.into())],
        sender: from.into(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
    };
    let r = c.transaction(&env).await.unwrap();
    (reply_text(&r.mail), r.rcpts.iter().map(reply_text).collect())
}

#[tokio::test]
async fn group_rules_with_nested_ldap_groups() {
    let slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    let g = start(&slapd, "");
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    // alice: Mail Senders (submit), Internet Mail Users (relay), All Staff via
    // Engineering > Full-Time Employees (restricted list).
    let (mail, rcpts) = submit(
        &mut c,
        "alice",
        "a.smith@example.com",
        &["x@elsewhere.example", "all-staff@example.com"],
    )
    .await;
    assert_eq!(mail, "continue");
    assert_eq!(rcpts, vec!["continue", "continue"]);
    // bob: Contractors — deny beats allow for relay, rejected by the list.
    let (mail, rcpts) = submit(
        &mut c,
        "bob",
        "bob@example.com",
        &[
            "x@elsewhere.example",
            "all-staff@example.com",
            "carol@example.com",
        ],
    )
    .await;
    assert_eq!(mail, "continue");
    assert_eq!(
        rcpts,
        vec![
            "550 5.7.1 <x@elsewhere.example>: Not permitted to relay",
            "550 5.7.1 <all-staff@example.com>: Not authorized to send to this recipient",
            "continue",
        ]
    );
    // carol is not in Mail Senders.
    let (mail, _) = submit(&mut c, "carol", "carol@example.com", &["bob@example.com"]).await;
    assert_eq!(
        mail,
        "550 5.7.1 Client does not have permissions to submit to this server"
    );
    // Send-as: alice may not use bob's address.
    let (mail, _) = submit(&mut c, "alice", "bob@example.com", &["carol@example.com"]).await;
    assert_eq!(
        mail,
        "550 5.7.1 Client does not have permissions to send as this sender"
    );
    // The rejection log names the membership path.
    let log = g.wait_for_log("rule=\"recipient_reject_from\"", Duration::from_secs(5));
    assert!(
        log.lines()
            .any(|l| l.contains("recipient_reject_from") && l.contains("bob > Contractors")),
        "{log}"
    );
}

#[tokio::test]
async fn directory_down_means_4xx_never_5xx_and_never_an_open_relay() {
    let mut slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    let g = start(&slapd, "ttl = \"1s\"\nstale_if_error = \"1s\"");
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    let (mail, _) = submit(&mut c, "alice", "alice@example.com", &["carol@example.com"]).await;
    assert_eq!(mail, "continue");
    slapd.stop();
    // dave was never looked up: the submit rule needs his groups.
    let (mail, _) = submit(&mut c, "dave", "dave@example.com", &["carol@example.com"]).await;
    assert_eq!(mail, "451 4.4.3 Directory server unavailable, try again later");
    // alice within stale_if_error: served from the expired cache entry.
    let (mail, rcpts) = submit(&mut c, "alice", "alice@example.com", &["x@elsewhere.example"]).await;
    assert_eq!((mail.as_str(), rcpts[0].as_str()), ("continue", "continue"));
    // Past stale_if_error: 4xx for alice too.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (mail, _) = submit(&mut c, "alice", "alice@example.com", &["x@elsewhere.example"]).await;
    assert!(mail.starts_with("451 4.4.3"), "{mail}");
    // Anonymous relaying needs no directory and stays refused.
    let mut anon = session(&g.endpoint, "bridgehead", "198.51.100.7").await;
    let r = anon
        .transaction(&Envelope {
            sender: "x@partner.example".into(),
            recipients: vec!["v@elsewhere.example".into(), "all-staff@example.com".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        reply_text(&r.rcpts[0]),
        "550 5.7.1 <v@elsewhere.example>: Unable to relay"
    );
    assert_eq!(
        reply_text(&r.rcpts[1]),
        "550 5.7.1 <all-staff@example.com>: Authentication required to send to this recipient"
    );
    // And the directory comes back without restarting gatehouse.
    slapd.restart();
    let t0 = std::time::Instant::now();
    loop {
        let (mail, _) = submit(&mut c, "dave", "dave@example.com", &["carol@example.com"]).await;
        // dave exists but is not in Mail Senders: a real answer, from the directory.
        if mail == "550 5.7.1 Client does not have permissions to submit to this server" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "directory never came back: {mail}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(g.log().contains("directory lookup failed"));
}

/// `gatehouse check --config TEXT` → (exit code, stdout).
fn check(text: &str) -> (i32, String) {
    let out = gatehouse_check(text);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_resolves_every_group_against_the_directory() {
    let mut slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    let good = ldap_example_config("inet:127.0.0.1:1", &slapd, "");
    let (code, out) = check(&good);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("group \"Contractors\" = cn=Contractors,ou=groups,dc=example,dc=com"),
        "{out}"
    );
    // A group name that is not in the directory is an error.
    let (code, out) = check(&good.replace(
        "deny_groups = [\"Contractors\"]",
        "deny_groups = [\"Contractor\"]",
    ));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "error: group \"Contractor\" (listener \"submission\" relay.deny_groups) is not in the directory"
        ),
        "{out}"
    );
    // By DN works; a DN that does not exist is an error.
    let (code, out) = check(&good.replace(
        "\"group:All Staff\"",
        "\"group:cn=All Staff,ou=groups,dc=example,dc=com\"",
    ));
    assert_eq!(code, 0, "{out}");
    let (code, _) = check(&good.replace(
        "\"group:All Staff\"",
        "\"group:cn=Nope,ou=groups,dc=example,dc=com\"",
    ));
    assert_eq!(code, 1);
    // ad-in-chain on OpenLDAP would silently find no groups: refused.
    let (code, out) = check(&good.replace(
        "timeout = \"1s\"",
        "timeout = \"1s\"\nmembership = \"ad-in-chain\"",
    ));
    assert_eq!(code, 1);
    assert!(out.contains("not Active Directory"), "{out}");
    // An unreachable directory is an error, and the password is never printed.
    slapd.stop();
    let (code, out) = check(&good);
    assert_eq!(code, 1);
    assert!(out.contains("error: directory:"), "{out}");
    assert!(!out.contains(SERVICE_PASSWORD));
}

#[test]
fn lookup_command_shows_nested_groups_with_paths_and_source() {
    let slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(&cfg, ldap_example_config("inet:127.0.0.1:1", &slapd, "")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["lookup", "--config"])
        .arg(&cfg)
        .arg("a.smith@example.com")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("dn: uid=alice,ou=people,dc=example,dc=com"),
        "{stdout}"
    );
    assert!(
        stdout.contains("alice > Engineering > Full-Time Employees > All Staff"),
        "{stdout}"
    );
    assert!(stdout.contains("source: directory server"), "{stdout}");
    assert!(
        !stdout.contains(SERVICE_PASSWORD)
            && !String::from_utf8_lossy(&out.stderr).contains(SERVICE_PASSWORD)
    );
}

/// A bridgehead transaction as `login` ("" = anonymous) to one recipient: the RCPT reply.
async fn to(g: &Gatehouse, login: &str, from: &str, rcpt: &str) -> String {
    let mut c = session(&g.endpoint, "bridgehead", "198.51.100.7").await;
    let mut mail_macros = Vec::new();
    if !login.is_empty() {
        mail_macros.push(("{auth_authen}".to_string(), login.to_string()));
    }
    let r = c
        .transaction(&Envelope {
            mail_macros,
            sender: from.into(),
            recipients: vec![rcpt.into()],
        })
        .await
        .unwrap();
    r.rcpts
        .first()
        .map(reply_text)
        .unwrap_or_else(|| reply_text(&r.mail))
}

#[tokio::test]
async fn restrictions_stored_on_the_recipient_entry() {
    let mut slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    // board@example.com's entry: msExchRequireAuthToSendTo TRUE, dLMemSubmitPerms
    // Full-Time Employees, authOrig dave, unauthOrig bob (tests/ldap/data.ldif).
    let g = start(
        &slapd,
        "ttl = \"1s\"\nstale_if_error = \"1s\"\n\n[directory.ldap.recipient_restrictions]\nenabled = true",
    );
    let auth_required = "550 5.7.1 <board@example.com>: Authentication required to send to this recipient";
    let not_authorized = "550 5.7.1 <board@example.com>: Not authorized to send to this recipient";
    let cases = [
        ("", "x@partner.example", auth_required),
        ("alice", "alice@example.com", "continue"), // Engineering > Full-Time Employees
        ("dave", "dave@example.com", "continue"),   // authOrig
        ("carol", "carol@example.com", not_authorized),
        ("bob", "bob@example.com", not_authorized), // unauthOrig
    ];
    for (login, from, want) in cases {
        assert_eq!(to(&g, login, from, "board@example.com").await, want, "{login}");
    }
    // Other recipients carry no restrictions.
    assert_eq!(
        to(&g, "", "x@partner.example", "carol@example.com").await,
        "continue"
    );
    // The directory down and the entry's restrictions expired: 4xx, not 5xx, not accept.
    slapd.stop();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = to(&g, "", "x@partner.example", "board@example.com").await;
    assert_eq!(r, "451 4.4.3 Directory server unavailable, try again later");
    drop(g);

    // Off by default: the stored restrictions are not read.
    slapd.restart();
    let g = start(&slapd, "");
    assert_eq!(
        to(&g, "", "x@partner.example", "board@example.com").await,
        "continue"
    );
}

/// Two entries for one login is not an outage: with on_directory_error =
/// "accept" it must still be a tempfail, never an accept (fail closed), and
/// the log says it as an error.
#[tokio::test]
async fn an_ambiguous_entry_is_a_tempfail_even_when_outages_accept() {
    let slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    let listen = ANY_PORT.to_string();
    let text = ldap_example_config(&listen, &slapd, "")
        .replace(
            "timeout = \"1s\"\n",
            "timeout = \"1s\"\nuser_filter = \"(&(objectClass=inetOrgPerson)(|(uid={login})(uid=bob)))\"\n",
        )
        .replace(
            "on_directory_error = \"tempfail\"",
            "on_directory_error = \"accept\"",
        );
    assert!(text.contains("on_directory_error = \"accept\"") && text.contains("(uid=bob)"));
    let g = Gatehouse::start_with(&text, &listen);
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    // carol is in no submit group: were the fault read as an outage, "accept"
    // would let her submit and relay.
    let (mail, _) = submit(&mut c, "carol", "carol@example.com", &["x@elsewhere.example"]).await;
    assert_eq!(mail, "451 4.4.3 Directory server unavailable, try again later");
    // bob alone is unambiguous and decided normally (Contractors: no relay).
    let (mail, rcpts) = submit(&mut c, "bob", "bob@example.com", &["x@elsewhere.example"]).await;
    assert_eq!(mail, "continue");
    assert_eq!(
        rcpts[0],
        "550 5.7.1 <x@elsewhere.example>: Not permitted to relay"
    );
    let log = g.wait_for_log("no usable answer", Duration::from_secs(5));
    assert!(log.contains("refusing to guess"), "{log}");
    let seen = g.log_count("no usable answer");
    // Asked again within negative_ttl: the same tempfail from the cache, no
    // second query and no second error line.
    let (mail, _) = submit(&mut c, "carol", "carol@example.com", &["x@elsewhere.example"]).await;
    assert_eq!(mail, "451 4.4.3 Directory server unavailable, try again later");
    let (_, rcpts) = submit(&mut c, "bob", "bob@example.com", &["y@elsewhere.example"]).await;
    assert!(rcpts[0].starts_with("550"), "{rcpts:?}");
    g.wait_for_log("<y@elsewhere.example>", Duration::from_secs(5));
    assert_eq!(g.log_count("no usable answer"), seen, "{}", g.log());
}

/// A directory that accepts connections and never answers holds no decision
/// past decision_timeout, whatever the per-operation LDAP timeout: the MTA
/// gets the on_directory_error reply (here 451) before its own timeout.
#[tokio::test]
async fn a_silent_directory_is_answered_within_the_decision_timeout() {
    let slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("ldap://{}", silent.local_addr().unwrap());
    let listen = ANY_PORT.to_string();
    let text = ldap_example_config(&listen, &slapd, "")
        .replace(&slapd.url(), &silent_url)
        .replace("timeout = \"1s\"\n", "timeout = \"20s\"\n")
        .replace("decision_timeout = \"5s\"", "decision_timeout = \"1s\"");
    assert!(text.contains(&silent_url) && text.contains("decision_timeout = \"1s\""));
    let g = Gatehouse::start_with(&text, &listen);
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    let t0 = std::time::Instant::now();
    let (mail, _) = submit(&mut c, "alice", "alice@example.com", &["carol@example.com"]).await;
    let took = t0.elapsed();
    assert_eq!(mail, "451 4.4.3 Directory server unavailable, try again later");
    assert!(
        took >= Duration::from_millis(900),
        "answered before the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    g.wait_for_log("decision_timeout", Duration::from_secs(5));
    drop(silent);
}

/// alice is seen, slapd stops, the file is changed by `change` and reloaded;
/// past the ttl alice is still served (stale) and dave, never seen, gets a
/// tempfail. `kept`: whether the running directory was kept.
async fn reload_mid_outage(change: impl Fn(&str) -> String, kept: bool) {
    let mut slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    let listen = ANY_PORT.to_string();
    let text = ldap_example_config(&listen, &slapd, "ttl = \"1s\"\nstale_if_error = \"1h\"");
    let g = Gatehouse::start_with(&text, &listen);
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    let (mail, _) = submit(&mut c, "alice", "alice@example.com", &["x@elsewhere.example"]).await;
    assert_eq!(mail, "continue");
    slapd.stop();
    let changed = change(&text);
    assert_ne!(changed, text);
    std::fs::write(g.config_dir().join("gatehouse.toml"), changed).unwrap();
    g.signal("HUP");
    g.wait_for_log("configuration reloaded", Duration::from_secs(5));
    assert_eq!(g.log().contains("cache and connections are kept"), kept);
    // Past the ttl (nothing fresh either way): alice is served stale, as
    // before the reload.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    let (mail, rcpts) = submit(&mut c, "alice", "alice@example.com", &["x@elsewhere.example"]).await;
    assert_eq!((mail.as_str(), rcpts[0].as_str()), ("continue", "continue"));
    // Someone no cache ever saw: a tempfail, not a guess.
    let (mail, _) = submit(&mut c, "dave", "dave@example.com", &["x@elsewhere.example"]).await;
    assert!(mail.starts_with("451"), "{mail}");
}

/// A policy change reloaded during an outage: the directory settings are
/// unchanged, so the running cache with the entries bridging it is kept.
#[tokio::test]
async fn a_reload_mid_outage_keeps_serving_known_users() {
    reload_mid_outage(
        |t| t.replace("mode = \"enforce\"", "mode = \"enforce\"\n# reloaded"),
        true,
    )
    .await;
}

/// Stale entries survive a reload whatever it changes: with other directory
/// settings the new cache takes the old answers as stale only.
#[tokio::test]
async fn a_reload_with_other_directory_settings_mid_outage_keeps_serving_known_users() {
    reload_mid_outage(|t| t.replace("timeout = \"1s\"\n", "timeout = \"2s\"\n"), false).await;
}

/// slapd frozen with SIGSTOP (connections accepted, nothing answered): each
/// decision is a 4xx within decision_timeout, and once slapd is continued
/// users are served again within two seconds.
#[tokio::test]
async fn a_frozen_directory_is_a_4xx_within_the_deadline_and_recovery_is_quick() {
    let slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    let listen = ANY_PORT.to_string();
    let text = ldap_example_config(&listen, &slapd, "")
        .replace("decision_timeout = \"5s\"", "decision_timeout = \"1s\"");
    assert!(text.contains("decision_timeout = \"1s\""));
    let g = Gatehouse::start_with(&text, &listen);
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    // The pool is connected and used before the freeze.
    let (mail, _) = submit(&mut c, "dave", "dave@example.com", &["dave@example.com"]).await;
    assert!(!mail.starts_with('4'), "{mail}");
    slapd.freeze();
    for login in ["alice", "carol", "alice"] {
        let t0 = std::time::Instant::now();
        let (mail, _) = submit(
            &mut c,
            login,
            &format!("{login}@example.com"),
            &["x@elsewhere.example"],
        )
        .await;
        let took = t0.elapsed();
        assert_eq!(mail, "451 4.4.3 Directory server unavailable, try again later");
        assert!(took < Duration::from_millis(2500), "{login}: took {took:?}");
    }
    slapd.thaw();
    let back = std::time::Instant::now();
    loop {
        let (mail, rcpts) = submit(&mut c, "alice", "alice@example.com", &["x@elsewhere.example"]).await;
        if mail == "continue" {
            assert_eq!(rcpts[0], "continue");
            break;
        }
        assert!(mail.starts_with("451"), "{mail}");
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "still 451 {:?} after slapd was continued",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
