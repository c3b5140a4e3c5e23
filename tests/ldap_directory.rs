//! The LDAP backend and its cache against a real OpenLDAP slapd (started by
//! the test on a loopback port, stopped by PID): membership modes, nesting and
//! cycles, injection attempts, paging, failover and recovery, timeouts,
//! stale answers during an outage, TLS.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::slapd::{Options, Slapd, SERVICE_DN, SERVICE_PASSWORD};
use gatehouse::config;
use gatehouse::directory::ldap::LdapBackend;
use gatehouse::directory::{Directory, Source, UserKey};

fn ldap_config(urls: &[String], ldap: &str, cache: &str) -> String {
    let urls = urls
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let timeout = if ldap.contains("timeout =") {
        ""
    } else {
        "timeout = \"2s\"\n"
    };
    format!(
        "[directory]\nbackend = \"ldap\"\n\n[directory.ldap]\nurls = [{urls}]\nbase_dn = \"dc=example,dc=com\"\n\
         {timeout}{ldap}\n\n[cache]\n{cache}\n\n[domains]\nlocal = [\"example.com\"]\n\n[[listener]]\nname = \"default\"\n"
    )
}

fn directory(text: &str) -> Arc<Directory> {
    match config::parse(text, Path::new("ldap-test.toml")) {
        Ok(c) => c.build_directory().unwrap(),
        Err(e) => panic!("{e}\n{text}"),
    }
}

/// Bind as the service account with a password file in `dir`.
fn service_bind(dir: &Path) -> String {
    let pw = dir.join("ldap.secret");
    std::fs::write(&pw, format!("{SERVICE_PASSWORD}\n")).unwrap();
    format!(
        "bind_dn = {SERVICE_DN:?}\nbind_password_file = {:?}",
        pw.display().to_string()
    )
}

fn small() -> Slapd {
    Slapd::start_with(Options {
        tls: false,
        big: false,
    })
}

async fn groups_of(d: &Directory, login: &str) -> Vec<String> {
    let u = d
        .user_by_login(login)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{login} not found"));
    let mut g: Vec<String> = u.groups.paths().map(|p| p.join(" > ")).collect();
    g.sort();
    g
}

#[tokio::test]
async fn memberof_mode_follows_nested_groups_with_paths() {
    let s = small();
    let tmp = tempfile::tempdir().unwrap();
    let d = directory(&ldap_config(&[s.url()], &service_bind(tmp.path()), ""));
    let alice = d.user_by_login("alice").await.unwrap().unwrap();
    assert_eq!(alice.entry.dn, "uid=alice,ou=people,dc=example,dc=com");
    assert_eq!(
        alice.entry.addresses,
        vec!["alice@example.com", "a.smith@example.com"]
    );
    assert_eq!(
        &alice.groups.path_to("all staff").unwrap()[..],
        &["alice", "Engineering", "Full-Time Employees", "All Staff"]
    );
    assert!(
        alice
            .groups
            .contains("cn=Full-Time Employees,ou=groups,dc=example,dc=com"),
        "by DN too"
    );
    assert!(!alice.groups.contains("Contractors"));
    // By address, and a login that is an address (the default filter tries both).
    let by_addr = d.user_by_address("A.Smith@example.com").await.unwrap().unwrap();
    assert_eq!(by_addr.entry.login, "alice");
    assert!(d.user_by_login("nobody").await.unwrap().is_none());
    // Cycles terminate: dave is in Cycle A, which is in Cycle B, which is in Cycle A.
    let dave = groups_of(&d, "dave").await;
    assert_eq!(dave, vec!["dave > Cycle A", "dave > Cycle A > Cycle B"]);
}

#[tokio::test]
async fn search_mode_with_member_uniquemember_and_memberuid() {
    let s = small();
    let filter = "(|(&(objectClass=groupOfNames)(member={dn}))(&(objectClass=groupOfUniqueNames)(uniqueMember={dn}))(&(objectClass=posixGroup)(memberUid={login})))";
    // Anonymous bind this time.
    let d = directory(&ldap_config(
        &[s.url()],
        &format!("membership = \"search\"\ngroup_filter = {filter:?}"),
        "",
    ));
    assert_eq!(
        groups_of(&d, "carol").await,
        vec!["carol > All Staff", "carol > Unique Team"]
    );
    assert_eq!(
        groups_of(&d, "dave").await,
        vec!["dave > Cycle A", "dave > Cycle A > Cycle B", "dave > unixteam"]
    );
    let alice = groups_of(&d, "alice").await;
    assert!(
        alice.contains(&"alice > Engineering > Full-Time Employees > All Staff".to_string()),
        "{alice:?}"
    );
    // nested = false: direct groups only.
    let flat = directory(&ldap_config(
        &[s.url()],
        &format!("membership = \"search\"\nnested = false\ngroup_filter = {filter:?}"),
        "",
    ));
    assert_eq!(
        groups_of(&flat, "alice").await,
        vec![
            "alice > Engineering",
            "alice > Internet Mail Users",
            "alice > Mail Senders"
        ]
    );
}

#[tokio::test]
async fn max_depth_and_max_groups_cap_the_expansion() {
    let s = small();
    let d = directory(&ldap_config(&[s.url()], "max_depth = 1", ""));
    let alice = groups_of(&d, "alice").await;
    assert!(alice.contains(&"alice > Engineering > Full-Time Employees".to_string()));
    assert!(!alice.iter().any(|g| g.ends_with("All Staff")), "{alice:?}");
    // More groups than max_groups: unusable (a tempfail), never a cut list
    // that could leave out a deny group.
    let d = directory(&ldap_config(&[s.url()], "max_groups = 2", ""));
    let e = d.user_by_login("alice").await.unwrap_err();
    assert!(
        e.is_permanent() && e.to_string().contains("max_groups = 2"),
        "{e}"
    );
}

#[tokio::test]
async fn ad_in_chain_mode_builds_the_transitive_filter() {
    let s = small();
    let d = directory(&ldap_config(&[s.url()], "membership = \"ad-in-chain\"", ""));
    // OpenLDAP has no LDAP_MATCHING_RULE_IN_CHAIN: the lookup must not claim
    // memberships it cannot know. It either fails (directory unavailable) or
    // finds none; it never invents a group and never says "unknown user".
    match d.user_by_login("alice").await {
        Err(e) => assert!(e.to_string().contains("1.2.840.113556.1.4.1941"), "{e}"),
        Ok(Some(u)) => assert!(u.groups.is_empty(), "{:?}", u.groups),
        Ok(None) => panic!("alice exists: a refused rule must not read as unknown user"),
    }
}

#[tokio::test]
async fn injection_attempts_cannot_widen_a_search() {
    let s = small();
    let d = directory(&ldap_config(&[s.url()], "", ""));
    // Unescaped, `*` would match every user (and "4 entries match" would be an
    // error), `alice)(uid=*` would match alice. Escaped, none matches anything.
    for login in [
        "*",
        "alice)(uid=*",
        "*)(|(uid=*",
        "\\",
        "al\0ice",
        "alice\\2a",
        "ålice",
        "(uid=alice)",
    ] {
        let r = d.user_by_login(login).await;
        assert!(matches!(r, Ok(None)), "{login:?} gave {r:?}");
        let r = d.user_by_address(&format!("{login}@example.com")).await;
        assert!(matches!(r, Ok(None)), "{login:?}@ gave {r:?}");
    }
    assert!(d.user_by_login("alice").await.unwrap().is_some());
}

/// slapd's matching rules fold case, width and surrounding spaces, so these
/// logins find uid=alice; only the login's own entry is its identity.
#[tokio::test]
async fn look_alike_logins_do_not_get_another_users_entry() {
    let s = small();
    let d = directory(&ldap_config(&[s.url()], "", ""));
    for login in [
        "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}", // full-width "alice"
        " alice",
        "alice ",
        "al ice",
        "\u{ff21}lice",
        "alice\u{3000}",
    ] {
        // Never alice's entry, and never "unknown" when the server found
        // someone (deny lists would pass an unknown user).
        let r = d.user_by_login(login).await;
        assert!(
            matches!(&r, Ok(None)) || matches!(&r, Err(e) if e.is_permanent()),
            "{login:?} gave {r:?}"
        );
    }
    let r = d.user_by_login("\u{ff42}ob").await;
    assert!(
        matches!(&r, Err(e) if e.is_permanent()),
        "full-width bob gave {r:?}"
    );
    for address in [
        " alice@example.com",
        "alice@example.com ",
        "\u{ff41}lice@example.com",
    ] {
        let r = d.user_by_address(address).await;
        assert!(
            matches!(&r, Ok(None)) || matches!(&r, Err(e) if e.is_permanent()),
            "{address:?} gave {r:?}"
        );
    }
    // Controls: ASCII case is folded, and an address login is the owner's.
    for login in [
        "alice",
        "ALICE",
        "Alice",
        "a.smith@example.com",
        "Alice@Example.COM",
    ] {
        let u = d.user_by_login(login).await.unwrap();
        assert_eq!(
            u.map(|u| u.entry.login.clone()).as_deref(),
            Some("alice"),
            "{login:?}"
        );
    }
}

#[tokio::test]
async fn paged_results_get_past_the_server_size_limit() {
    let s = Slapd::start_with(Options {
        tls: false,
        big: true,
    });
    // A filter that matches all 1204 people: more than the size limit of 500.
    // With paging every entry arrives, and gatehouse refuses to pick one.
    let d = directory(&ldap_config(
        &[s.url()],
        "user_filter = \"(|(uid={login})(objectClass=inetOrgPerson))\"",
        "",
    ));
    let e = d.user_by_login("alice").await.unwrap_err().to_string();
    assert!(e.contains("1204 entries match"), "{e}");
    // A member of the 1200-member group resolves normally.
    let u = d.user_by_address("user0777@example.com").await;
    assert!(u.is_err(), "same filter, same refusal");
    let d = directory(&ldap_config(&[s.url()], "", ""));
    let u = d.user_by_login("user0777").await.unwrap().unwrap();
    assert!(u.groups.contains("Big List"));
}

#[tokio::test]
async fn concurrent_lookups_of_one_user_cause_one_query() {
    let s = small();
    let d = directory(&ldap_config(&[s.url()], "", ""));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            d.user_by_login("carol").await.unwrap().is_some()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let [hits, misses, queries, errors, _] = d.counters().unwrap();
    assert_eq!(queries, 1, "hits {hits} misses {misses}");
    assert_eq!(errors, 0);
    assert_eq!(hits + misses, 1000);
}

#[tokio::test]
async fn failover_to_the_second_server_and_back() {
    let mut first = small();
    let mut second = small();
    let d = directory(&ldap_config(
        &[first.url(), second.url()],
        "failback_after = \"1s\"",
        "ttl = \"1ms\"\nstale_if_error = \"1ms\"",
    ));
    assert!(d.user_by_login("alice").await.unwrap().is_some());
    first.stop();
    // Served by the second server (no stale answer: stale_if_error is tiny).
    let (r, source) = d.lookup(UserKey::Login("bob".into())).await;
    assert!(r.unwrap().is_some());
    assert_eq!(source, Source::Directory);
    first.restart();
    // After failback_after, new connections go to the first server again:
    // with the second stopped, lookups still work.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(d.user_by_login("carol").await.unwrap().is_some());
    second.stop();
    let t0 = Instant::now();
    let mut ok = false;
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = d.user_by_login("dave").await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "back on the first server");
}

#[tokio::test]
async fn recovery_after_a_server_restart() {
    let mut s = small();
    let d = directory(&ldap_config(
        &[s.url()],
        "",
        "ttl = \"1ms\"\nstale_if_error = \"1ms\"",
    ));
    assert!(d.user_by_login("alice").await.unwrap().is_some());
    s.stop();
    let r = d.user_by_login("alice").await;
    assert!(
        r.is_err(),
        "directory down and nothing fresh: unavailable, not unknown: {r:?}"
    );
    s.restart();
    // The pooled connections are dead; gatehouse reconnects without a restart
    // (after the back-off of the failed server).
    let t0 = Instant::now();
    loop {
        match d.user_by_login("alice").await {
            Ok(Some(_)) => break,
            other => assert!(
                t0.elapsed() < Duration::from_secs(10),
                "never recovered: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts TCP connections (the kernel does, from the backlog) and never speaks.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", silent.local_addr().unwrap());
    let d = directory(&ldap_config(&[url], "timeout = \"500ms\"", ""));
    let t0 = Instant::now();
    let r = d.user_by_login("alice").await;
    assert!(r.is_err(), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}", t0.elapsed());
    drop(silent);
}

/// Every pool slot failing at once counts as one failure of the server, and
/// a server that answers again is used within about two seconds however
/// long the outage lasted (measured before: 10–16 s of 451 after a freeze).
#[tokio::test]
async fn back_off_is_per_server_and_recovery_is_quick() {
    let mut s = small();
    let d = directory(&ldap_config(&[s.url()], "pool_size = 8\ntimeout = \"500ms\"", ""));
    assert!(d.user_by_login("alice").await.unwrap().is_some());
    s.stop();
    // Eight rounds of eight concurrent lookups of uncached users: under a
    // per-slot count this drove the back-off to its cap.
    for round in 0..8 {
        let lookups = (0..8).map(|i| {
            let d = d.clone();
            tokio::spawn(async move { d.user_by_login(&format!("nobody{round}x{i}")).await })
        });
        for l in lookups {
            assert!(l.await.unwrap().is_err(), "slapd is down");
        }
    }
    s.restart();
    let back = Instant::now();
    loop {
        match d.user_by_login("dave").await {
            Ok(Some(_)) => break,
            other => assert!(
                back.elapsed() < Duration::from_millis(2500),
                "still refused {:?} after slapd answered: {other:?}",
                back.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stale_entries_are_served_during_an_outage_and_errors_are_not_cached() {
    let mut s = small();
    let d = directory(&ldap_config(
        &[s.url()],
        "",
        "ttl = \"200ms\"\nstale_if_error = \"1h\"",
    ));
    assert!(d.user_by_login("alice").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop();
    let (r, source) = d.lookup(UserKey::Login("alice".into())).await;
    assert_eq!(source, Source::Stale);
    assert!(r.unwrap().unwrap().groups.contains("All Staff"));
    // Never cached: unavailable, not "unknown user".
    assert!(d.user_by_login("bob").await.is_err());
    let [.., errors, stale] = d.counters().unwrap();
    assert!(errors >= 2 && stale == 1, "errors {errors} stale {stale}");
}

#[tokio::test]
async fn tls_with_a_test_ca_starttls_and_ldaps() {
    let s = Slapd::start_with(Options {
        tls: true,
        big: false,
    });
    let ca = format!("ca_file = {:?}", s.ca_file().display().to_string());
    let d = directory(&ldap_config(&[s.url()], &format!("starttls = true\n{ca}"), ""));
    assert!(d.user_by_login("alice").await.unwrap().is_some(), "StartTLS");
    let d = directory(&ldap_config(&[s.ldaps_url()], &ca, ""));
    assert!(d.user_by_login("alice").await.unwrap().is_some(), "ldaps");
    // Without our CA the server certificate is not trusted: fail closed.
    let other_ca = tempfile::tempdir().unwrap();
    let bogus = other_ca.path().join("ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other",
        ])
        .arg("-keyout")
        .arg(other_ca.path().join("k.pem"))
        .arg("-out")
        .arg(&bogus)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let d = directory(&ldap_config(
        &[s.ldaps_url()],
        &format!("ca_file = {:?}", bogus.display().to_string()),
        "",
    ));
    assert!(d.user_by_login("alice").await.is_err());
}

#[test]
fn bad_ldap_settings_are_refused_at_load() {
    let base = ldap_config(&["ldap://127.0.0.1:1".into()], "", "");
    let cases = [
        (
            "urls = [\"ldap://127.0.0.1:1\"]",
            "urls = [\"http://x\"]",
            "must start with ldap://",
        ),
        ("urls = [\"ldap://127.0.0.1:1\"]", "urls = []", "urls is empty"),
        (
            "timeout = \"2s\"",
            "timeout = \"2s\"\nuser_filter = \"(uid=alice)\"",
            "must contain {login}",
        ),
        (
            "timeout = \"2s\"",
            "timeout = \"2s\"\nuser_filter = \"(uid={login}\"",
            "unbalanced",
        ),
        (
            "timeout = \"2s\"",
            "timeout = \"2s\"\nbind_dn = \"cn=x\"",
            "go together",
        ),
        (
            "timeout = \"2s\"",
            "timeout = \"2s\"\nmembership = \"magic\"",
            "unknown variant",
        ),
        (
            "timeout = \"2s\"",
            "timeout = \"2s\"\nca_file = \"/nonexistent/ca.pem\"",
            "ca_file",
        ),
        (
            "timeout = \"2s\"",
            "timeout = \"2s\"\nbind_dn = \"cn=x\"\nbind_password_file = \"/nonexistent/pw\"",
            "bind_password_file",
        ),
        (
            "backend = \"ldap\"",
            "backend = \"static\"",
            "set backend = \"ldap\"",
        ),
    ];
    for (from, to, want) in cases {
        assert!(base.contains(from), "{from}");
        // Files named by the settings are read when the directory is built
        // (by the daemon, a reload and `check`), before anything is served.
        let e = config::parse(&base.replacen(from, to, 1), Path::new("x.toml"))
            .and_then(|c| c.build_directory().map(drop))
            .err()
            .map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains(want)), "{to}: {e:?}");
    }
}

#[tokio::test]
async fn a_recipient_entry_by_address_with_chosen_attributes() {
    let s = small();
    let d = directory(&ldap_config(&[s.url()], "", ""));
    let ldap = d.backend().as_any().downcast_ref::<LdapBackend>().unwrap();
    let entry = ldap
        .entry_by_address("A.Smith@Example.com", &["cn", "mail"])
        .await
        .unwrap()
        .unwrap();
    let (dn, attrs) = (entry.dn, entry.attrs);
    assert_eq!(dn, "uid=alice,ou=people,dc=example,dc=com");
    assert_eq!(
        attrs.get("mail").unwrap(),
        &vec!["alice@example.com".to_string(), "a.smith@example.com".to_string()]
    );
    assert!(attrs.contains_key("cn"));
    assert!(!attrs.contains_key("uid"), "only the attributes asked for");
    assert!(ldap
        .entry_by_address("nobody@example.com", &["cn"])
        .await
        .unwrap()
        .is_none());
    assert!(
        ldap.entry_by_address("*", &["cn"]).await.unwrap().is_none(),
        "escaped"
    );
}

/// MAIL's reply for a submission by `login` on the only listener of
/// `config` ("continue", "tempfail" or the reply text), through the code a
/// live session runs.
async fn submission_verdict(config: &str, login: &str) -> String {
    use gatehouse::enforcer::{explain, sender_address, verdict_for, Envelope, Snapshot};
    use gatehouse::milter::Verdict;
    use gatehouse::policy::ListenerId;
    let c = config::parse(config, Path::new("ldap-test.toml")).unwrap();
    let snap = Snapshot {
        directory: c.build_directory().unwrap(),
        policy: c.policy,
    };
    let from = format!("{login}@example.com");
    let sender = sender_address(&snap.policy, &from);
    let env = Envelope {
        listener: "default",
        client: None,
        login: Some(login),
        sender: sender.as_ref(),
    };
    let x = explain(
        &snap,
        ListenerId::Default,
        &env,
        &["carol@example.com".to_string()],
    )
    .await;
    match verdict_for(&snap.policy, &x.mail, None) {
        Verdict::Continue => "continue".into(),
        Verdict::Tempfail => "tempfail".into(),
        Verdict::Reply(b) => String::from_utf8_lossy(&b).into_owned(),
    }
}

#[tokio::test]
async fn a_group_named_like_a_rules_group_grants_nothing() {
    // Someone who may create groups somewhere under the base (a delegated
    // OU, a self-service group tool) creates "Mail Senders" there and puts
    // carol (not a real Mail Sender) in it; and a group named after the
    // real group's DN.
    let s = small();
    s.modify(
        "dn: ou=projects,dc=example,dc=com\nchangetype: add\nobjectClass: organizationalUnit\nou: projects\n\n\
         dn: cn=Mail Senders,ou=projects,dc=example,dc=com\nchangetype: add\nobjectClass: groupOfNames\ncn: Mail Senders\nmember: uid=carol,ou=people,dc=example,dc=com\n\n\
         dn: cn=Spoof,ou=projects,dc=example,dc=com\nchangetype: add\nobjectClass: groupOfNames\ncn: cn=Mail Senders,ou=groups,dc=example,dc=com\ncn: Spoof\nmember: uid=dave,ou=people,dc=example,dc=com\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let bind = service_bind(tmp.path());
    let with = |ldap: &str, allow: &str| {
        ldap_config(&[s.url()], &format!("{bind}\n{ldap}"), "")
            + &format!("submit = {{ allow_groups = [{allow:?}] }}\n")
    };
    let denied = "550 5.7.1 Client does not have permissions to submit to this server";

    // Groups under ou=groups only: the one in ou=projects is not the
    // "Mail Senders" of the rule, whatever its name.
    for mode in ["memberof", "search"] {
        let config = with(
            &format!("group_base_dn = \"ou=groups,dc=example,dc=com\"\nmembership = {mode:?}"),
            "Mail Senders",
        );
        assert_eq!(submission_verdict(&config, "alice").await, "continue", "{mode}");
        assert_eq!(submission_verdict(&config, "carol").await, denied, "{mode}");
    }

    // Groups anywhere under the base: the name means two entries. Their
    // members cannot be decided (tempfail, never an accept); a user in
    // neither is refused as before.
    let config = with("", "Mail Senders");
    let tempfail = "451 4.4.3 Directory server unavailable, try again later";
    assert_eq!(submission_verdict(&config, "carol").await, tempfail);
    assert_eq!(submission_verdict(&config, "alice").await, tempfail);
    assert_eq!(submission_verdict(&config, "dave").await, denied);
    let d = directory(&config);
    let carol = d.user_by_login("carol").await.unwrap().unwrap();
    let why = carol.groups.undecidable("Mail Senders").expect("undecidable");
    assert!(
        why.contains("cn=Mail Senders,ou=projects,dc=example,dc=com") && why.contains("by DN"),
        "{why}"
    );
    // `check` says so, as an error.
    let path = tmp.path().join("gatehouse.toml");
    std::fs::write(&path, &config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("\"Mail Senders\"") && text.contains("matches 2 entries"),
        "{text}"
    );

    // Named by DN, the rule means the one entry: alice may, carol may not,
    // and dave's group, whose first name is that DN, is not it (the search
    // mode names a group by its first cn).
    for mode in ["memberof", "search"] {
        let config = with(
            &format!("membership = {mode:?}"),
            "cn=Mail Senders,ou=groups,dc=example,dc=com",
        );
        if mode == "search" {
            let d = directory(&config);
            assert!(
                groups_of(&d, "dave")
                    .await
                    .contains(&"dave > cn=Mail Senders,ou=groups,dc=example,dc=com".to_string()),
                "the spoof is known by the DN-like name"
            );
        }
        assert_eq!(submission_verdict(&config, "alice").await, "continue", "{mode}");
        assert_eq!(submission_verdict(&config, "carol").await, denied, "{mode}");
        assert_eq!(submission_verdict(&config, "dave").await, denied, "{mode}");
    }
}
