//! The load generator against the real binary: both connection modes and
//! the hold mode run, count every transaction, and report no error.

mod common;

use std::process::Command;

use common::Gatehouse;

fn load(g: &Gatehouse, args: &[&str]) -> String {
    let socket = g.endpoint.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse-load"))
        .args(["--socket", &socket])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn result_line(out: &str) -> &str {
    out.lines()
        .rev()
        .find(|l| l.starts_with("RESULT "))
        .expect("a RESULT line")
}

#[test]
fn reused_and_fresh_connections_and_hold() {
    let g = Gatehouse::start("");
    let out = load(&g, &["--concurrency", "4", "--transactions", "200"]);
    let r = result_line(&out);
    assert!(
        r.contains("transactions=200 accepted=200 rejected=0 tempfailed=0 errors=0"),
        "{r}"
    );
    let out = load(
        &g,
        &["--concurrency", "3", "--transactions", "60", "--fresh-connection"],
    );
    let r = result_line(&out);
    assert!(r.contains("transactions=60") && r.ends_with("errors=0"), "{r}");
    assert!(out.contains("fresh connection per transaction"));
    let out = load(&g, &["--hold", "20", "--hold-seconds", "1"]);
    assert!(out.contains("HOLD connections=20"), "{out}");
    // The default envelope (alice to a restricted list and an external
    // recipient) is accepted: no refusal was logged.
    assert_eq!(g.log_count("rejected"), 0, "{}", g.log());
    // A refused transaction is still a completed transaction, not an error.
    let out = load(
        &g,
        &[
            "--transactions",
            "5",
            "--login",
            "",
            "--daemon-name",
            "submission",
        ],
    );
    let r = result_line(&out);
    assert!(
        r.contains("transactions=5 accepted=0 rejected=5 tempfailed=0 errors=0"),
        "{r}"
    );
    assert!(g.log_count("rule=\"anonymous_access\"") >= 5);
}

#[test]
fn an_unreachable_socket_is_an_error_not_a_hang() {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse-load"))
        .args([
            "--socket",
            "inet:127.0.0.1:1",
            "--transactions",
            "3",
            "--concurrency",
            "1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(result_line(&stdout).contains("transactions=0"), "{stdout}");
    assert!(!result_line(&stdout).ends_with("errors=0"));
}
