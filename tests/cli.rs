//! The one-shot commands as an admin meets them: help texts, the messages
//! for a wrong listener or an unknown login, the rendering of a monitored
//! refusal.

mod common;

use std::process::{Command, Output};

fn gatehouse(config: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn example() -> String {
    common::example_config("inet:127.0.0.1:8890", "")
}

#[test]
fn explain_help_describes_every_option() {
    let o = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["explain", "--help"])
        .output()
        .unwrap();
    let help = stdout(&o);
    for option in [
        "--listener",
        "--login",
        "--client",
        "--from",
        "--rcpt",
        "--json",
        "--config",
    ] {
        let line = help
            .lines()
            .find(|l| {
                l.trim_start().starts_with('-')
                    && l.split_whitespace().any(|w| w.trim_end_matches(',') == option)
            })
            .unwrap_or_else(|| panic!("{option} missing from:\n{help}"));
        // "  --json    Print one JSON object…": a description after the flag.
        let described = line.split_whitespace().count() > 2
            || help
                .lines()
                .skip_while(|l| l != &line)
                .nth(1)
                .is_some_and(|next| next.starts_with("          "));
        assert!(described, "{option} has no description:\n{help}");
    }
}

#[test]
fn config_is_optional_in_the_usage_line() {
    let o = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("--help")
        .output()
        .unwrap();
    let help = stdout(&o);
    let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(!usage.contains("--config"), "shown as required: {usage}");
    assert!(
        help.contains("[default: /etc/gatehouse/gatehouse.toml]"),
        "{help}"
    );
}

#[test]
fn an_unknown_listener_lists_the_listeners() {
    let o = gatehouse(
        &example(),
        &[
            "explain",
            "--listener",
            "submision",
            "--from",
            "a@example.com",
            "--rcpt",
            "b@example.com",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("no listener named \"submision\""), "{e}");
    for name in ["\"bridgehead\"", "\"submission\"", "\"default\""] {
        assert!(e.contains(name), "{name} not listed: {e}");
    }
}

#[test]
fn explain_says_when_a_login_is_not_in_the_directory() {
    let args = |login: &str| {
        vec![
            "explain".to_string(),
            "--listener".into(),
            "submission".into(),
            "--login".into(),
            login.into(),
            "--from".into(),
            format!("{login}@example.com"),
            "--rcpt".into(),
            "carol@example.com".into(),
        ]
    };
    let run = |login: &str| {
        let a = args(login);
        stdout(&gatehouse(
            &example(),
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
    };
    let ghost = run("ghost");
    assert!(
        ghost.contains("identity: authenticated as ghost (not in the directory"),
        "{ghost}"
    );
    let alice = run("alice");
    assert!(
        alice.contains("identity: authenticated as alice (user:alice)"),
        "{alice}"
    );
    assert!(!alice.contains("not in the directory"), "{alice}");
}

#[test]
fn a_monitored_refusal_shows_the_reply_it_would_send() {
    let config = common::example_config("inet:127.0.0.1:8890", "mode = \"monitor\"");
    let o = gatehouse(
        &config,
        &[
            "explain",
            "--listener",
            "bridgehead",
            "--client",
            "203.0.113.9",
            "--from",
            "x@elsewhere.example",
            "--rcpt",
            "victim@elsewhere.example",
        ],
    );
    let out = stdout(&o);
    let rcpt = out.lines().find(|l| l.starts_with("RCPT TO:")).unwrap();
    assert!(rcpt.contains("  monitored  rule=relay  "), "{out}");
    assert!(
        rcpt.contains("reply: (not sent, monitor mode) 550 5.7.1"),
        "{out}"
    );
}
