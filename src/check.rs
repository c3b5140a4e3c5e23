//! `gatehouse check`: is this configuration safe to run? Beyond what loading
//! validates, it reaches the directory, resolves every group and user that a
//! rule names, and points out settings that lose mail or open a relay.

use crate::config::Config;
use crate::directory::{Directory, Finding, NamedGroup};
use crate::policy::{DirectoryErrorAction, SenderRef};

#[derive(Debug, Default)]
pub struct Report {
    /// The configuration must not be used as is (exit status 1).
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// What was checked, for the operator.
    pub notes: Vec<String>,
}

fn named_users(config: &Config) -> Vec<(SenderRef, String)> {
    let mut out = Vec::new();
    for r in config.policy.recipients.values() {
        for s in r.accept_from.iter().chain(&r.reject_from) {
            if matches!(s, SenderRef::User(_) | SenderRef::Sender(_)) {
                out.push((s.clone(), format!("recipient {}", r.address)));
            }
        }
    }
    out
}

pub async fn check(config: &Config, directory: &Directory) -> Report {
    let mut report = Report {
        warnings: config.warnings.clone(),
        ..Default::default()
    };
    let p = &config.policy;
    for l in p.listeners.iter().chain(p.default_listener.iter()) {
        if l.matcher.daemon_port == Some(25) && l.matcher.client.is_empty() && !l.allow_anonymous {
            report.warnings.push(format!(
                "listener {:?} receives on port 25 from anywhere with allow_anonymous = false: Internet mail to the local domains will be refused",
                l.name
            ));
        }
    }
    if p.on_directory_error == DirectoryErrorAction::Reject
        && p.restricts_recipients()
        && directory.reads_recipient_aliases()
    {
        report.warnings.push(
            "on_directory_error = \"reject\" with [[recipient]] rules and recipient_aliases on: every local recipient is looked up (is it an alias of a restricted list?), so while the directory is down all local mail is refused with 5xx; prefer \"tempfail\"".into(),
        );
    }
    if p.on_directory_error == DirectoryErrorAction::Accept {
        report.warnings.push(
            "on_directory_error = \"accept\": while the directory is down, group rules are skipped (fail open)".into(),
        );
    }
    let groups: Vec<NamedGroup> = config
        .policy
        .group_references()
        .into_iter()
        .map(|(name, used)| NamedGroup { name, used })
        .collect();
    match directory.backend().verify(&groups).await {
        Err(e) => {
            report.errors.push(format!("directory: {e}"));
            return report;
        }
        Ok(findings) => {
            for f in findings {
                match f {
                    Finding::Error(e) => report.errors.push(e),
                    Finding::Warning(w) => report.warnings.push(w),
                    Finding::Note(n) => report.notes.push(n),
                }
            }
        }
    }
    for (s, used) in named_users(config) {
        let found = match &s {
            SenderRef::User(login) => directory.user_by_login(login).await,
            SenderRef::Sender(a) if p.is_local(a) => directory.user_by_address(&a.to_string()).await,
            _ => continue,
        };
        match found {
            Err(e) => report.errors.push(format!("{s} ({used}): {e}")),
            Ok(None) if matches!(s, SenderRef::User(_)) => report
                .errors
                .push(format!("{s} ({used}) is not in the directory")),
            Ok(None) => report
                .warnings
                .push(format!("{s} ({used}) is a local address no user owns")),
            Ok(Some(_)) => {}
        }
    }
    report
}
