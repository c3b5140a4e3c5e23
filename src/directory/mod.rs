//! Who is who and who is in which group. Every lookup the policy needs goes
//! through [`Directory`], a layer over one [`Backend`]: a backend that
//! answers from memory (the static one, from the configuration file) is asked
//! directly; any other answers through the shared [`cache::Cache`]. Nothing
//! outside this module talks to LDAP.

mod backend;
pub mod cache;
pub mod follow;
pub mod ldap;
mod static_dir;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use backend::{Answer, Backend, Finding, NamedGroup, Pending};
pub use cache::{CacheSettings, Source, UserKey};
pub use static_dir::{StaticDirectory, StaticGroup, StaticUser};

/// One user entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserEntry {
    /// Login as stored (the static backend's `login`, LDAP's uid): how the
    /// user is named in logs and paths.
    pub login: String,
    /// The entry's other logins (LDAP: the values of the further
    /// `login_attribute`s, e.g. Active Directory's `userPrincipalName`, and
    /// the down-level `DOMAIN\login`).
    pub other_logins: Vec<String>,
    /// Distinguished name (LDAP) or `user:LOGIN` (static).
    pub dn: String,
    /// Addresses that are this user's own, lowercased.
    pub addresses: Vec<String>,
    /// Group DNs read from the entry's memberOf attribute (LDAP `memberof`
    /// mode; the Active Directory modes read it to find membership chains).
    pub member_of: Vec<String>,
    /// A disabled account (Active Directory `userAccountControl` bit 0x2):
    /// a member of no group, whatever its entry lists.
    pub disabled: bool,
}

impl UserEntry {
    /// Whether this entry is `key`'s own: its login attribute equals the
    /// login, or one of its addresses equals the login or address, compared
    /// ASCII case-insensitively, nothing trimmed, no Unicode folding.
    pub fn is_own(&self, key: &UserKey) -> bool {
        let has_address = |a: &str| self.addresses.iter().any(|own| own.eq_ignore_ascii_case(a));
        match key {
            UserKey::Login(l) => {
                self.login.eq_ignore_ascii_case(l)
                    || self.other_logins.iter().any(|o| o.eq_ignore_ascii_case(l))
                    || has_address(l)
            }
            UserKey::Address(a) => has_address(a),
        }
    }
}

/// Stands in a membership path for the groups between the user and a group
/// the directory reported as a transitive membership without its chain.
pub const UNKNOWN_CHAIN: &str = "…";

/// A user's groups, nested included. Keys are lowercased group names (and DNs
/// where the backend has them); each value is the membership path from the
/// user to that group, for `explain` and the logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memberships {
    paths: HashMap<String, Arc<[String]>>,
}

impl Memberships {
    pub fn insert(&mut self, key: &str, path: Arc<[String]>) {
        self.paths.entry(key.to_lowercase()).or_insert(path);
    }

    /// The membership path to `group` (by name or DN, any case), if a member.
    pub fn path_to(&self, group: &str) -> Option<&Arc<[String]>> {
        // Asked for every group of every rule on every transaction: a name
        // already in lower case (as configured names usually are) costs no
        // allocation.
        if group.chars().any(char::is_uppercase) {
            self.paths.get(&group.to_lowercase())
        } else {
            self.paths.get(group)
        }
    }

    pub fn contains(&self, group: &str) -> bool {
        self.path_to(group).is_some()
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<[String]>)> {
        self.paths.iter()
    }
}

/// A resolved user with groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub entry: UserEntry,
    pub groups: Memberships,
}

/// The directory could not answer, or answered with something unusable.
/// Never to be read as "unknown user" or "not a member".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {msg}", kind = .1.describe(), msg = .0)]
pub struct DirectoryUnavailable(pub String, pub Fault);

/// Whether waiting can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Server down, slow, busy: retry, serve stale, follow `on_directory_error`.
    Outage,
    /// The server answered, but no safe decision follows from it (two entries
    /// for one login, a refused search, a malformed entry): a tempfail
    /// whatever `on_directory_error` says, never an accept, and logged as an
    /// error for the admin to fix.
    Permanent,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::Outage => "directory unavailable",
            Fault::Permanent => "directory answer unusable",
        }
    }
}

impl DirectoryUnavailable {
    pub fn outage(msg: impl Into<String>) -> Self {
        DirectoryUnavailable(msg.into(), Fault::Outage)
    }

    pub fn permanent(msg: impl Into<String>) -> Self {
        DirectoryUnavailable(msg.into(), Fault::Permanent)
    }

    pub fn is_permanent(&self) -> bool {
        self.1 == Fault::Permanent
    }
}

/// A recipient's own directory entry: its addresses, and the delivery
/// restrictions stored on it (Exchange: `msExchRequireAuthToSendTo`,
/// `authOrig`, `unauthOrig`, `dLMemSubmitPerms`, `dLMemRejectPerms`; values
/// are DNs), empty when those are not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientEntry {
    pub dn: String,
    /// Every address of the entry (`mail`, SMTP `proxyAddresses` …),
    /// lowercased: a `[[recipient]]` rule on one of them holds for all.
    pub addresses: Vec<String>,
    pub require_authenticated: bool,
    pub accept_senders: Vec<String>,
    pub reject_senders: Vec<String>,
    pub accept_groups: Vec<String>,
    pub reject_groups: Vec<String>,
}

impl RecipientEntry {
    pub fn is_empty(&self) -> bool {
        !self.require_authenticated
            && self.accept_senders.is_empty()
            && self.reject_senders.is_empty()
            && self.accept_groups.is_empty()
            && self.reject_groups.is_empty()
    }
}

/// The directory of one configuration generation: a backend, and the
/// caches in front of it unless it answers from memory.
pub struct Directory {
    backend: Box<dyn Backend>,
    caches: Option<Arc<Caches>>,
    /// The change follower's tasks, stopped with this directory (a reload
    /// that replaces it, the daemon's end).
    follower: Mutex<Option<follow::Follower>>,
}

pub(crate) struct Caches {
    users: cache::Cache<UserKey>,
    /// Recipients' stored restrictions, by lowercased address.
    restrictions: cache::Cache<String, RecipientEntry>,
    following: Arc<cache::Following>,
    /// Changes applied and flushes made by the follower.
    changes_followed: std::sync::atomic::AtomicU64,
    flushes: std::sync::atomic::AtomicU64,
}

impl Caches {
    /// Drop what one changed (or deleted) entry can affect: the user whose
    /// entry it is; for a group, each user whose membership in it differs
    /// between the cached answer and the group's member list as it is now
    /// (directly or through a cached group now listed as a member; a group
    /// without readable members counts as empty, so its cached members are
    /// all dropped), and each member who knows it under a name it no longer
    /// has (a rename that kept the DN); entries cached under one of its logins or addresses;
    /// every "no such user" and unusable answer (the change may have created
    /// the entry or resolved an ambiguity). Groups nesting it change for a
    /// user only when its membership in it does.
    pub(crate) fn apply(&self, change: &follow::Change) -> (usize, usize) {
        self.changes_followed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dn = follow::dn_key(&change.dn);
        let members = change.member_keys();
        let names = &change.names;
        let users = self.users.invalidate(|_, value| match value {
            Ok(Some(u)) => {
                let own = follow::dn_key(&u.entry.dn);
                let was = u
                    .groups
                    .iter()
                    .any(|(g, _)| g.contains('=') && follow::dn_key(g) == dn);
                // Group keys are names and DNs; only DNs (with `=`) can be listed.
                let now = members.contains(&*own)
                    || u.groups
                        .iter()
                        .any(|(g, _)| g.contains('=') && members.contains(&*follow::dn_key(g)))
                    || change
                        .member_logins
                        .iter()
                        .any(|l| l.eq_ignore_ascii_case(&u.entry.login));
                // Rules match groups by name: a member whose path names the
                // group by a name it no longer has (a rename that kept the
                // DN) is affected too.
                let renamed = was && !names.is_empty() && !names.iter().any(|n| u.groups.contains(n));
                own == dn
                    || was != now
                    || renamed
                    || names.iter().any(|n| {
                        u.entry.is_own(&UserKey::Login(n.clone()))
                            || u.entry.is_own(&UserKey::Address(n.clone()))
                    })
            }
            Ok(None) | Err(_) => true,
        });
        let recipients = self.restrictions.invalidate(|key, value| match value {
            Ok(Some(r)) => {
                follow::dn_key(&r.dn) == dn
                    || names.iter().any(|n| n.eq_ignore_ascii_case(key))
                    || r.addresses
                        .iter()
                        .any(|a| names.iter().any(|n| n.eq_ignore_ascii_case(a)))
            }
            Ok(None) | Err(_) => true,
        });
        (users, recipients)
    }

    /// The follower missed changes it cannot name: nothing cached is served
    /// as fresh again; it still bridges an outage.
    pub(crate) fn flush(&self) -> usize {
        self.flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.users.demote_all() + self.restrictions.demote_all()
    }
}

impl Directory {
    pub fn new(backend: impl Backend, cache: CacheSettings) -> Directory {
        let subtrees = follow::subtrees(&backend).len();
        let caches = (!backend.in_memory()).then(|| {
            let following = Arc::new(cache::Following::new(subtrees));
            Arc::new(Caches {
                users: cache::Cache::followed(cache, Some(following.clone())),
                restrictions: cache::Cache::followed(cache, Some(following.clone())),
                following,
                changes_followed: Default::default(),
                flushes: Default::default(),
            })
        });
        Directory {
            backend: Box::new(backend),
            caches,
            follower: Mutex::new(None),
        }
    }

    /// Start following the directory's changes, when its settings ask for
    /// it (the daemon, inside its runtime; `check` and `explain` never do).
    pub fn start_following(&self) {
        let Some(caches) = &self.caches else {
            return;
        };
        let mut follower = self.follower.lock().unwrap_or_else(|e| e.into_inner());
        if follower.is_none() {
            *follower = follow::Follower::start(&*self.backend, caches);
        }
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Answers come from memory: no cache, and no deadline to set.
    pub fn in_memory(&self) -> bool {
        self.caches.is_none()
    }

    /// Whether a reloaded directory is the running one with the same
    /// settings: then the running one (its caches, stale entries bridging an
    /// outage, its connections) is kept.
    pub fn same_as(&self, other: &Directory) -> bool {
        let caches_alike = match (&self.caches, &other.caches) {
            (Some(a), Some(b)) => {
                a.users.settings() == b.users.settings()
                    && a.restrictions.settings() == b.restrictions.settings()
            }
            // The static directory is the configuration itself: rebuilt.
            _ => false,
        };
        caches_alike && self.backend.same_as(other.backend())
    }

    /// A reload with other directory settings: the new directory takes the
    /// running one's answers as stale only, so an outage that began before
    /// the reload is still bridged after it.
    pub fn adopt_stale(&self, running: &Directory) {
        if let (Some(new), Some(old)) = (&self.caches, &running.caches) {
            new.users.adopt_stale(&old.users);
            new.restrictions.adopt_stale(&old.restrictions);
        }
    }

    /// Resolve an authenticated login (or an address used as login).
    pub async fn user_by_login(
        &self,
        login: &str,
    ) -> Result<Option<Arc<ResolvedUser>>, DirectoryUnavailable> {
        self.lookup(UserKey::Login(login.to_ascii_lowercase())).await.0
    }

    /// Resolve an address to the user who owns it.
    pub async fn user_by_address(
        &self,
        address: &str,
    ) -> Result<Option<Arc<ResolvedUser>>, DirectoryUnavailable> {
        self.lookup(UserKey::Address(address.to_ascii_lowercase()))
            .await
            .0
    }

    /// Resolve, and say where the answer came from.
    pub async fn lookup(&self, key: UserKey) -> (cache::Lookup, Source) {
        let Some(caches) = &self.caches else {
            return (self.find_own(&key).await, Source::Directory);
        };
        // Boxed: a remote backend's state machine is large, and unboxed it
        // would be part of every connection task's memory, idle or not.
        let result = Box::pin(
            caches
                .users
                .get_or_fetch(&key, Instant::now(), || self.find_own(&key)),
        )
        .await;
        match &result {
            // Logged when found; the cached fault answers quietly for a while.
            (Err(e), Source::Directory) if e.is_permanent() => {
                tracing::error!(key = %key, error = %e, "directory lookup gave no usable answer: answered tempfail until fixed")
            }
            (Err(e), Source::Directory) => tracing::warn!(key = %key, error = %e, "directory lookup failed"),
            _ => {}
        }
        result
    }

    /// The backend's answer, if the entry found is the key's own.
    async fn find_own(&self, key: &UserKey) -> cache::Lookup {
        let found = self.backend.find_user(key).get().await?;
        // A server's matching rules fold case, width and spaces (`ａｌｉｃｅ`,
        // `alice ` find uid=alice): only the login's own entry is its
        // identity. Not "unknown user" either: a SASL layer that folds alike
        // would let bob log in as `ｂｏｂ` and escape every deny list. An
        // unusable answer: tempfail.
        match found {
            Some(u) if !u.entry.is_own(key) => Err(DirectoryUnavailable::permanent(format!(
                "{key} found {}, which is not its own entry (the server folds what gatehouse compares exactly)",
                u.entry.dn
            ))),
            found => Ok(found),
        }
    }

    /// Whether recipients' entries are read for stored restrictions at all.
    pub fn reads_stored_restrictions(&self) -> bool {
        self.backend.reads_stored_restrictions()
    }

    /// Whether recipients' entries are read for their aliases.
    pub fn reads_recipient_aliases(&self) -> bool {
        self.backend.reads_recipient_aliases()
    }

    /// The entry that owns `address` (its addresses, and its stored
    /// restrictions when those are read); `Ok(None)` when recipients'
    /// entries are not read or there is no such entry.
    pub async fn recipient_entry(
        &self,
        address: &str,
    ) -> Result<Option<Arc<RecipientEntry>>, DirectoryUnavailable> {
        if !self.backend.reads_stored_restrictions() && !self.backend.reads_recipient_aliases() {
            return Ok(None);
        }
        let key = address.to_lowercase();
        let Some(caches) = &self.caches else {
            return self.backend.recipient_entry(&key).get().await;
        };
        let fetch = || self.backend.recipient_entry(&key).get();
        let (r, source) = Box::pin(caches.restrictions.get_or_fetch(&key, Instant::now(), fetch)).await;
        if let (Err(e), Source::Directory) = (&r, source) {
            tracing::warn!(recipient = %key, error = %e, "reading the recipient's directory entry failed");
        }
        r
    }

    /// Where an answer from `source` came from, in words, for `lookup`.
    pub fn describe_source(&self, source: Source) -> String {
        match (self.in_memory(), source) {
            (true, _) | (_, Source::Directory) => self.backend.describe(),
            (_, Source::Cache) => "cache".into(),
            (_, Source::Stale) => "cache, expired (directory unavailable)".into(),
        }
    }

    /// Whether every followed subtree is followed right now.
    pub fn following(&self) -> bool {
        self.caches
            .as_ref()
            .is_some_and(|c| c.following.since().is_some())
    }

    /// Changes the follower applied and cache flushes it made so far.
    pub fn follow_counters(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.caches.as_ref().map_or((0, 0), |c| {
            (c.changes_followed.load(Relaxed), c.flushes.load(Relaxed))
        })
    }

    /// Cache counters as `hits misses queries errors stale_served`, for the logs.
    pub fn counters(&self) -> Option<[u64; 5]> {
        self.caches.as_ref().map(|c| c.users.counters.snapshot())
    }
}
