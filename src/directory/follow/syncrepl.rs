//! RFC 4533 refreshAndPersist: the server sends what changed since the
//! cookie (everything, without one), says when the refresh is done, then
//! sends each change as it happens. A heartbeat on the same connection
//! notices a server that stopped answering (frozen, a half-open TCP
//! connection) within four times `timeout`.

use ldap3::controls::{
    parse_syncinfo, Control, ControlType, EntryState, MakeCritical, RefreshMode, SyncInfo, SyncRequest,
    SyncState,
};
use ldap3::{ResultEntry, Scope};

use super::{FollowMethod, Resume, SessionEnd, Task};

/// e-syncRefreshRequired: the cookie is too old or unknown to the server.
const SYNC_REFRESH_REQUIRED: u32 = 4096;

pub(super) async fn session(task: &Task, resume: &mut Resume) -> SessionEnd {
    let settings = task.ldap.settings();
    let (mut ldap, server) = match task.ldap.follower_connection().await {
        Ok(c) => c,
        Err(e) => return SessionEnd::Retry(e.to_string()),
    };
    let mut probe = ldap.clone();
    // A first start asks for the changes after the server's present state
    // (OpenLDAP: a cookie of the database's contextCSN) rather than for the
    // whole subtree, which a size limit refuses and which costs a full
    // transfer; what the cache holds is flushed at the end of the refresh.
    let mut fresh_start = false;
    if resume.cookie.is_none() && !resume.no_context_cookie {
        if let Some(csn) = task.ldap.context_csn(&task.base).await {
            resume.cookie = Some(format!("rid=000,csn={csn}").into_bytes());
            fresh_start = true;
        }
    }
    let resumed = resume.cookie.is_some();
    let request = SyncRequest {
        mode: RefreshMode::RefreshAndPersist,
        cookie: resume.cookie.clone(),
        reload_hint: false,
    };
    let attrs = task.ldap.watched_attributes();
    let started = ldap
        .with_controls(request.critical())
        .streaming_search(&task.base, Scope::Subtree, "(objectClass=*)", attrs)
        .await;
    let mut stream = match started {
        Ok(s) => s,
        Err(e) => return SessionEnd::Retry(format!("{server}: sync search: {e}")),
    };
    // Without a cookie the refresh is the whole subtree: nothing to apply
    // entry by entry, the cache is flushed once it is done. With one, the
    // changed entries are applied; deletions named only by entryUUID (a
    // present or delete phase) flush at the end of the refresh.
    let mut refreshing = true;
    let mut flush_after_refresh = !resumed || fresh_start;
    let mut heartbeat = tokio::time::interval(settings.timeout * 3);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Ok(Some(re)) if re.is_intermediate() => {
                    let Some(info) = sync_info(re) else {
                        return SessionEnd::Retry(format!("{server}: malformed sync info message"));
                    };
                    let (cookie, done) = match info {
                        SyncInfo::NewCookie(c) => (Some(c), false),
                        SyncInfo::RefreshDelete { cookie, refresh_done } => (cookie, refresh_done),
                        SyncInfo::RefreshPresent { cookie, refresh_done } => {
                            flush_after_refresh = true;
                            (cookie, refresh_done)
                        }
                        SyncInfo::SyncIdSet { cookie, .. } => {
                            // Entries named by UUID only (present or deleted):
                            // which cached entries they were, nobody can say.
                            if refreshing {
                                flush_after_refresh = true;
                            } else if !task.flush("entries deleted, named by entryUUID only") {
                                return SessionEnd::Stopped;
                            }
                            (cookie, false)
                        }
                    };
                    if cookie.is_some() {
                        resume.cookie = cookie;
                    }
                    if done && refreshing {
                        refreshing = false;
                        let why = if fresh_start || !resumed {
                            "change stream started"
                        } else {
                            "entries deleted while the stream was down"
                        };
                        if flush_after_refresh && !task.flush(why) {
                            return SessionEnd::Stopped;
                        }
                        task.following(FollowMethod::Syncrepl, &server);
                    }
                }
                Ok(Some(re)) => {
                    let state = sync_state(&re.1);
                    let entry = match super::super::ldap::construct(re) {
                        Ok(e) => e,
                        Err(e) => return SessionEnd::Retry(format!("{server}: {e}")),
                    };
                    let Some(state) = state else {
                        return SessionEnd::Retry(format!("{server}: entry {} without a sync state", entry.dn));
                    };
                    if state.cookie.is_some() {
                        resume.cookie = state.cookie;
                    }
                    // Present: unchanged since the cookie (a present phase).
                    if (refreshing && !resumed) || matches!(state.state, EntryState::Present) {
                        continue;
                    }
                    let deleted = matches!(state.state, EntryState::Delete);
                    if entry.dn.is_empty() {
                        if !task.flush("a change without a DN") {
                            return SessionEnd::Stopped;
                        }
                        continue;
                    }
                    let change = match task.ldap.change_of(&entry, deleted).await {
                        Ok(c) => c,
                        Err(e) => {
                            // Its members could not be read: flush rather than guess.
                            tracing::warn!(dn = %entry.dn, error = %e, "reading a changed entry failed");
                            if !task.flush("a changed entry could not be read") {
                                return SessionEnd::Stopped;
                            }
                            continue;
                        }
                    };
                    if !task.apply(&change) {
                        return SessionEnd::Stopped;
                    }
                }
                Ok(None) => {
                    let res = stream.finish().await;
                    return match res.rc {
                        SYNC_REFRESH_REQUIRED => {
                            // A made-up cookie refused: the next start is a
                            // full refresh (fresh_start is for the first try).
                            resume.cookie = None;
                            resume.no_context_cookie = fresh_start;
                            if !task.flush("the server cannot resume from the cookie") {
                                return SessionEnd::Stopped;
                            }
                            SessionEnd::Restart(format!("{server}: {}", res.text))
                        }
                        // unavailableCriticalExtension, unwillingToPerform:
                        // no syncprov on this database, or not for this account.
                        12 | 53 if refreshing => SessionEnd::Unsupported(format!(
                            "{server} refused the sync request: rc={} {}",
                            res.rc, res.text
                        )),
                        // A full refresh over the account's size limit.
                        4 if refreshing => {
                            resume.cookie = None;
                            SessionEnd::Retry(format!(
                                "{server}: the refresh of {} exceeds the size limit of the bind DN (OpenLDAP: limits dn.exact=\"BIND DN\" size=unlimited): {}",
                                task.base, res.text
                            ))
                        }
                        rc => SessionEnd::Retry(format!("{server}: sync search ended: rc={rc} {}", res.text)),
                    };
                }
                Err(e) => return SessionEnd::Retry(format!("{server}: {e}")),
            },
            _ = heartbeat.tick() => {
                let t = settings.timeout;
                let alive = tokio::time::timeout(t, probe.with_timeout(t).search("", Scope::Base, "(objectClass=*)", vec!["1.1"])).await;
                if !matches!(alive, Ok(Ok(r)) if r.1.rc == 0) {
                    return SessionEnd::Retry(format!("{server}: no answer to the heartbeat within {t:?}"));
                }
                if task.caches().is_none() {
                    return SessionEnd::Stopped;
                }
            }
        }
    }
}

/// ldap3's parsers panic on malformed BER; a directory answer must never
/// bring gatehouse down.
fn sync_info(re: ResultEntry) -> Option<SyncInfo> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse_syncinfo(re))).ok()
}

fn sync_state(controls: &[Control]) -> Option<SyncState> {
    let raw = controls
        .iter()
        .find(|c| matches!(c.0, Some(ControlType::SyncState)))?;
    raw.1.val.as_ref()?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raw.1.parse::<SyncState>())).ok()
}
