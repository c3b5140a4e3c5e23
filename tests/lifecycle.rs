//! Process life: unix sockets (mode, stale file, live owner, removal), several
//! listeners at once, graceful shutdown with a deadline, SIGHUP reload.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::{example_config, session, Gatehouse, ANY_PORT};
use gatehouse::milter::client::{Envelope, MilterClient, POSTFIX_V6_OFFER};
use gatehouse::milter::{Endpoint, Reply};

fn relay_attempt() -> Envelope {
    Envelope {
        sender: "someone@partner.example".into(),
        recipients: vec!["victim@elsewhere.example".into(), "carol@example.com".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn unix_socket_mode_stale_file_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("g.sock");
    // A stale socket file from a crashed run: bound, then its listener dropped.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let listen = format!("unix:{}", sock.display());
    let config = example_config(&listen, "socket_mode = \"0600\"").replace(
        &format!("listen = [\"{listen}\"]"),
        &format!("listen = [\"{listen}\", \"inet:127.0.0.1:0\", \"inet6:[::1]:0\"]"),
    );
    let mut g = Gatehouse::start_with(&config, &listen);
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(g.log().contains("removing stale socket"));
    // Both listeners serve.
    for endpoint in [Endpoint::parse(&listen).unwrap(), g.bound("inet:127.0.0.1:0")] {
        let mut c = session(&endpoint, "bridgehead", "192.0.2.1").await;
        let r = c.transaction(&relay_attempt()).await.unwrap();
        assert!(matches!(&r.rcpts[0], Some(Reply::ReplyCode(t)) if t.ends_with(b"Unable to relay")));
        assert_eq!(r.rcpts[1], Some(Reply::Continue));
    }
    // A second gatehouse must not steal the live socket.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("--config")
        .arg(&g.config_path)
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("in use"),
        "{second:?}"
    );
    assert!(sock.exists(), "the running instance keeps its socket");
    g.signal("TERM");
    assert!(g.wait_exit(Duration::from_secs(5)).unwrap().success());
    assert!(!sock.exists(), "socket removed on exit");
}

#[tokio::test]
async fn a_regular_file_in_the_socket_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.sock");
    std::fs::write(&path, "precious").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("--config")
        .arg({
            let c = dir.path().join("c.toml");
            std::fs::write(&c, example_config(&format!("unix:{}", path.display()), "")).unwrap();
            c
        })
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[tokio::test]
async fn sigterm_lets_a_session_finish_then_exits() {
    let mut g = Gatehouse::start("shutdown_timeout = \"10s\"");
    let mut c = session(&g.endpoint, "bridgehead", "192.0.2.1").await;
    g.signal("TERM");
    g.wait_for_log("waiting for sessions to end", Duration::from_secs(5));
    // No new connections...
    assert!(MilterClient::connect(&g.endpoint).await.is_err());
    // ...but the session in flight completes its transaction.
    let r = c.transaction(&relay_attempt()).await.unwrap();
    assert_eq!(r.end, Some(Reply::Accept));
    c.quit().await.unwrap();
    let status = g
        .wait_exit(Duration::from_secs(5))
        .expect("exits once the session ended");
    assert!(status.success());
    assert!(g.log().contains("all sessions ended"));
}

#[tokio::test]
async fn sigterm_deadline_closes_idle_sessions() {
    let mut g = Gatehouse::start("shutdown_timeout = \"1s\"");
    let _idle = session(&g.endpoint, "bridgehead", "192.0.2.1").await;
    let t0 = Instant::now();
    g.signal("INT");
    let status = g
        .wait_exit(Duration::from_secs(5))
        .expect("exits at the deadline");
    assert!(status.success());
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "waited for the deadline"
    );
    assert!(g.log().contains("shutdown deadline reached"));
}

#[tokio::test]
async fn sighup_reloads_for_new_transactions_and_refuses_a_broken_file() {
    let g = Gatehouse::start("");
    async fn submission(c: &mut MilterClient) -> gatehouse::milter::client::TransactionReplies {
        let env = Envelope {
            mail_macros: vec![("{auth_authen}".into(), "carol".into())],
            sender: "carol@example.com".into(),
            recipients: vec!["bob@example.com".into()],
        };
        c.transaction(&env).await.unwrap()
    }
    let mut c = session(&g.endpoint, "submission", "192.0.2.1").await;
    // carol is not in "Mail Senders": refused at MAIL.
    let r = submission(&mut c).await;
    assert!(
        matches!(&r.mail, Some(Reply::ReplyCode(t)) if t.starts_with(b"550 5.7.1 Client does not have permissions to submit"))
    );

    // New config: carol joins "Mail Senders".
    let text = std::fs::read_to_string(&g.config_path).unwrap();
    let text = text.replace(
        "login = \"carol\"\naddresses = [\"carol@example.com\"]\ngroups = []",
        "login = \"carol\"\naddresses = [\"carol@example.com\"]\ngroups = [\"Mail Senders\"]",
    );
    assert!(text.contains("groups = [\"Mail Senders\"]"));
    std::fs::write(&g.config_path, &text).unwrap();
    g.signal("HUP");
    g.wait_for_log("configuration reloaded", Duration::from_secs(5));
    // The same milter connection, next transaction: new rules apply.
    let r = submission(&mut c).await;
    assert_eq!(r.mail, Some(Reply::Continue));
    assert_eq!(r.end, Some(Reply::Accept));

    // A broken file is refused; the running configuration keeps serving.
    std::fs::write(
        &g.config_path,
        text.replace("[domains]", "[domains]\nbogus_key = 1"),
    )
    .unwrap();
    g.signal("HUP");
    let log = g.wait_for_log("reload refused", Duration::from_secs(5));
    assert!(log.contains("bogus_key"), "the refusal names the key: {log}");
    let r = submission(&mut c).await;
    assert_eq!(r.mail, Some(Reply::Continue));

    // Decision log lines carry the config version.
    let mut c2 = session(&g.endpoint, "bridgehead", "192.0.2.1").await;
    c2.transaction(&relay_attempt()).await.unwrap();
    let log = g.wait_for_log("rule=\"relay\"", Duration::from_secs(5));
    let line = log.lines().find(|l| l.contains("rule=\"relay\"")).unwrap();
    assert!(line.contains("config_version=2"), "{line}");

    // The refusal is one log line, whatever the parser's message spans.
    let refusal = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(refusal.contains("bogus_key"), "{refusal}");

    // An empty file is refused: the running policy stays.
    std::fs::write(&g.config_path, "").unwrap();
    g.signal("HUP");
    g.wait_for_log("no [[listener]]", Duration::from_secs(5));
    // A file cut before [[recipient]] is a valid policy, but what it drops
    // is said loudly.
    let cut = &text[..text.find("\n[[recipient]]").unwrap()];
    std::fs::write(&g.config_path, cut).unwrap();
    g.signal("HUP");
    let log = g.wait_for_log("reload removes", Duration::from_secs(5));
    assert!(
        log.lines()
            .any(|l| l.contains("reload removes the restrictions on all-staff@example.com")),
        "{log}"
    );
}

#[tokio::test]
async fn sendmail_813_protocol_v2_works_without_data_stage() {
    let g = Gatehouse::start("");
    let mut c = MilterClient::connect(&g.endpoint).await.unwrap();
    let n = c
        .negotiate(gatehouse::milter::OptNeg {
            version: 2,
            actions: 0x3F,
            protocol: 0x7F,
        })
        .await
        .unwrap();
    assert_eq!(n.version, 2);
    assert_eq!(n.protocol & !0x7F, 0);
    assert!(c.macro_lists.is_empty());
    // v2: CONNECT gets a reply (no NR_CONN), HELO is switched off.
    let r = c
        .connect_event(
            "h",
            "192.0.2.1".parse().unwrap(),
            1,
            &[("{daemon_name}", "bridgehead")],
        )
        .await
        .unwrap();
    assert_eq!(r, Some(Reply::Continue));
    assert_eq!(c.helo("h").await.unwrap(), None);
    let r = c.transaction(&relay_attempt()).await.unwrap();
    assert!(matches!(&r.rcpts[0], Some(Reply::ReplyCode(t)) if t.ends_with(b"Unable to relay")));
    // No DATA in v2: the message ends at EOM, answered continue.
    assert_eq!(r.end, Some(Reply::Continue));
}

#[tokio::test]
async fn postfix_v6_negotiation_asks_for_exactly_what_the_policy_needs() {
    let g = Gatehouse::start("");
    let mut c = MilterClient::connect(&g.endpoint).await.unwrap();
    let n = c.negotiate(POSTFIX_V6_OFFER).await.unwrap();
    use gatehouse::milter::protocol::proto::*;
    for bit in [NOHELO, NOHDRS, NOEOH, NOBODY, NOUNKNOWN, NR_CONN] {
        assert_ne!(n.protocol & bit, 0, "bit {bit:#x}");
    }
    for bit in [
        NOCONNECT, NOMAIL, NORCPT, NODATA, NR_MAIL, NR_RCPT, NR_DATA, RCPT_REJ,
    ] {
        assert_eq!(n.protocol & bit, 0, "bit {bit:#x}");
    }
    assert_eq!(n.actions, 0x100, "SETSYMLIST only: gatehouse never modifies mail");
    let lists: Vec<(u32, String)> = c
        .macro_lists
        .iter()
        .map(|(s, l)| (*s, String::from_utf8_lossy(l).into_owned()))
        .collect();
    let list = |stage: u32| {
        lists
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    assert!(
        list(0).contains("{daemon_name}")
            && list(0).contains("{daemon_port}")
            && list(0).contains("{client_addr}")
    );
    assert!(list(2).contains("{auth_authen}") && list(2).split(' ').any(|m| m == "i"));
    assert!(list(3).contains("{rcpt_addr}"));
}

#[tokio::test]
async fn listeners_can_be_told_apart_by_the_socket_the_mta_used() {
    // Two loopback addresses, each on a port the kernel picks.
    let (s1, s2) = ("inet:127.0.0.1:0".to_string(), "inet:127.0.0.2:0".to_string());
    let config = example_config(&s1, "")
        .replace(
            &format!("listen = [\"{s1}\"]"),
            &format!("listen = [\"{s1}\", \"{s2}\"]"),
        )
        .replace(
            "match = { daemon_name = \"bridgehead\" }",
            &format!("match = {{ socket = \"{s1}\" }}"),
        )
        .replace(
            "match = { daemon_name = \"submission\" }",
            &format!("match = {{ socket = \"{s2}\" }}"),
        );
    let g = Gatehouse::start_with(&config, &s1);
    // Same macros on both sockets: only the socket differs.
    let mut c1 = session(&g.bound(&s1), "whatever", "192.0.2.1").await;
    let r = c1.transaction(&relay_attempt()).await.unwrap();
    assert_eq!(r.mail, Some(Reply::Continue), "bridgehead allows anonymous");
    let mut c2 = session(&g.bound(&s2), "whatever", "192.0.2.1").await;
    let r = c2.transaction(&relay_attempt()).await.unwrap();
    assert!(
        matches!(&r.mail, Some(Reply::ReplyCode(t)) if t.starts_with(b"530 5.7.0")),
        "{r:?}"
    );
    drop(g);
}

#[tokio::test]
async fn a_session_no_listener_matches_gets_4xx_and_a_log_line_with_the_macros() {
    let listen = ANY_PORT;
    // The example without its "default" listener.
    let config = example_config(listen, "").replace(
        "[[listener]]\nname = \"default\"                           # example: sessions no other listener matches\nmatch = {}\nallow_anonymous = true\n",
        "",
    );
    assert!(!config.contains("name = \"default\""));
    let g = Gatehouse::start_with(&config, listen);
    let mut c = session(&g.endpoint, "unknown-service", "192.0.2.1").await;
    let r = c.transaction(&relay_attempt()).await.unwrap();
    assert!(
        matches!(&r.mail, Some(Reply::ReplyCode(t)) if t == "451 4.3.0 No policy for this listener, try again later"),
        "{r:?}"
    );
    let log = g.wait_for_log("no listener matches", Duration::from_secs(5));
    assert!(log.contains("{daemon_name}"), "the macros seen are named: {log}");
}

#[tokio::test]
async fn a_log_reader_that_goes_away_does_not_stop_the_daemon() {
    // stderr is a pipe whose reader leaves (a journal restarted, `| head`):
    // each line is then lost, and gatehouse keeps serving. (It used to die
    // on the first line it could not write.)
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("g.sock");
    let listen = format!("unix:{}", sock.display());
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, example_config(&listen, "")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
    }
    drop(stderr);
    let endpoint = Endpoint::parse(&listen).unwrap();
    // Each refusal is a log line nobody reads.
    for _ in 0..3 {
        let mut c = session(&endpoint, "bridgehead", "203.0.113.9").await;
        common::assert_relay_refused(&mut c, "someone@partner.example").await;
    }
    assert!(child.try_wait().unwrap().is_none(), "gatehouse died");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(kill.unwrap().success());
    assert!(child.wait().unwrap().success());
}
