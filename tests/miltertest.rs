//! OpenDKIM's `miltertest`, an independent milter client, drives gatehouse
//! through the Lua scripts in tests/miltertest/ (negotiation, full
//! transactions, several transactions on one connection, per-recipient replies).

mod common;

use std::process::Command;

use common::slapd::{Options, Slapd};
use common::{ldap_example_config, Gatehouse, ANY_PORT};

/// Run one script against gatehouse with the example policy, its directory
/// static (`slapd` None) or the LDAP test directory.
fn run_script(name: &str, slapd: Option<&Slapd>) {
    let g = match slapd {
        None => Gatehouse::start(""),
        Some(s) => {
            let listen = ANY_PORT.to_string();
            Gatehouse::start_with(&ldap_example_config(&listen, s, ""), &listen)
        }
    };
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
    run_script("negotiate.lua", None);
}

#[test]
fn miltertest_bridgehead_listener() {
    run_script("bridgehead.lua", None);
}

#[test]
fn miltertest_submission_listener() {
    run_script("submission.lua", None);
}

#[test]
fn miltertest_several_transactions_per_connection() {
    run_script("multi_transaction.lua", None);
}

/// The same scripts, same expectations, with the groups coming from a real slapd.
#[test]
fn miltertest_all_scripts_with_the_ldap_backend() {
    let slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    for script in ["bridgehead.lua", "submission.lua", "multi_transaction.lua"] {
        run_script(script, Some(&slapd));
    }
}
