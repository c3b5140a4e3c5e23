//! Session, connection, server and enforcer in one process, over in-memory
//! streams and a unix socket in a temporary folder, with a fake directory
//! backend: the decisions, the directory's failures and the server's
//! lifecycle, without the binary, a port or a real directory. Time is
//! tokio's paused clock where a timeout is under test.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::fake_directory::{Control, FakeDirectory, Health};
use gatehouse::config::{self, Config};
use gatehouse::directory::{CacheSettings, Directory};
use gatehouse::enforcer::{Enforcer, Snapshot};
use gatehouse::milter::client::{Envelope, MilterClient, POSTFIX_V6_OFFER};
use gatehouse::milter::session::Session;
use gatehouse::milter::{Endpoint, Reply};
use gatehouse::policy_delegation::client::PolicyClient;
use gatehouse::policy_delegation::{self, Limits, PolicyServiceSettings, Timeouts};
use gatehouse::server::{self, ListenSettings, ServerSettings};

fn config(overrides: &str, listen: &str) -> Config {
    config::parse(&common::example_config(listen, overrides), Path::new("test.toml")).unwrap()
}

/// The example policy over a fake directory where alice may relay, bob may
/// submit only, and carol is a contractor.
fn enforcer(overrides: &str) -> (Arc<Enforcer>, Arc<Control>, Config) {
    let c = config(overrides, "inet:127.0.0.1:8890");
    let control = Arc::new(Control::default());
    control.add_user(
        "alice",
        &["alice@example.com"],
        &["Mail Senders", "Internet Mail Users"],
    );
    control.add_user("bob", &["bob@example.com"], &["Mail Senders"]);
    control.add_user(
        "carol",
        &["carol@example.com"],
        &["Mail Senders", "Internet Mail Users", "Contractors"],
    );
    let directory = Directory::new(FakeDirectory(control.clone()), CacheSettings::default());
    let e = Enforcer::new(Snapshot {
        policy: c.policy.clone(),
        directory: Arc::new(directory),
    });
    (Arc::new(e), control, c)
}

/// A session served by `run_session` on one end of an in-memory stream, the
/// MTA's client on the other, negotiated and connected to `daemon_name`.
async fn session(
    e: &Arc<Enforcer>,
    settings: &ServerSettings,
    daemon_name: &str,
) -> (MilterClient<tokio::io::DuplexStream>, tokio::task::JoinHandle<()>) {
    let (mta, milter) = tokio::io::duplex(64 * 1024);
    let session = Session::new(e.clone(), Arc::from("test"), "in-memory".into());
    let settings = settings.clone();
    let served = tokio::spawn(async move { server::run_session(milter, session, &settings).await });
    let mut c = MilterClient::new(mta);
    c.negotiate(POSTFIX_V6_OFFER).await.expect("negotiate");
    c.connect_event(
        "client.example.net",
        "192.0.2.7".parse().unwrap(),
        41000,
        &[("j", "mx.example.com"), ("{daemon_name}", daemon_name)],
    )
    .await
    .expect("connect");
    c.helo("client.example.net").await.expect("helo");
    (c, served)
}

fn as_login(login: &str, rcpt: &str) -> Envelope {
    Envelope {
        mail_macros: vec![("{auth_authen}".into(), login.into())],
        sender: format!("{login}@example.com"),
        recipients: vec![rcpt.into()],
    }
}

fn code(r: &Option<Reply>) -> String {
    let t = common::reply_text(r);
    t.split_whitespace().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn relay_is_decided_by_the_groups_the_backend_returns() {
    let (e, control, c) = enforcer("");
    let (mut mta, _) = session(&e, &c.server, "submission").await;
    let alice = mta
        .transaction(&as_login("alice", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(
        alice.rcpts[0],
        Some(Reply::Continue),
        "alice is in Internet Mail Users"
    );
    let bob = mta
        .transaction(&as_login("bob", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(code(&bob.rcpts[0]), "550", "bob is not: {:?}", bob.rcpts[0]);
    let carol = mta
        .transaction(&as_login("carol", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(code(&carol.rcpts[0]), "550", "Contractors is a deny group");
    // The cache layer over the backend: alice again costs no lookup.
    let before = control.lookups();
    mta.transaction(&as_login("alice", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(control.lookups(), before);
}

#[tokio::test]
async fn an_outage_tempfails_and_recovery_is_seen_at_once() {
    let (e, control, c) = enforcer("");
    let (mut mta, _) = session(&e, &c.server, "submission").await;
    control.set_health(Health::Down);
    let r = mta
        .transaction(&as_login("alice", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(code(&r.mail), "451", "{:?}", r.mail);
    // The outage is not cached: the next transaction asks again.
    control.set_health(Health::Up);
    let r = mta
        .transaction(&as_login("alice", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(r.rcpts[0], Some(Reply::Continue));
}

#[tokio::test(start_paused = true)]
async fn a_silent_directory_is_a_tempfail_after_decision_timeout() {
    let (e, control, c) = enforcer("decision_timeout = \"2s\"");
    let (mut mta, _) = session(&e, &c.server, "submission").await;
    control.set_health(Health::Silent);
    let started = tokio::time::Instant::now();
    let r = mta
        .transaction(&as_login("alice", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(code(&r.mail), "451", "{:?}", r.mail);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn an_unusable_answer_tempfails_even_when_errors_accept() {
    let (e, control, c) = enforcer("on_directory_error = \"accept\"");
    let (mut mta, _) = session(&e, &c.server, "submission").await;
    control.set_health(Health::Down);
    let r = mta
        .transaction(&as_login("bob", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(
        r.rcpts[0],
        Some(Reply::Continue),
        "an outage follows on_directory_error"
    );
    control.set_health(Health::Unusable);
    let r = mta
        .transaction(&as_login("alice", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(code(&r.mail), "451", "{:?}", r.mail);
}

#[tokio::test]
async fn another_users_entry_is_not_an_identity() {
    let (e, control, c) = enforcer("");
    // The server's matching rule folds "alicex" to alice's entry (as real
    // ones fold width and spaces).
    control.fold("alicex", "alice");
    let (mut mta, _) = session(&e, &c.server, "submission").await;
    let mut env = as_login("alicex", "v@elsewhere.example");
    env.sender = "alice@example.com".into();
    let r = mta.transaction(&env).await.unwrap();
    assert_eq!(code(&r.mail), "451", "{:?}", r.mail);
}

#[tokio::test]
async fn a_reload_applies_to_the_next_transaction_of_an_open_session() {
    let (e, control, c) = enforcer("");
    let (mut mta, _) = session(&e, &c.server, "submission").await;
    let r = mta
        .transaction(&as_login("bob", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(code(&r.rcpts[0]), "550");
    let relaxed = config(
        "relay = { allow_groups = [\"Mail Senders\"], deny_groups = [\"Contractors\"] }",
        "inet:127.0.0.1:8890",
    );
    e.replace(Snapshot {
        policy: relaxed.policy.clone(),
        directory: Arc::new(Directory::new(FakeDirectory(control), CacheSettings::default())),
    });
    let r = mta
        .transaction(&as_login("bob", "v@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(r.rcpts[0], Some(Reply::Continue));
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_idle_timeout() {
    let (e, _, c) = enforcer("idle_timeout = \"30s\"");
    let (mta, served) = session(&e, &c.server, "submission").await;
    let started = tokio::time::Instant::now();
    served.await.unwrap();
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_secs(30) && idle < Duration::from_secs(31),
        "{idle:?}"
    );
    drop(mta);
}

#[tokio::test]
async fn an_oversized_packet_ends_the_session() {
    use tokio::io::AsyncWriteExt;
    let (e, _, c) = enforcer("");
    let (mut mta, milter) = tokio::io::duplex(1024);
    let session = Session::new(e.clone(), Arc::from("test"), "in-memory".into());
    let settings = c.server.clone();
    let served = tokio::spawn(async move { server::run_session(milter, session, &settings).await });
    let len = u32::try_from(c.server.max_packet_size + 1).unwrap();
    mta.write_all(&len.to_be_bytes()).await.unwrap();
    // Closed without reading the body: the session task ends on the length.
    served.await.unwrap();
}

#[tokio::test]
async fn the_server_serves_a_unix_socket_and_removes_it_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    let listen = format!("unix:{}", socket.display());
    let c = config("", &listen);
    let (e, _, _) = enforcer("");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(c.server.clone(), e, async {
        let _ = stopped.await;
    }));
    let endpoint = Endpoint::parse(&listen).unwrap();
    // Connecting is retried until the socket is bound: no sleep, a bounded
    // number of scheduler turns.
    let mut client = None;
    for _ in 0..10_000 {
        if let Ok(c) = MilterClient::connect(&endpoint).await {
            client = Some(c);
            break;
        }
        tokio::task::yield_now().await;
    }
    let mut mta = client.expect("the server binds its socket");
    mta.negotiate(POSTFIX_V6_OFFER).await.unwrap();
    mta.connect_event(
        "client.example.net",
        "192.0.2.7".parse().unwrap(),
        41000,
        &[("{daemon_name}", "bridgehead")],
    )
    .await
    .unwrap();
    let r = mta
        .transaction(&Envelope {
            sender: "x@partner.example".into(),
            recipients: vec!["v@elsewhere.example".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(code(&r.rcpts[0]), "550", "anonymous relay on the bridgehead");
    mta.quit().await.unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket file is removed");
}

/// A policy-delegation connection served on one end of an in-memory stream.
fn policy_connection(e: &Arc<Enforcer>, timeouts: Timeouts) -> PolicyClient<tokio::io::DuplexStream> {
    let (mta, server) = tokio::io::duplex(64 * 1024);
    let settings = PolicyServiceSettings {
        listen: ListenSettings {
            endpoints: vec![],
            socket_mode: 0o660,
            max_connections: 1,
            shutdown_timeout: Duration::from_secs(1),
        },
        limits: Limits {
            max_request_bytes: 16384,
            max_attributes: 128,
        },
        timeouts,
    };
    let e = e.clone();
    tokio::spawn(async move {
        policy_delegation::serve_connection(server, &*e, &settings, "in-memory", "test").await
    });
    PolicyClient::new(mta)
}

const POLICY_TIMEOUTS: Timeouts = Timeouts {
    idle: Duration::from_secs(330),
    request: Duration::from_secs(10),
};

#[tokio::test(start_paused = true)]
async fn policy_delegation_fails_closed_like_the_milter() {
    let (e, control, _) = enforcer("decision_timeout = \"2s\"");
    let mut c = policy_connection(&e, POLICY_TIMEOUTS);
    let alice = |instance: &'static str| {
        common::policy_request(&[
            ("policy_context", "submission"),
            ("sasl_username", "alice"),
            ("sasl_method", "PLAIN"),
            ("sender", "alice@example.com"),
            ("recipient", "v@elsewhere.example"),
            ("instance", instance),
        ])
    };
    control.set_health(Health::Down);
    let down = c.ask(&alice("t.1")).await.unwrap();
    assert_eq!(down, "451 4.4.3 Directory server unavailable, try again later");
    // Silent: a tempfail once decision_timeout has passed, never a pass.
    control.set_health(Health::Silent);
    let started = tokio::time::Instant::now();
    let silent = c.ask(&alice("t.2")).await.unwrap();
    assert_eq!(silent, down);
    assert!(started.elapsed() >= Duration::from_secs(2) && started.elapsed() < Duration::from_secs(3));
    // The outage is not cached: the next transaction asks again.
    control.set_health(Health::Up);
    assert_eq!(c.ask(&alice("t.3")).await.unwrap(), "DUNNO");
}

#[tokio::test(start_paused = true)]
async fn policy_delegation_keeps_the_snapshot_a_transaction_started_with() {
    let (e, _, _) = enforcer("");
    let mut c = policy_connection(&e, POLICY_TIMEOUTS);
    let rcpt = |instance: &'static str, r: &'static str| {
        common::policy_request(&[("instance", instance), ("recipient", r)])
    };
    assert_eq!(c.ask(&rcpt("s.1", "carol@example.com")).await.unwrap(), "DUNNO");
    // A reload that turns the bridgehead to monitor mode applies to the
    // next transaction, not to the rest of this one.
    let monitor = config(
        "reject_anonymous_local_sender = true       # default false\nmode = \"monitor\"",
        "inet:127.0.0.1:8890",
    );
    e.replace(Snapshot {
        policy: monitor.policy.clone(),
        directory: e.snapshot().directory.clone(),
    });
    let same = c.ask(&rcpt("s.1", "v@elsewhere.example")).await.unwrap();
    assert_eq!(same, "550 5.7.1 Unable to relay");
    let next = c.ask(&rcpt("s.2", "v@elsewhere.example")).await.unwrap();
    assert_eq!(next, "DUNNO", "monitor mode: logged, not refused");
}

#[tokio::test(start_paused = true)]
async fn policy_delegation_drops_a_slow_request_at_its_deadline() {
    let (e, _, _) = enforcer("");
    let mut c = policy_connection(&e, POLICY_TIMEOUTS);
    let wire = common::policy_request(&[]).encode();
    c.send_raw(&wire[..10]).await.unwrap();
    let started = tokio::time::Instant::now();
    c.closed().await.unwrap();
    assert_eq!(started.elapsed().as_secs(), 10, "request_timeout");
    // Idle between requests: idle_timeout.
    let mut idle = policy_connection(&e, POLICY_TIMEOUTS);
    assert_eq!(idle.ask(&common::policy_request(&[])).await.unwrap(), "DUNNO");
    let started = tokio::time::Instant::now();
    idle.closed().await.unwrap();
    assert_eq!(started.elapsed().as_secs(), 330, "idle_timeout");
}

/// A macro sent twice in one packet, in either spelling (`x`, `{x}`):
/// the last value is the one decided on, as libmilter keeps it.
#[tokio::test]
async fn a_macro_sent_twice_counts_with_its_last_value() {
    let (e, _, c) = enforcer("");
    let (mut mta, _) = session(&e, &c.server, "submission").await;
    let twice = |first: &str, last: &str| Envelope {
        mail_macros: vec![
            ("{auth_authen}".into(), first.into()),
            ("i".into(), "Q1".into()),
            ("auth_authen".into(), last.into()),
        ],
        sender: "alice@example.com".into(),
        recipients: vec!["v@elsewhere.example".into()],
    };
    // alice, then nothing: anonymous on submission.
    let r = mta.transaction(&twice("alice", "")).await.unwrap();
    assert_eq!(code(&r.mail), "530", "{r:?}");
    // nothing, then alice: alice, who may relay.
    let r = mta.transaction(&twice("", "alice")).await.unwrap();
    assert_eq!(
        (r.mail.clone(), r.rcpts[0].clone()),
        (Some(Reply::Continue), Some(Reply::Continue)),
        "{r:?}"
    );
    // bob, then alice, then (next transaction) none at all: no login left over.
    let r = mta.transaction(&twice("bob", "alice")).await.unwrap();
    assert_eq!(r.rcpts[0], Some(Reply::Continue), "{r:?}");
    let r = mta
        .transaction(&Envelope {
            mail_macros: vec![],
            sender: "alice@example.com".into(),
            recipients: vec!["v@elsewhere.example".into()],
        })
        .await
        .unwrap();
    assert_eq!(code(&r.mail), "530", "{r:?}");
}
