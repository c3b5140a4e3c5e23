//! Active Directory: every write gives the entry a new `uSNChanged`, the
//! domain controller's own counter. Polled every `follow_interval` with
//! `(uSNChanged>=N)` — ordinary read rights, no DirSync right ("Replicating
//! Directory Changes") needed. USNs are one DC's own: when another DC
//! answers (failover), nothing can be resumed and the cache is flushed.
//! Deleted objects are asked for with the Show Deleted control; an account
//! that may not see them (the default) still sees a deleted user's groups
//! change, and a deletion it cannot see applies at `ttl`.

use super::{FollowMethod, Resume, SessionEnd, Task};

/// USNs read per poll at most.
const USN_WINDOW: u64 = 10_000;

pub(super) async fn session(task: &Task, resume: &mut Resume) -> SessionEnd {
    let interval = task.ldap.settings().follow_interval;
    let (dc, highest) = match task.ldap.dc_state().await {
        Ok(s) => s,
        Err(e) => return SessionEnd::Retry(e.to_string()),
    };
    let mut next = match &resume.usn {
        Some((known, next)) if *known == dc => *next,
        _ => {
            // First start, or another DC: what changed before is unknowable.
            let why = if resume.usn.is_some() {
                "another domain controller answers"
            } else {
                "change polling started"
            };
            if !task.flush(why) {
                return SessionEnd::Stopped;
            }
            highest.saturating_add(1)
        }
    };
    resume.usn = Some((dc.clone(), next));
    // Deletions hidden from this account are missed: entries then keep
    // plain ttl, never ttl_while_following.
    let sees_deleted = task.ldap.sees_deleted_objects().await;
    if let Some(c) = task.caches() {
        c.following.set_complete(sees_deleted);
    }
    if !sees_deleted {
        tracing::warn!(base = %task.base, "deleted objects are hidden from the bind DN: a deletion applies at ttl, and cached entries keep ttl (not ttl_while_following)");
    }
    task.following(FollowMethod::Ad, &dc);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if task.caches().is_none() {
            return SessionEnd::Stopped;
        }
        // Up to the highest committed USN read first: a transaction still
        // under way may hold a lower USN than one already visible.
        let committed = match task.ldap.dc_state().await {
            Ok((now, committed)) if now == dc => committed,
            Ok(_) => return SessionEnd::Retry(format!("{dc} no longer answers")),
            Err(e) => return SessionEnd::Retry(e.to_string()),
        };
        if committed.saturating_add(1) < next {
            // Gone backwards: a DC restored from a backup keeps its name.
            resume.usn = None;
            return SessionEnd::Retry(format!("{dc}: highestCommittedUSN went back to {committed}"));
        }
        if committed < next {
            continue;
        }
        // Bounded windows: after a long gap, each poll reads at most
        // USN_WINDOW USNs' worth and the next one follows at once.
        let to = committed.min(next.saturating_add(USN_WINDOW - 1));
        let changed = match task.ldap.changed_since(&task.base, next, to).await {
            Ok(c) => c,
            Err(e) => return SessionEnd::Retry(e.to_string()),
        };
        // The pool may have moved to another DC between the reads: its
        // USNs say nothing about this one's.
        match task.ldap.dc_state().await {
            Ok((now, _)) if now == dc => {}
            Ok(_) => return SessionEnd::Retry(format!("{dc} no longer answers")),
            Err(e) => return SessionEnd::Retry(e.to_string()),
        }
        for (entry, deleted) in changed {
            if deleted {
                // A tombstone keeps neither the DN nor the members it had.
                if !task.flush("an object was deleted") {
                    return SessionEnd::Stopped;
                }
                continue;
            }
            match task.ldap.change_of(&entry, false).await {
                Ok(change) => {
                    if !task.apply(&change) {
                        return SessionEnd::Stopped;
                    }
                }
                Err(e) => {
                    tracing::warn!(dn = %entry.dn, error = %e, "reading a changed entry failed");
                    if !task.flush("a changed entry could not be read") {
                        return SessionEnd::Stopped;
                    }
                }
            }
        }
        next = to.saturating_add(1);
        if to < committed {
            tick.reset_immediately();
        }
        resume.usn = Some((dc.clone(), next));
    }
}
