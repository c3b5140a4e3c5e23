//! The directory change follower (`[directory.ldap] follow_changes`): one
//! task per followed subtree, on its own connection, that hears what the
//! server changed and drops from the cache exactly what a change can affect
//! (see `Caches::apply`), so a revocation applies on the next transaction
//! instead of after the cache TTL.
//!
//! - `syncrepl` ([`syncrepl`]): RFC 4533 refreshAndPersist (OpenLDAP's
//!   syncprov, 389-ds); resumed from the sync cookie after a break.
//! - `ad` ([`usn`]): Active Directory's `uSNChanged`, polled every
//!   `follow_interval` with ordinary read rights; resumed from the last USN
//!   while the same domain controller answers.
//! - `auto`: whichever the server's root DSE announces.
//!
//! Faults: while a subtree is not followed the cache is back on `ttl` at
//! once ([`cache::Following`](super::cache::Following)); the task reconnects
//! with back-off (1 s doubling to 30 s); a gap it cannot account for change
//! by change (no resumable cookie, another DC, deletions named only by
//! UUID) flushes the cache. State changes are logged once each.

mod syncrepl;
mod usn;

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::ldap::LdapBackend;
use super::{dn_key, Backend, Caches};

/// `follow_changes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowMethod {
    Off,
    Syncrepl,
    Ad,
    Auto,
}

impl FollowMethod {
    pub fn name(self) -> &'static str {
        match self {
            FollowMethod::Off => "off",
            FollowMethod::Syncrepl => "syncrepl",
            FollowMethod::Ad => "ad",
            FollowMethod::Auto => "auto",
        }
    }
}

/// The LDAP Content Synchronization request control (RFC 4533).
pub const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";

/// One changed or deleted entry, as far as the cache cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub dn: String,
    /// A group's member DNs (`member`, `uniqueMember`), as it is now.
    pub members: Vec<String>,
    /// A posixGroup's `memberUid` values.
    pub member_logins: Vec<String>,
    /// The entry's logins, addresses and group name, lowercased.
    pub names: Vec<String>,
}

impl Change {
    /// Its members' DNs, as [`dn_key`]s.
    pub fn member_keys(&self) -> HashSet<String> {
        self.members.iter().map(|d| dn_key(d).into_owned()).collect()
    }
}

/// The subtrees a backend's follower watches: `base_dn`, and
/// `group_base_dn` when it is outside it. Empty when nothing is followed.
pub fn subtrees(backend: &dyn Backend) -> Vec<String> {
    let Some(ldap) = backend.as_any().downcast_ref::<LdapBackend>() else {
        return Vec::new();
    };
    let s = ldap.settings();
    if s.follow_changes == FollowMethod::Off {
        return Vec::new();
    }
    let base = dn_key(&s.base_dn).into_owned();
    let groups = dn_key(&s.group_base_dn).into_owned();
    let mut out = vec![s.base_dn.clone()];
    if groups != base && !groups.ends_with(&format!(",{base}")) {
        out.push(s.group_base_dn.clone());
    }
    out
}

/// The running follower; dropping it stops its tasks.
pub struct Follower {
    tasks: Vec<AbortHandle>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Follower {
    /// Spawn one task per subtree (inside a tokio runtime); `None` when the
    /// settings follow nothing.
    pub(crate) fn start(backend: &dyn Backend, caches: &Arc<Caches>) -> Option<Follower> {
        let ldap = backend.as_any().downcast_ref::<LdapBackend>()?;
        let tasks = subtrees(backend)
            .into_iter()
            .enumerate()
            .map(|(slot, base)| {
                let task = Task {
                    slot,
                    base,
                    ldap: ldap.follower_copy(),
                    caches: Arc::downgrade(caches),
                };
                tokio::spawn(task.run()).abort_handle()
            })
            .collect::<Vec<_>>();
        (!tasks.is_empty()).then_some(Follower { tasks })
    }
}

/// How a session with the server ended.
pub(super) enum SessionEnd {
    /// Broken or refused: back off, then resume.
    Retry(String),
    /// The server cannot resume from what we hold: start over at once (the
    /// session flushed the cache).
    Restart(String),
    /// The directory is gone (a reload replaced it).
    Stopped,
    /// The server refuses the method (no syncprov, not for this account).
    Unsupported(String),
}

/// What a session keeps across reconnections to resume from.
#[derive(Default)]
pub(super) struct Resume {
    /// syncrepl: the last sync cookie.
    pub cookie: Option<Vec<u8>>,
    /// syncrepl: the server refused a cookie made from its contextCSN.
    pub no_context_cookie: bool,
    /// ad: the domain controller (`dsServiceName`) and the next USN to read.
    pub usn: Option<(String, u64)>,
}

struct Task {
    slot: usize,
    base: String,
    ldap: LdapBackend,
    caches: Weak<Caches>,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Task {
    async fn run(self) {
        let configured = self.ldap.settings().follow_changes;
        let mut resume = Resume::default();
        let mut backoff = FIRST_BACKOFF;
        let mut down_logged = false;
        let mut refused_logged = false;
        loop {
            let (method, end) = match self.method(configured).await {
                Ok(Some(FollowMethod::Syncrepl)) => (
                    FollowMethod::Syncrepl,
                    syncrepl::session(&self, &mut resume).await,
                ),
                Ok(Some(_)) => (FollowMethod::Ad, usn::session(&self, &mut resume).await),
                Ok(None) => (
                    configured,
                    SessionEnd::Unsupported(
                        "follow_changes = \"auto\": the server offers neither syncrepl nor Active Directory's uSNChanged".into(),
                    ),
                ),
                Err(e) => (configured, SessionEnd::Retry(e.to_string())),
            };
            let was_up = self.is_up();
            self.set_up(false);
            match end {
                SessionEnd::Stopped => return,
                SessionEnd::Unsupported(why) => {
                    // Logged once; asked again every MAX_BACKOFF, quietly, so
                    // that enabling syncprov later needs no reload.
                    if !refused_logged {
                        tracing::error!(base = %self.base, method = method.name(), reason = %why, "cannot follow directory changes; changes apply when cached entries expire (ttl)");
                        refused_logged = true;
                    } else {
                        tracing::debug!(base = %self.base, reason = %why, "change stream still refused");
                    }
                    tokio::time::sleep(MAX_BACKOFF).await;
                }
                SessionEnd::Restart(why) => {
                    tracing::info!(base = %self.base, method = method.name(), reason = %why, retry_in = ?backoff, "directory change stream restarts from scratch; cache flushed");
                    // Backed off too: a server that refuses every cookie must
                    // not get a reconnection and a flush in a tight loop.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                SessionEnd::Retry(why) => {
                    if was_up {
                        backoff = FIRST_BACKOFF;
                        down_logged = false;
                    }
                    if !down_logged {
                        tracing::warn!(base = %self.base, method = method.name(), error = %why, retry_in = ?backoff, "not following directory changes: cached entries expire after ttl until it is back");
                        down_logged = true;
                    } else {
                        tracing::debug!(base = %self.base, error = %why, retry_in = ?backoff, "directory change stream still down");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The configured method, or for `auto` the one the server offers.
    async fn method(
        &self,
        configured: FollowMethod,
    ) -> Result<Option<FollowMethod>, super::DirectoryUnavailable> {
        match configured {
            FollowMethod::Auto => self.ldap.follow_method_offered().await,
            m => Ok(Some(m)),
        }
    }

    fn caches(&self) -> Option<Arc<Caches>> {
        self.caches.upgrade()
    }

    fn is_up(&self) -> bool {
        self.caches().is_some_and(|c| c.following.is_up(self.slot))
    }

    fn set_up(&self, up: bool) {
        if let Some(c) = self.caches() {
            c.following.set(self.slot, up);
        }
    }

    /// The subtree is followed from now on: logged once per (re)connection.
    fn following(&self, method: FollowMethod, server: &str) {
        self.set_up(true);
        tracing::info!(base = %self.base, method = method.name(), server = %server, "following directory changes");
    }

    /// Drop what `change` can affect; `false` when the directory is gone.
    fn apply(&self, change: &Change) -> bool {
        let Some(caches) = self.caches() else {
            return false;
        };
        let (users, recipients) = caches.apply(change);
        tracing::debug!(dn = %change.dn, users, recipients, "directory change followed");
        true
    }

    /// Drop everything; `false` when the directory is gone.
    fn flush(&self, why: &str) -> bool {
        let Some(caches) = self.caches() else {
            return false;
        };
        let dropped = caches.flush();
        tracing::info!(base = %self.base, reason = why, dropped, "directory cache flushed");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::cache::{Cache, CacheSettings, Following};
    use crate::directory::{ResolvedUser, UserKey};
    use std::time::Instant;

    fn resolved(login: &str, groups: &[&str]) -> Arc<ResolvedUser> {
        let (dn, address) = (
            format!("uid={login},ou=people,dc=x"),
            format!("{login}@x.example"),
        );
        ResolvedUser::for_test(login, &dn, &[&address], groups)
    }

    async fn caches_with(users: &[(&str, &[&str])]) -> Caches {
        let following = Arc::new(Following::new(1));
        let c = Caches {
            users: Cache::new(CacheSettings::default()),
            restrictions: Cache::new(CacheSettings::default()),
            following,
            changes_followed: Default::default(),
            flushes: Default::default(),
            group_names: Default::default(),
            group_names_reading: Default::default(),
            group_names_generation: Default::default(),
            rule_groups: vec!["relay".into()],
        };
        for (login, groups) in users {
            let u = resolved(login, groups);
            let _ = c
                .users
                .get_or_fetch(&UserKey::Login(login.to_string()), Instant::now(), || async {
                    Ok(Some(u))
                })
                .await;
        }
        let _ = c
            .users
            .get_or_fetch(&UserKey::Login("nobody".into()), Instant::now(), || async {
                Ok(None)
            })
            .await;
        c
    }

    const RELAY: &str = "cn=Relay,ou=groups,dc=x";
    const SUB: &str = "cn=sub,ou=groups,dc=x";

    #[tokio::test]
    async fn a_group_change_drops_exactly_the_users_whose_membership_it_changes() {
        let c = caches_with(&[
            ("alice", &[RELAY, "relay"]),
            ("bob", &[RELAY, "relay"]),
            ("carol", &[SUB, "sub", RELAY, "relay"]),
            ("dave", &[]),
        ])
        .await;
        assert_eq!(c.users.len(), 5);
        // alice removed; bob stays; carol stays through sub; spelled as the
        // server stores it, not as memberOf did.
        let change = Change {
            dn: "CN=Relay, OU=groups, DC=x".into(),
            members: vec!["uid=bob,ou=people,dc=x".into(), "cn=SUB,ou=groups,dc=x".into()],
            ..Change::default()
        };
        let (users, _) = c.apply(&change);
        assert_eq!(users, 2, "alice and the negative entry");
        let left: Vec<String> = ["alice", "bob", "carol", "dave"]
            .into_iter()
            .filter(|l| contains(&c, l))
            .map(String::from)
            .collect();
        assert_eq!(left, ["bob", "carol", "dave"]);
        // dave added: his cached entry does not name the group, the list does.
        let change = Change {
            members: vec!["uid=dave,ou=people,dc=x".into(), "uid=bob,ou=people,dc=x".into()],
            ..change
        };
        c.apply(&change);
        let left: Vec<&str> = ["bob", "carol", "dave"]
            .into_iter()
            .filter(|l| contains(&c, l))
            .collect();
        assert_eq!(left, ["bob"], "dave added; carol's sub no longer listed");
        // A user entry changed: dropped by its DN; one cached under an
        // address it now has, too.
        let c = caches_with(&[("alice", &[]), ("bob", &[])]).await;
        c.apply(&Change {
            dn: "uid=alice,ou=people,dc=x".into(),
            names: vec!["bob@x.example".into()],
            ..Change::default()
        });
        assert_eq!(c.users.len(), 0);
        // Renamed, DN kept (the name is not its RDN): its members go, since
        // rules match the name.
        let c = caches_with(&[("alice", &[RELAY, "relay"]), ("bob", &[])]).await;
        c.apply(&Change {
            dn: RELAY.into(),
            members: vec!["uid=alice,ou=people,dc=x".into()],
            names: vec!["blocked".into()],
            ..Change::default()
        });
        assert!(!contains(&c, "alice") && contains(&c, "bob"));
        c.apply(&Change {
            dn: "uid=bob,ou=people,dc=x".into(),
            ..Change::default()
        });
        // A group without readable members: all its cached members go.
        let c = caches_with(&[("alice", &[RELAY]), ("bob", &[])]).await;
        c.apply(&Change {
            dn: RELAY.into(),
            ..Change::default()
        });
        assert!(!contains(&c, "alice") && contains(&c, "bob"));
    }

    fn contains(c: &Caches, login: &str) -> bool {
        c.users.contains(&UserKey::Login(login.to_string()))
    }

    #[test]
    fn following_is_up_only_while_every_subtree_is() {
        let f = crate::directory::cache::Following::new(2);
        assert!(f.since().is_none());
        f.set(0, true);
        assert!(f.since().is_none(), "one of two subtrees");
        f.set(1, true);
        assert!(f.since().is_some());
        f.set(0, false);
        assert!(f.since().is_none());
    }

    #[tokio::test]
    async fn a_change_to_what_a_rule_group_name_means_forgets_the_reading() {
        let c = caches_with(&[("alice", &[RELAY]), ("dave", &["other"])]).await;
        let read = || {
            let mut index = crate::directory::GroupNames::default();
            index.entries.insert("relay".into(), vec![RELAY.into()]);
            *c.group_names.lock().unwrap() = Some((Instant::now(), Arc::new(index)));
        };
        let kept = || c.group_names.lock().unwrap().is_some();
        read();
        for unrelated in [
            Change {
                dn: "cn=other,ou=groups,dc=x".into(),
                names: vec!["other".into()],
                ..Change::default()
            },
            // A membership change of the group itself (alice stays in it).
            Change {
                dn: RELAY.into(),
                names: vec!["relay".into()],
                members: vec!["uid=alice,ou=people,dc=x".into()],
                ..Change::default()
            },
        ] {
            c.apply(&unrelated);
            assert!(kept(), "{unrelated:?}");
            assert!(contains(&c, "alice"), "{unrelated:?}");
        }
        // A second group of that name, with nobody cached in it: what the
        // name means changed, so the members of what it meant are settled
        // again (alice), the others stay (dave).
        c.apply(&Change {
            dn: "cn=relay,ou=projects,dc=x".into(),
            names: vec!["relay".into()],
            ..Change::default()
        });
        assert!(!kept());
        assert!(!contains(&c, "alice") && contains(&c, "dave"));
        // The group itself renamed, or deleted.
        for change in [
            Change {
                dn: "CN=Relay, OU=groups, DC=x".into(),
                names: vec!["outbound".into()],
                ..Change::default()
            },
            Change {
                dn: RELAY.into(),
                ..Change::default()
            },
        ] {
            read();
            c.apply(&change);
            assert!(!kept(), "{change:?}");
        }
        read();
        c.flush();
        assert!(!kept(), "a gap");
    }
}
