//! OpenDKIM's `miltertest`, an independent milter client, drives gatehouse
//! through the Lua scripts in tests/miltertest/ (negotiation, full
//! transactions, several transactions on one connection, per-recipient replies).

mod common;

use std::process::Command;

use common::Gatehouse;

fn run_script(name: &str) {
    let g = Gatehouse::start("");
    let port = match &g.endpoint {
        gatehouse::milter::Endpoint::Inet(a) => a.port(),
        _ => unreachable!(),
    };
    let script = format!("{}/tests/miltertest/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("miltertest")
        .arg("-s")
        .arg(&script)
        .env("GATEHOUSE_SOCKET", format!("inet:{port}@127.0.0.1"))
        .output()
        .expect(
            "miltertest must be installed (Debian package miltertest; the README test command installs it)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{stdout}\n{stderr}\ngatehouse log:\n{}",
        out.status,
        g.log()
    );
    assert!(stdout.contains("PASS"), "{name} did not report PASS:\n{stdout}");
    let checks = stdout.lines().filter(|l| l.starts_with("ok")).count();
    assert!(checks >= 10, "{name} checked only {checks} steps");
}

#[test]
fn miltertest_negotiation() {
    run_script("negotiate.lua");
}

#[test]
fn miltertest_bridgehead_listener() {
    run_script("bridgehead.lua");
}

#[test]
fn miltertest_submission_listener() {
    run_script("submission.lua");
}

#[test]
fn miltertest_several_transactions_per_connection() {
    run_script("multi_transaction.lua");
}
