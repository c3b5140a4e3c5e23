//! The one-shot commands: `check`, `explain`, `lookup`, `replay`. Each
//! prints for an admin and returns the exit status.

mod explain;
mod replay;

use std::process::ExitCode;

use crate::config::Config;
use crate::directory::{Directory, UserKey, UNKNOWN_CHAIN};

pub use explain::{explain, ExplainArgs};
pub use replay::{replay, ReplayArgs};

/// Run one future on a small runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The configuration's directory, or the error printed.
fn directory(config: &Config) -> Result<std::sync::Arc<Directory>, ExitCode> {
    config.build_directory().map_err(|e| {
        eprintln!("gatehouse: {e}");
        ExitCode::FAILURE
    })
}

/// `gatehouse check`: exit 1 on errors, 2 on warnings only (scripts can
/// tell "valid but risky"), 0 when clean.
pub fn check(config: &Config) -> ExitCode {
    let directory = match directory(config) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let p = &config.policy;
    println!("{}: valid (config version {})", config.path.display(), p.version);
    println!(
        "  mode {}, on_directory_error {}, {} listener(s), {} restricted recipient(s), {} local domain pattern(s)",
        p.mode.name(),
        p.on_directory_error.name(),
        p.listeners.len() + usize::from(p.default_listener.is_some()),
        p.recipients.len(),
        p.local_domains.len()
    );
    let report = block_on(crate::check::check(config, &directory));
    for n in &report.notes {
        println!("  {n}");
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    for e in &report.errors {
        println!("error: {e}");
    }
    if !report.errors.is_empty() {
        ExitCode::FAILURE
    } else if !report.warnings.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// `gatehouse lookup`: a user entry and its groups as gatehouse sees them.
pub fn lookup(config: &Config, key: &str) -> ExitCode {
    let dir = match directory(config) {
        Ok(d) => d,
        Err(code) => return code,
    };
    // As a login: an entry is a login's own by any of its logins or
    // addresses, so this finds users by address (and by UPN) too.
    let (found, source) = block_on(dir.lookup(UserKey::Login(key.to_lowercase())));
    match found {
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
        Ok(None) => {
            println!("{key}: not found in the directory");
            ExitCode::FAILURE
        }
        Ok(Some(u)) => {
            println!("login: {}", u.entry.login);
            if !u.entry.other_logins.is_empty() {
                println!("other logins: {}", u.entry.other_logins.join(", "));
            }
            println!("dn: {}", u.entry.dn);
            println!("addresses: {}", u.entry.addresses.join(", "));
            if u.entry.disabled {
                println!("account: disabled (a member of no group)");
            }
            let mut groups: Vec<String> = u.groups.paths().map(|p| p.join(" > ")).collect();
            groups.sort();
            groups.dedup();
            println!("groups ({}):", groups.len());
            for g in groups {
                println!("  {g}");
            }
            if u.groups
                .paths()
                .any(|p| p.iter().any(|step| step == UNKNOWN_CHAIN))
            {
                println!(
                    "  ({UNKNOWN_CHAIN}: a member through nesting the directory reported without the chain)"
                );
            }
            println!("source: {}", dir.describe_source(source));
            ExitCode::SUCCESS
        }
    }
}
