//! What systemd is told (`Type=notify`), read from a fake `NOTIFY_SOCKET`
//! (a datagram socket in a temp folder, as the service manager provides):
//! READY=1 only once the milter socket accepts connections, WATCHDOG=1 at
//! half `WATCHDOG_USEC`, RELOADING=1 (with the monotonic clock) and READY=1
//! around an applied and a refused SIGHUP reload, STOPPING=1 on SIGTERM.

mod common;

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::example_config;

/// The notifications, one datagram each, WATCHDOG=1 ones counted apart.
struct Manager {
    socket: UnixDatagram,
    watchdogs: usize,
}

impl Manager {
    /// The next notification other than WATCHDOG=1; panics after 10 s.
    fn next(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no notification within 10 s");
            self.socket.set_read_timeout(Some(left)).unwrap();
            let n = self.socket.recv(&mut buf).expect("a notification");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text == "WATCHDOG=1\n" {
                self.watchdogs += 1;
                continue;
            }
            return text;
        }
    }
}

fn kill(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid}");
}

#[test]
fn systemd_hears_ready_reloads_watchdog_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let milter = dir.path().join("gatehouse.sock");
    let config = dir.path().join("gatehouse.toml");
    let text = example_config(&format!("unix:{}", milter.display()), "");
    std::fs::write(&config, &text).unwrap();
    let mut manager = Manager {
        socket: UnixDatagram::bind(&socket_path).unwrap(),
        watchdogs: 0,
    };
    // systemd sets WATCHDOG_PID to the service's PID: the shell's PID,
    // which gatehouse keeps through exec.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" --config \"$1\"",
            env!("CARGO_BIN_EXE_gatehouse"),
        ])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();

    let ready = manager.next();
    assert!(ready.contains("READY=1\n"), "{ready:?}");
    assert!(
        ready.contains("STATUS=serving: config version") && ready.contains("listener(s)"),
        "{ready:?}"
    );
    UnixStream::connect(&milter).expect("the milter socket accepts once READY=1 is sent");

    kill(pid, "-HUP");
    let reloading = manager.next();
    assert!(reloading.contains("RELOADING=1\n"), "{reloading:?}");
    assert!(
        reloading.contains("MONOTONIC_USEC="),
        "systemd 253+ needs it: {reloading:?}"
    );
    let reloaded = manager.next();
    assert!(
        reloaded.contains("READY=1\n") && reloaded.contains("STATUS=serving"),
        "{reloaded:?}"
    );
    assert!(!reloaded.contains("refused"), "{reloaded:?}");

    std::fs::write(&config, "this is not toml [").unwrap();
    kill(pid, "-HUP");
    assert!(manager.next().contains("RELOADING=1\n"));
    let refused = manager.next();
    assert!(
        refused.contains("READY=1\n") && refused.contains("last reload refused"),
        "{refused:?}"
    );

    // The watchdog kept beating meanwhile (every 100 ms): wait for two more.
    let seen = manager.watchdogs;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    while manager.watchdogs < seen + 2 {
        assert!(Instant::now() < deadline, "no WATCHDOG=1");
        manager
            .socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let n = manager.socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1\n");
        manager.watchdogs += 1;
    }

    kill(pid, "-TERM");
    let stopping = manager.next();
    assert!(stopping.contains("STOPPING=1\n"), "{stopping:?}");
    assert!(child.wait().unwrap().success());
}

#[test]
fn without_a_notify_socket_nothing_is_sent_and_serving_is_the_same() {
    // NOTIFY_SOCKET naming nothing that listens: gatehouse serves anyway.
    let dir = tempfile::tempdir().unwrap();
    let milter = dir.path().join("gatehouse.sock");
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, example_config(&format!("unix:{}", milter.display()), "")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", dir.path().join("nobody-listens.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every line kept (the pipe stays open until gatehouse exits).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader};
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("gatehouse listens");
    UnixStream::connect(&milter).expect("serving");
    kill(child.id(), "-TERM");
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(!log.contains("ERROR"), "{log}");
}
