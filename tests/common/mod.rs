//! Test support: run the real `gatehouse` binary on a temporary config and a
//! free loopback port, capture its log, stop it by PID.
#![allow(dead_code)]

pub mod fake_directory;
pub mod matrix;
pub mod slapd;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse::milter::client::{MilterClient, POSTFIX_V6_OFFER};
use gatehouse::milter::Endpoint;

pub const EXAMPLE_CONFIG: &str = include_str!("../../conf/gatehouse.toml");

/// Where a test's gatehouse listens: port 0, the kernel picks a free port
/// and gatehouse logs it (no port found free and then dropped, which
/// another process may take in between).
pub const ANY_PORT: &str = "inet:127.0.0.1:0";

/// Where a test's policy-delegation listener is: port 0 on another
/// loopback address than the milter's (one endpoint, one protocol).
pub const POLICY_ANY_PORT: &str = "inet:127.0.0.2:0";

/// `config` (the example's text) with `[policy_service]` listening on `listen`.
pub fn with_policy_service(config: &str, listen: &str) -> String {
    let off = "\nlisten = []";
    assert!(config.contains(off), "no policy_service listen line");
    config.replacen(off, &format!("\nlisten = [\"{listen}\"]"), 1)
}

/// A request as Postfix's smtpd sends it at RCPT, anonymous, with
/// `overrides` replacing or adding attributes.
pub fn policy_request(overrides: &[(&str, &str)]) -> gatehouse::policy_delegation::Request {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("request", "smtpd_access_policy"),
        ("protocol_state", "RCPT"),
        ("protocol_name", "ESMTP"),
        ("helo_name", "client.example.net"),
        ("queue_id", ""),
        ("sender", "x@partner.example"),
        ("recipient", "carol@example.com"),
        ("recipient_count", "0"),
        ("client_address", "198.51.100.7"),
        ("client_name", "unknown"),
        ("reverse_client_name", "unknown"),
        ("instance", "1a2b.5f2e8c1d.1"),
        ("sasl_method", ""),
        ("sasl_username", ""),
        ("sasl_sender", ""),
        ("size", "0"),
        ("ccert_subject", ""),
        ("encryption_protocol", ""),
        ("stress", ""),
        ("policy_context", "bridgehead"),
        ("server_address", "127.0.0.1"),
        ("server_port", "25"),
        ("compatibility_level", "3.6"),
        ("mail_version", "3.7.11"),
    ];
    for (name, value) in overrides {
        match pairs.iter_mut().find(|(n, _)| n == name) {
            Some(p) => p.1 = value,
            None => pairs.push((name, value)),
        }
    }
    gatehouse::policy_delegation::Request::from_pairs(pairs)
}

/// The example configuration, listening on `listen` instead of port 8890,
/// with each `key = value` line of `overrides` replacing that key's line.
pub fn example_config(listen: &str, overrides: &str) -> String {
    let mut text = EXAMPLE_CONFIG.replace(
        "listen = [\"inet:127.0.0.1:8890\"]",
        &format!("listen = [\"{listen}\"]"),
    );
    for line in overrides.lines().filter(|l| !l.trim().is_empty()) {
        let key = line.split('=').next().unwrap().trim();
        let start = text
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("no {key} in the example config"));
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[start] = line.to_string();
        text = lines.join("\n");
    }
    text
}

/// The example configuration with its static directory replaced by the test slapd.
pub fn ldap_example_config(listen: &str, slapd: &slapd::Slapd, cache: &str) -> String {
    let pw = slapd.dir.path().join("gatehouse.secret");
    std::fs::write(&pw, slapd::SERVICE_PASSWORD).unwrap();
    // As an admin keeps it: not readable by every local user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let start = EXAMPLE_CONFIG.find("[directory]\n").unwrap();
    let end = EXAMPLE_CONFIG.find("[domains]\n").unwrap();
    let ldap = format!(
        "[directory]\nbackend = \"ldap\"\n\n[directory.ldap]\nurls = [\"{}\"]\nbind_dn = \"{}\"\n\
         bind_password_file = {:?}\nbase_dn = \"dc=example,dc=com\"\ntimeout = \"1s\"\n\n[cache]\n{cache}\n\n",
        slapd.url(),
        slapd::SERVICE_DN,
        pw.display().to_string()
    );
    let text = format!("{}{ldap}{}", &EXAMPLE_CONFIG[..start], &EXAMPLE_CONFIG[end..]);
    text.replace(
        "listen = [\"inet:127.0.0.1:8890\"]",
        &format!("listen = [\"{listen}\"]"),
    )
}

pub struct Gatehouse {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub endpoint: Endpoint,
    log: Arc<Mutex<String>>,
}

impl Gatehouse {
    /// Start on a free TCP port with the example config (plus `extra_milter`).
    pub fn start(extra_milter: &str) -> Gatehouse {
        Gatehouse::start_with(&example_config(ANY_PORT, extra_milter), ANY_PORT)
    }

    /// Start with a complete config text; `endpoint` is where to connect.
    pub fn start_with(config: &str, endpoint: &str) -> Gatehouse {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("gatehouse.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "gatehouse=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gatehouse");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut g = Gatehouse {
            child,
            dir,
            config_path,
            endpoint: Endpoint::parse(endpoint).unwrap(),
            log,
        };
        let start = Instant::now();
        while !g.log().contains("listening") {
            if let Some(status) = g.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                panic!("gatehouse exited ({status}) before listening; log:\n{}", g.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "gatehouse never listened; log:\n{}",
                g.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        if endpoint.ends_with(":0") {
            g.endpoint = g.bound(endpoint);
        }
        g
    }

    /// Where a listener configured on port 0 (`inet:127.0.0.1:0`) was
    /// bound, from its "listening" line.
    pub fn bound(&self, configured: &str) -> Endpoint {
        let log = self.log();
        let address = log
            .lines()
            .filter(|l| l.contains("listening"))
            .find_map(|l| {
                // Text (`socket=S address=A`) or JSON (`"socket":"S","address":"A"`).
                let text = l.contains(&format!("socket={configured} "));
                let json = l.contains(&format!("\"socket\":\"{configured}\""));
                let (after, end) = match (text, json) {
                    (true, _) => (l.split_once("address=")?.1, ' '),
                    (_, true) => (l.split_once("\"address\":\"")?.1, '"'),
                    _ => return None,
                };
                after.split(end).next()
            })
            .unwrap_or_else(|| panic!("no bound address for {configured} in:\n{log}"));
        let port = address.rsplit(':').next().unwrap();
        let host = configured.strip_suffix(":0").expect("a port-0 endpoint");
        Endpoint::parse(&format!("{host}:{port}")).unwrap()
    }

    /// Where the policy-delegation listener configured on `configured`
    /// (port 0) was bound, once it listens.
    pub fn policy_endpoint(&self, configured: &str) -> Endpoint {
        self.wait_for_log(&format!("socket={configured} address="), Duration::from_secs(10));
        self.bound(configured)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle`; panics with the log if it never does.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            if start.elapsed() > timeout {
                panic!("gatehouse log never contained {needle:?}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Count of lines containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Wait for the process to exit; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        // Stop the process we started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that negotiated as Postfix 3 does, before CONNECT.
pub async fn negotiated(endpoint: &Endpoint) -> MilterClient {
    let mut c = MilterClient::connect(endpoint).await.expect("connect");
    c.negotiate(POSTFIX_V6_OFFER).await.expect("negotiate");
    c
}

/// An anonymous relay attempt on `c`: the recipient must be refused.
pub async fn assert_relay_refused(c: &mut MilterClient, sender: &str) {
    let r = c
        .transaction(&gatehouse::milter::client::Envelope {
            sender: sender.into(),
            recipients: vec!["v@elsewhere.example".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        reply_text(&r.rcpts[0]),
        "550 5.7.1 <v@elsewhere.example>: Unable to relay"
    );
}

/// `gatehouse check --config FILE` with `text` as the file.
pub fn gatehouse_check(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(&cfg, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap()
}

/// A negotiated client with CONNECT sent for `daemon_name` from `client_ip`.
pub async fn session(endpoint: &Endpoint, daemon_name: &str, client_ip: &str) -> MilterClient {
    let mut c = negotiated(endpoint).await;
    c.connect_event(
        "client.example.net",
        client_ip.parse().unwrap(),
        41000,
        &[("j", "mx.example.com"), ("{daemon_name}", daemon_name)],
    )
    .await
    .expect("connect event");
    c.helo("client.example.net").await.expect("helo");
    c
}

/// A reply as the tests compare it: the SMTP text of a `y` reply, "continue"
/// for continue or no reply, the debug form otherwise.
pub fn reply_text(r: &Option<gatehouse::milter::Reply>) -> String {
    use gatehouse::milter::Reply;
    match r {
        Some(Reply::ReplyCode(t)) => String::from_utf8_lossy(t).into_owned(),
        Some(Reply::Continue) | None => "continue".into(),
        other => format!("{other:?}"),
    }
}

/// A normal bridgehead transaction still gets the right answers: a local
/// recipient accepted, an external one refused, the message accepted.
pub async fn still_serves(g: &Gatehouse) {
    use gatehouse::milter::Reply;
    let mut c = session(&g.endpoint, "bridgehead", "192.0.2.7").await;
    let r = c
        .transaction(&gatehouse::milter::client::Envelope {
            sender: "x@partner.example".into(),
            recipients: vec!["carol@example.com".into(), "v@elsewhere.example".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.mail, Some(Reply::Continue));
    assert_eq!(r.rcpts[0], Some(Reply::Continue));
    assert!(
        matches!(r.rcpts[1], Some(Reply::ReplyCode(_))),
        "{:?}",
        r.rcpts[1]
    );
    assert_eq!(r.end, Some(Reply::Accept));
}

/// Resident memory of a process, from /proc (KiB).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}
