//! The daemon's lifecycle: logging, the runtime, serving until a stop
//! signal, reloading on SIGHUP, the periodic cache counters, and what the
//! service manager is told of it ([`notify`]).

mod notify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{self, Config, LogFormat};
use crate::enforcer::{Enforcer, Snapshot};
use crate::policy_delegation::PolicyServiceSettings;
use crate::server::ServerSettings;

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("gatehouse={}", config.log.level)));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log line that cannot be written is lost, and that is all: by
    // default the subscriber would report it with eprintln!, which panics
    // when stderr itself is the broken pipe (a journal or a log reader
    // gone), and a milter that dies tempfails every message.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}

/// Serve until SIGTERM or SIGINT; reload on SIGHUP.
pub fn run(config: Config) -> ExitCode {
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
    let directory = match config.build_directory() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "gatehouse cannot serve");
            return ExitCode::FAILURE;
        }
    };
    let enforcer = Arc::new(Enforcer::new(Snapshot {
        policy: config.policy.clone(),
        directory,
    }));
    tracing::info!(
        config = %config.path.display(),
        config_version = config.policy.version,
        listeners = config.policy.listeners.len() + usize::from(config.policy.default_listener.is_some()),
        mode = config.policy.mode.name(),
        "gatehouse starting"
    );
    let result = runtime.block_on(async {
        enforcer.snapshot().directory.start_following();
        // The handlers are installed here, before anything is bound or
        // reported ready: a signal that arrives before a task would have
        // installed its own would get the default action (SIGHUP, SIGTERM:
        // the process ends at once, sessions cut). Signals that arrive
        // before the loops below run wait for them.
        use tokio::signal::unix::{signal, SignalKind};
        let hup = signal(SignalKind::hangup());
        let stop_signals = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        tokio::spawn(log_cache_counters(enforcer.clone()));
        // One stop signal for both front ends.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        tokio::spawn(async move {
            shutdown_signal(stop_signals).await;
            notify::stopping();
            let _ = stop.send(true);
        });
        // Every listener bound before anything is served or reported ready:
        // either failing to bind stops the daemon (a listener the admin
        // configured and the MTA cannot reach is not a half-working server).
        let milter_listeners = crate::server::bind(&config.server.listen()).await?;
        let delegation_listeners = match &config.policy_service {
            Some(settings) => Some(crate::server::bind(&settings.listen).await?),
            None => None,
        };
        if let Some(m) = &config.metrics {
            let listener = crate::metrics::http::bind(m.listen).await?;
            tokio::spawn(crate::metrics::http::serve(
                listener,
                crate::metrics::registry(enforcer.clone()),
            ));
        }
        notify::ready(&enforcer);
        tokio::spawn(notify::watchdog());
        // Reloads only once ready (and never while draining), so systemd
        // hears RELOADING/READY only between READY and STOPPING.
        let reloads = reload_on_sighup(
            hup,
            config.path.clone(),
            config.server.clone(),
            config.policy_service.clone(),
            config.metrics.clone(),
            enforcer.clone(),
        );
        let until = until_stopped();
        tokio::spawn(async move {
            tokio::select! {
                () = reloads => {}
                () = until => {}
            }
        });
        let milter = crate::server::serve_milter_on(
            milter_listeners,
            config.server.clone(),
            enforcer.clone(),
            until_stopped(),
        );
        let delegation = async {
            if let (Some(listeners), Some(settings)) = (delegation_listeners, config.policy_service.clone()) {
                let service = crate::policy_delegation::PolicyService {
                    delegate: enforcer.clone(),
                    settings: settings.clone(),
                };
                crate::server::serve_on(listeners, settings.listen, Arc::new(service), until_stopped()).await
            }
        };
        tokio::join!(milter, delegation);
        Ok::<(), std::io::Error>(())
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

async fn shutdown_signal(
    signals: (
        std::io::Result<tokio::signal::unix::Signal>,
        std::io::Result<tokio::signal::unix::Signal>,
    ),
) {
    let (Ok(mut term), Ok(mut int)) = signals else {
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
async fn reload_on_sighup(
    hup: std::io::Result<tokio::signal::unix::Signal>,
    path: PathBuf,
    server: ServerSettings,
    policy_service: Option<PolicyServiceSettings>,
    metrics: Option<config::MetricsSettings>,
    enforcer: Arc<Enforcer>,
) {
    let Ok(mut hup) = hup else {
        tracing::error!("cannot install the SIGHUP handler: reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        notify::reloading();
        let old = enforcer.snapshot().policy.version;
        // Loaded and its directory built (password file, CA) before anything
        // is reported or applied: a refused reload is one line, nothing else.
        let loaded = config::load(&path).and_then(|c| c.build_directory().map(|d| (c, d)));
        match loaded {
            Ok((new, directory)) => {
                for w in &new.warnings {
                    tracing::warn!("config: {w}");
                }
                if format!("{:?}", new.server) != format!("{server:?}") {
                    tracing::warn!("[milter] settings changed; they apply after a restart");
                }
                if format!("{:?}", new.policy_service) != format!("{policy_service:?}") {
                    tracing::warn!("[policy_service] settings changed; they apply after a restart");
                }
                if new.metrics != metrics {
                    tracing::warn!("[metrics] settings changed; they apply after a restart");
                }
                let version = new.policy.version;
                for what in new.policy.removed_since(&enforcer.snapshot().policy) {
                    tracing::warn!(config_version = version, "reload removes {what}");
                }
                let running = enforcer.snapshot().directory.clone();
                let directory = if running.same_as(&directory) {
                    tracing::info!("directory settings unchanged: its cache and connections are kept");
                    running
                } else {
                    directory.adopt_stale(&running);
                    directory.start_following();
                    directory
                };
                enforcer.replace(Snapshot {
                    policy: new.policy.clone(),
                    directory,
                });
                tracing::info!(config_version = version, previous = old, "configuration reloaded");
                crate::metrics::count_reload(true);
                notify::reloaded(&enforcer, None);
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
                tracing::error!(error = %error, config_version = old, "reload refused; the running configuration stays");
                crate::metrics::count_reload(false);
                notify::reloaded(&enforcer, Some(&error));
            }
        }
    }
}
