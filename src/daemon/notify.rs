//! The service manager's view of the daemon (systemd `Type=notify`,
//! sd_notify(3)): `READY=1` once every listener is bound, `RELOADING=1`
//! and `READY=1` around a SIGHUP reload, `STOPPING=1` on a stop signal,
//! `STATUS=` with a one-line summary, and `WATCHDOG=1` at half the unit's
//! `WatchdogSec` while the runtime schedules tasks. Without `NOTIFY_SOCKET`
//! (not started by systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::enforcer::Enforcer;

/// Tell the service manager `states`; a failure to reach it is logged once
/// per kind of message at debug level, never an error: the daemon serves
/// either way.
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

/// Every listener is bound: the MTA may connect.
pub fn ready(enforcer: &Enforcer) {
    let status = status(enforcer);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A SIGHUP reload begins. systemd 253 and later want the monotonic clock
/// with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A stop signal arrived: sessions are being drained.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining sessions"),
    ]);
}

/// The one-line summary `systemctl status` shows.
fn status(enforcer: &Enforcer) -> String {
    let snap = enforcer.snapshot();
    let p = &snap.policy;
    let listeners = p.listeners.len() + usize::from(p.default_listener.is_some());
    let directory = if snap.directory.in_memory() {
        "static directory".to_string()
    } else if snap.directory.following() {
        "directory changes followed".to_string()
    } else {
        "directory cached".to_string()
    };
    format!(
        "serving: config version {}, {listeners} listener(s), {} mode, {directory}",
        p.version,
        p.mode.name()
    )
}

/// `WATCHDOG=1` every half `WatchdogSec`, from a task on the runtime: a
/// runtime that no longer schedules tasks (every worker stuck) stops
/// sending, and systemd restarts the daemon.
pub async fn watchdog() {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}

/// The summary again after a reload (applied or refused), with `READY=1`.
pub fn reloaded(enforcer: &Enforcer, refused: Option<&str>) {
    let status = match refused {
        None => status(enforcer),
        Some(e) => format!("{} (last reload refused: {e})", status(enforcer)),
    };
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}
