//! The `gatehouse` command: serve, check a configuration, explain a decision,
//! look a user up.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use gatehouse::config::{self, Config, LogFormat};
use gatehouse::directory::{Source, UserKey};
use gatehouse::enforcer::{self, Enforcer, Envelope, Snapshot};
use gatehouse::policy::{Action, Address, Decision, SubjectKind};

const DEFAULT_CONFIG: &str = "/etc/gatehouse/gatehouse.toml";

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "SMTP access-control milter for Postfix and Sendmail"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve milter connections (the default).
    Run,
    /// Validate the configuration and report risky settings; exit 1 on errors.
    Check,
    /// Dry run: the decision for each recipient and the rule behind it.
    Explain {
        #[arg(long)]
        listener: String,
        /// SASL login; omit for an anonymous session.
        #[arg(long)]
        login: Option<String>,
        /// Client address (matters for trusted networks).
        #[arg(long)]
        client: Option<IpAddr>,
        /// Envelope sender; '<>' is the null sender.
        #[arg(long)]
        from: String,
        #[arg(long, num_args = 1.., required = true)]
        rcpt: Vec<String>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a user entry and its groups (nested, with the path) as gatehouse sees them.
    Lookup {
        /// A login or an address.
        key: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config),
        Command::Check => check(&config),
        Command::Explain {
            listener,
            login,
            client,
            from,
            rcpt,
            json,
        } => explain(&config, &listener, login.as_deref(), client, &from, &rcpt, json),
        Command::Lookup { key } => lookup(&config, &key),
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("gatehouse={}", config.log.level)));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}

fn snapshot(config: &Config) -> Snapshot {
    Snapshot {
        policy: config.policy.clone(),
        directory: config.directory.clone(),
    }
}

fn run(config: Config) -> ExitCode {
    init_logging(&config);
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let enforcer = Arc::new(Enforcer::new(snapshot(&config)));
    tracing::info!(
        config = %config.path.display(),
        config_version = config.policy.version,
        listeners = config.policy.listeners.len() + usize::from(config.policy.default_listener.is_some()),
        mode = config.policy.mode.name(),
        "gatehouse starting"
    );
    let result = runtime.block_on(async {
        tokio::spawn(reload_on_sighup(
            config.path.clone(),
            config.server.clone(),
            enforcer.clone(),
        ));
        tokio::spawn(log_cache_counters(enforcer.clone()));
        gatehouse::server::serve(config.server.clone(), enforcer, shutdown_signal()).await
    });
    match result {
        Ok(()) => {
            tracing::info!("gatehouse stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "gatehouse cannot serve");
            ExitCode::FAILURE
        }
    }
}

/// Every five minutes, the directory cache counters (when they changed), so
/// an admin can size the cache and see outages being bridged.
async fn log_cache_counters(enforcer: Arc<Enforcer>) {
    let mut last = None;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
    tick.tick().await;
    loop {
        tick.tick().await;
        let snap = enforcer.snapshot();
        let Some(now) = snap.directory.counters() else {
            continue;
        };
        if last != Some(now) {
            let [hits, misses, queries, errors, stale] = now;
            tracing::info!(
                hits,
                misses,
                queries,
                errors,
                stale_served = stale,
                config_version = snap.policy.version,
                "directory cache"
            );
            last = Some(now);
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// SIGHUP: load the file again; a valid one applies to new transactions, an
/// invalid one is refused and the running one keeps serving.
async fn reload_on_sighup(path: PathBuf, server: gatehouse::server::ServerSettings, enforcer: Arc<Enforcer>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler: reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        let old = enforcer.snapshot().policy.version;
        match config::load(&path) {
            Ok(new) => {
                for w in &new.warnings {
                    tracing::warn!("config: {w}");
                }
                if format!("{:?}", new.server) != format!("{server:?}") {
                    tracing::warn!("[milter] settings changed; they apply after a restart");
                }
                let version = new.policy.version;
                for what in new.policy.removed_since(&enforcer.snapshot().policy) {
                    tracing::warn!(config_version = version, "reload removes {what}");
                }
                let mut next = snapshot(&new);
                let running = enforcer.snapshot().directory.clone();
                if running.same_as(&next.directory) {
                    tracing::info!("directory settings unchanged: its cache and connections are kept");
                    next.directory = running;
                } else {
                    next.directory.adopt_stale(&running);
                }
                enforcer.replace(next);
                tracing::info!(config_version = version, previous = old, "configuration reloaded");
            }
            Err(e) => {
                // One event, one line: the parser's message has a snippet over several.
                let error = e
                    .to_string()
                    .split('\n')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                tracing::error!(error = %error, config_version = old, "reload refused; the running configuration stays")
            }
        }
    }
}

fn check(config: &Config) -> ExitCode {
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
    let report = block_on(gatehouse::check::check(config));
    for n in &report.notes {
        println!("  {n}");
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    for e in &report.errors {
        println!("error: {e}");
    }
    // 1: errors; 2: warnings only (scripts can tell "valid but risky"); 0: clean.
    if !report.errors.is_empty() {
        ExitCode::FAILURE
    } else if !report.warnings.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn explain(
    config: &Config,
    listener: &str,
    login: Option<&str>,
    client: Option<IpAddr>,
    from: &str,
    rcpts: &[String],
    json: bool,
) -> ExitCode {
    let snap = snapshot(config);
    let policy = &*snap.policy;
    let Some(id) = (0..policy.listeners.len())
        .map(gatehouse::policy::ListenerId::Index)
        .chain(
            policy
                .default_listener
                .iter()
                .map(|_| gatehouse::policy::ListenerId::Default),
        )
        .find(|id| policy.listener_by_id(*id).name.eq_ignore_ascii_case(listener))
    else {
        eprintln!(
            "gatehouse: no listener named {listener:?} in {}",
            config.path.display()
        );
        return ExitCode::FAILURE;
    };
    let sender = enforcer::sender_address(policy, from);
    let env = Envelope {
        listener,
        client,
        login,
        sender: sender.as_ref(),
    };
    let x = block_on(enforcer::explain(&snap, id, &env, rcpts));
    let render = |d: &Decision, rcpt: Option<&Address>| -> (String, String) {
        let verdict = enforcer::verdict_for(policy, d, rcpt);
        let reply = match (&verdict, d.reply_kind()) {
            (gatehouse::milter::Verdict::Reply(b), _) => String::from_utf8_lossy(b).into_owned(),
            (_, Some(k)) if d.monitored => format!(
                "(monitor) {}",
                policy
                    .replies
                    .get(k)
                    .render(rcpt.map(|r| r.to_string()).as_deref())
            ),
            _ => "continue".into(),
        };
        let action = if d.monitored { "accept" } else { d.action_name() };
        (action.to_string(), reply)
    };
    let kind = match x.subject.kind {
        SubjectKind::Anonymous => "anonymous",
        SubjectKind::Authenticated => "authenticated",
        SubjectKind::Trusted => "trusted",
    };
    let user = x.subject.user.as_ref().ok().and_then(|u| u.as_ref());
    if json {
        let decision_json = |d: &Decision, rcpt: Option<&Address>| {
            let (action, reply) = render(d, rcpt);
            serde_json::json!({"action": action, "reply": reply, "rule": d.rule, "monitored": d.monitored, "path": d.path})
        };
        let recipients: Vec<_> = x
            .rcpts
            .iter()
            .map(|j| {
                let mut v = decision_json(&j.decision, Some(&j.shown));
                v["address"] = serde_json::Value::String(j.shown.to_string());
                v
            })
            .collect();
        let out = serde_json::json!({
            "listener": policy.listener_by_id(id).name,
            "config_version": policy.version,
            "identity": {
                "kind": kind,
                "login": x.subject.login,
                "client": client.map(|c| c.to_string()),
                "sender": sender.as_ref().map(|s| s.to_string()).unwrap_or_else(|| "<>".into()),
                "user": user.map(|u| u.entry.dn.clone()),
                "directory_error": x.subject.user.as_ref().err().map(|e| e.to_string()),
            },
            "mail": decision_json(&x.mail, None),
            "recipients": recipients,
        });
        println!("{out}");
        return ExitCode::SUCCESS;
    }
    println!("listener: {}", policy.listener_by_id(id).name);
    println!(
        "identity: {kind}{}{}",
        x.subject
            .login
            .as_deref()
            .map(|l| format!(" as {l}"))
            .unwrap_or_default(),
        user.map(|u| format!(" ({})", u.entry.dn)).unwrap_or_default()
    );
    let (action, reply) = render(&x.mail, None);
    println!(
        "MAIL FROM:<{}>  {action}  rule={}  reply: {reply}",
        sender.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        x.mail.rule
    );
    if x.mail.action != Action::Accept && !x.mail.monitored {
        println!("  (no recipient is judged after a refused MAIL)");
    }
    for j in &x.rcpts {
        let (a, d) = (&j.shown, &j.decision);
        let (action, reply) = render(d, Some(a));
        println!("RCPT TO:<{a}>  {action}  rule={}  reply: {reply}", d.rule);
        if !d.path.is_empty() {
            println!("  path: {}", d.path.join(" > "));
        }
    }
    ExitCode::SUCCESS
}

/// Run one future on a small runtime (for the one-shot commands).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn lookup(config: &Config, key: &str) -> ExitCode {
    let dir = &*config.directory;
    let key_kind = if key.contains('@') {
        UserKey::Address(key.to_lowercase())
    } else {
        UserKey::Login(key.to_lowercase())
    };
    let (found, source) = block_on(dir.lookup(key_kind));
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
            println!("dn: {}", u.entry.dn);
            println!("addresses: {}", u.entry.addresses.join(", "));
            // Each group is listed once (it is indexed by name and by DN).
            let mut groups: Vec<String> = u.groups.iter().map(|(_, p)| p.join(" > ")).collect();
            groups.sort();
            groups.dedup();
            println!("groups ({}):", groups.len());
            for g in groups {
                println!("  {g}");
            }
            let from = match (dir, source) {
                (gatehouse::directory::Directory::Static(_), _) => "static directory (configuration file)",
                (_, Source::Cache) => "cache",
                (_, Source::Stale) => "cache, expired (directory unavailable)",
                (_, Source::Directory) => "directory server",
            };
            println!("source: {from}");
            ExitCode::SUCCESS
        }
    }
}
