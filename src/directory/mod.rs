//! Who is who and who is in which group. Every lookup the policy needs goes
//! through [`Directory`], a layer over one [`Backend`]: a backend that
//! answers from memory (the static one, from the configuration file) is asked
//! directly; any other answers through the shared [`cache::Cache`]. Nothing
//! outside this module talks to LDAP.

mod backend;
pub mod cache;
mod dn;
pub mod follow;
pub mod ldap;
mod static_dir;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use backend::{Answer, Backend, Finding, NamedGroup, Pending};
pub use cache::{CacheSettings, Source, UserKey};
pub use dn::{dn_key, is_dn_reference};
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

/// A user's groups, nested included, each with the membership path from
/// the user to it (for `explain` and the logs): by name (lowercased), and
/// by DN ([`dn_key`]) where the backend has DNs. A rule's reference is
/// looked up by DN when it is one ([`is_dn_reference`]), else by name:
/// never one for the other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memberships {
    by_name: HashMap<String, Arc<[String]>>,
    by_dn: HashMap<String, Arc<[String]>>,
    /// Rule group names that cannot be decided for this user, and why.
    undecidable: HashMap<String, String>,
}

impl Memberships {
    /// A group known by name only (the static directory, test fakes).
    pub fn insert(&mut self, name: &str, path: Arc<[String]>) {
        self.by_name.entry(name.to_lowercase()).or_insert(path);
    }

    /// A directory group: its DN, and the name it is shown by.
    pub fn insert_group(&mut self, dn: &str, name: &str, path: Arc<[String]>) {
        self.by_dn
            .entry(dn_key(dn).into_owned())
            .or_insert_with(|| path.clone());
        self.insert(name, path);
    }

    /// The membership path to the group a rule names (by name or DN, any
    /// case), if a member.
    pub fn path_to(&self, group: &str) -> Option<&Arc<[String]>> {
        if is_dn_reference(group) {
            return self.by_dn.get(&*dn_key(group));
        }
        // Asked for every group of every rule on every transaction: a name
        // in lower case, or a short ASCII one (as configured names usually
        // are), costs no allocation.
        if !group.chars().any(char::is_uppercase) {
            return self.by_name.get(group);
        }
        let mut lower = [0u8; 64];
        match lower.get_mut(..group.len()) {
            Some(buf) if group.is_ascii() => {
                buf.copy_from_slice(group.as_bytes());
                buf.make_ascii_lowercase();
                // ASCII in, ASCII out.
                self.by_name.get(std::str::from_utf8(buf).ok()?)
            }
            _ => self.by_name.get(&group.to_lowercase()),
        }
    }

    pub fn contains(&self, group: &str) -> bool {
        self.path_to(group).is_some()
    }

    /// How many groups.
    pub fn len(&self) -> usize {
        if self.by_dn.is_empty() {
            self.by_name.len()
        } else {
            self.by_dn.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.by_dn.is_empty()
    }

    /// The path to each group, once per group.
    pub fn paths(&self) -> impl Iterator<Item = &Arc<[String]>> {
        if self.by_dn.is_empty() {
            &self.by_name
        } else {
            &self.by_dn
        }
        .values()
    }

    /// The groups' DNs, as [`dn_key`]s.
    pub fn dns(&self) -> impl Iterator<Item = &str> {
        self.by_dn.keys().map(String::as_str)
    }

    /// Why rules naming `group` cannot be decided for this user, if they
    /// cannot (see [`Memberships::settled`]): such a rule answers tempfail.
    pub fn undecidable(&self, group: &str) -> Option<&str> {
        if self.undecidable.is_empty() || is_dn_reference(group) {
            return None;
        }
        self.undecidable.get(&group.to_lowercase()).map(String::as_str)
    }

    /// The same memberships with each name the rules use meaning the one
    /// entry the directory has under that name (`names`, from
    /// [`Backend::groups_named`]): a member by name only through that
    /// entry's DN, whatever name the membership search found it under. A
    /// group elsewhere with the same name (created where someone may
    /// create groups) grants nothing. Rules naming it cannot be decided
    /// (tempfail) for a user who is in one of several entries of that name,
    /// or in a group of that name while the directory has none under
    /// `group_base_dn`. `suspect`: the user is in a group of that name the
    /// reading does not list (it may be older than the group).
    pub fn settled(&self, names: &GroupNames) -> Settled {
        let mut out = self.clone();
        let mut suspect = false;
        for (name, dns) in &names.entries {
            let reached: Vec<(&String, &Arc<[String]>)> = dns
                .iter()
                .filter_map(|dn| self.by_dn.get(&*dn_key(dn)).map(|p| (dn, p)))
                .collect();
            let same_name_elsewhere = reached.is_empty() && self.by_name.contains_key(name);
            suspect |= same_name_elsewhere;
            out.by_name.remove(name);
            if dns.len() > 1 && !reached.is_empty() {
                let mine: Vec<&str> = reached.iter().map(|(dn, _)| dn.as_str()).collect();
                out.undecidable.insert(
                    name.clone(),
                    format!(
                        "group name {name:?} means {} entries ({}) and this user is in {}: which one the rules mean cannot be told (name the group by DN)",
                        dns.len(),
                        dns.join("; "),
                        mine.join("; ")
                    ),
                );
            } else if dns.is_empty() && same_name_elsewhere {
                out.undecidable.insert(
                    name.clone(),
                    format!(
                        "no group named {name:?} under group_base_dn, but this user is in one elsewhere (set group_base_dn, or name the group by DN)"
                    ),
                );
            } else if let Some((_, path)) = reached.first() {
                out.by_name.insert(name.clone(), Arc::clone(path));
            }
        }
        Settled { groups: out, suspect }
    }
}

/// [`Memberships::settled`]'s answer.
#[derive(Debug)]
pub struct Settled {
    pub groups: Memberships,
    pub suspect: bool,
}

/// The entries each group name the rules use means in the directory
/// (lowercased name → DNs as the server returned them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupNames {
    pub entries: HashMap<String, Vec<String>>,
}

impl GroupNames {
    /// Whether a change to the entry `dn`, now named `names` (none: it was
    /// deleted), changes what a name means: a new entry under it, or one
    /// of its entries renamed or deleted. A membership change of one of
    /// them (still under its name) does not.
    pub fn affected_by(&self, dn: &str, names: &[String]) -> bool {
        let dn = dn_key(dn);
        self.entries.iter().any(|(name, dns)| {
            let listed = dns.iter().any(|d| dn_key(d) == dn);
            let named = names.iter().any(|n| n.eq_ignore_ascii_case(name));
            listed != named
        })
    }

    /// Every entry's DN, as [`dn_key`]s.
    fn dn_keys(&self) -> std::collections::HashSet<String> {
        self.entries
            .values()
            .flatten()
            .map(|d| dn_key(d).into_owned())
            .collect()
    }
}

/// A resolved user with groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub entry: UserEntry,
    pub groups: Memberships,
}

#[cfg(test)]
impl ResolvedUser {
    /// A user for unit tests, in `groups` given by name, or by DN (then
    /// also known by its first RDN's value, as a directory group is); a
    /// name after `?` is one whose rules cannot be decided for the user.
    pub fn for_test(login: &str, dn: &str, addresses: &[&str], groups: &[&str]) -> Arc<ResolvedUser> {
        let mut m = Memberships::default();
        for g in groups {
            if let Some(name) = g.strip_prefix('?') {
                m.undecidable.insert(name.to_lowercase(), "two entries".into());
                continue;
            }
            let path: Arc<[String]> = Arc::from(vec![login.to_string(), g.to_string()]);
            if is_dn_reference(g) {
                let name = ldap::first_rdn_value(g).unwrap_or_else(|| g.to_string());
                m.insert_group(g, &name, path);
            } else {
                m.insert(g, path);
            }
        }
        Arc::new(ResolvedUser {
            entry: UserEntry {
                login: login.into(),
                dn: dn.into(),
                addresses: addresses.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            },
            groups: m,
        })
    }
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
    /// What the rules' group names mean in the directory, and when that was
    /// read; see [`Directory::settle_group_names`].
    group_names: Mutex<Option<(Instant, Arc<GroupNames>)>>,
    /// One reading of the group names at a time.
    group_names_reading: tokio::sync::Mutex<()>,
    /// Bumped by every change that may alter what a name means: a reading
    /// that overlapped one is used once but not kept.
    group_names_generation: std::sync::atomic::AtomicU64,
    /// The group names the rules use, lowercased, sorted (DN references
    /// are not names: they mean one entry already).
    rule_groups: Vec<String>,
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
        let dn = dn_key(&change.dn);
        let members = change.member_keys();
        let names = &change.names;
        // What a rule's name meant changed: every member of what it meant
        // (and of the changed entry) is settled again.
        let resettle: std::collections::HashSet<String> = self
            .forget_group_names(Some((&change.dn, names)))
            .map(|old| old.dn_keys())
            .unwrap_or_default();
        let users = self.users.invalidate(|_, value| match value {
            Ok(Some(u)) => {
                let own = dn_key(&u.entry.dn);
                let was = u.groups.dns().any(|g| g == dn);
                if !resettle.is_empty() && (was || u.groups.dns().any(|g| resettle.contains(g))) {
                    return true;
                }
                let now = members.contains(&*own)
                    || u.groups.dns().any(|g| members.contains(g))
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
                dn_key(&r.dn) == dn
                    || names.iter().any(|n| n.eq_ignore_ascii_case(key))
                    || r.addresses
                        .iter()
                        .any(|a| names.iter().any(|n| n.eq_ignore_ascii_case(a)))
            }
            Ok(None) | Err(_) => true,
        });
        (users, recipients)
    }

    /// Forget what the group names mean when a change to `dn` (now named
    /// `names`; `None`: a gap, anything may have changed) alters it, and
    /// say what was forgotten. While nothing is kept (a reading may be
    /// under way), any change that could concern a rule's name counts.
    fn forget_group_names(&self, change: Option<(&str, &[String])>) -> Option<Arc<GroupNames>> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut stored = self.group_names.lock().unwrap_or_else(|e| e.into_inner());
        let forget = match (change, stored.as_ref()) {
            (None, _) => true,
            (Some((dn, names)), Some((_, index))) => index.affected_by(dn, names),
            (Some((_, names)), None) => {
                names.is_empty() || names.iter().any(|n| self.rule_groups.contains(n))
            }
        };
        if !forget {
            return None;
        }
        self.group_names_generation.fetch_add(1, Relaxed);
        stored.take().map(|(_, index)| index)
    }

    /// The follower missed changes it cannot name: nothing cached is served
    /// as fresh again; it still bridges an outage.
    pub(crate) fn flush(&self) -> usize {
        self.flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.forget_group_names(None);
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
                group_names: Mutex::new(None),
                group_names_reading: tokio::sync::Mutex::new(()),
                group_names_generation: Default::default(),
                rule_groups: Vec::new(),
            })
        });
        Directory {
            backend: Box::new(backend),
            caches,
            follower: Mutex::new(None),
        }
    }

    /// The group names the policy's rules use (DN references are left out:
    /// they name one entry already). Each is settled to the one entry it
    /// means before a user's groups are cached.
    pub fn with_rule_groups<'a>(mut self, references: impl IntoIterator<Item = &'a str>) -> Directory {
        let mut names: Vec<String> = references
            .into_iter()
            .filter(|r| !is_dn_reference(r))
            .map(str::to_lowercase)
            .collect();
        names.sort();
        names.dedup();
        // Before the directory is shared: the only reference.
        if let Some(caches) = self.caches.as_mut().and_then(Arc::get_mut) {
            caches.rule_groups = names;
        }
        self
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
                    && a.rule_groups == b.rule_groups
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
            // A user's groups were settled for the names the old rules
            // used; for a name only the new rules use, an old answer still
            // holds the raw name of any group anywhere, so none is adopted.
            if new.rule_groups.iter().all(|n| old.rule_groups.contains(n)) {
                new.users.adopt_stale(&old.users);
            }
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
            Some(u) => self.settle_group_names(u).await.map(Some),
            None => Ok(None),
        }
    }

    /// The user's groups with each rule's group name meaning the one entry
    /// of that name in the directory ([`Memberships::settled`]), before the
    /// answer is cached. What the names mean is read once per `ttl` (and
    /// again when the follower sees a change to it, or when a user is in a
    /// group of such a name that the reading does not list, at most every
    /// few seconds); while it cannot be read, the last reading is used.
    async fn settle_group_names(
        &self,
        user: Arc<ResolvedUser>,
    ) -> Result<Arc<ResolvedUser>, DirectoryUnavailable> {
        /// How old a reading must be before a suspect membership reads again.
        const REREAD_AFTER: std::time::Duration = std::time::Duration::from_secs(5);
        let Some(caches) = &self.caches else {
            return Ok(user);
        };
        if caches.rule_groups.is_empty() || user.groups.is_empty() {
            return Ok(user);
        }
        let Some((read_at, index)) = self.group_names(caches, None).await? else {
            return Ok(user);
        };
        let mut settled = user.groups.settled(&index);
        if settled.suspect && read_at.elapsed() >= REREAD_AFTER {
            if let Some((_, index)) = self.group_names(caches, Some(read_at)).await? {
                settled = user.groups.settled(&index);
            }
        }
        for why in settled.groups.undecidable.values() {
            tracing::error!(login = %user.entry.login, reason = %why, "rules naming this group answer tempfail for this user until fixed");
        }
        Ok(Arc::new(ResolvedUser {
            entry: user.entry.clone(),
            groups: settled.groups,
        }))
    }

    /// What the rule's group names mean, and when that was read: the kept
    /// reading while younger than `ttl` and not older than `older_than`,
    /// else a new one. `None`: the backend's names are unique by
    /// construction.
    async fn group_names(
        &self,
        caches: &Caches,
        older_than: Option<Instant>,
    ) -> Result<Option<(Instant, Arc<GroupNames>)>, DirectoryUnavailable> {
        use std::sync::atomic::Ordering::Relaxed;
        // At least a few seconds, even with ttl = 0: not N searches per lookup.
        let ttl = caches.users.settings().ttl.max(std::time::Duration::from_secs(5));
        let kept = || {
            let stored = caches.group_names.lock().unwrap_or_else(|e| e.into_inner());
            stored.clone()
        };
        let fresh = |r: &Option<(Instant, Arc<GroupNames>)>| {
            r.as_ref()
                .is_some_and(|(at, _)| at.elapsed() < ttl && older_than.is_none_or(|o| *at > o))
        };
        let before = kept();
        if fresh(&before) {
            return Ok(before);
        }
        let _reading = caches.group_names_reading.lock().await;
        // Another lookup may have read them while this one waited.
        let before = kept();
        if fresh(&before) {
            return Ok(before);
        }
        let generation = caches.group_names_generation.load(Relaxed);
        let read_at = Instant::now();
        match self.backend.groups_named(&caches.rule_groups).get().await {
            Ok(None) => Ok(None),
            Ok(Some(index)) => {
                let index = Arc::new(index);
                let mut stored = caches.group_names.lock().unwrap_or_else(|e| e.into_inner());
                if caches.group_names_generation.load(Relaxed) == generation {
                    *stored = Some((read_at, index.clone()));
                }
                Ok(Some((read_at, index)))
            }
            Err(e) => match before {
                Some(kept) => {
                    tracing::warn!(error = %e, "reading what the rules' group names mean failed: the last reading is used");
                    Ok(Some(kept))
                }
                None => Err(e),
            },
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

    /// Users cached now (fresh or stale).
    pub fn cached_users(&self) -> usize {
        self.caches.as_ref().map_or(0, |c| c.users.len())
    }

    /// Cache counters as `hits misses queries errors stale_served`, for the logs.
    pub fn counters(&self) -> Option<[u64; 5]> {
        self.caches.as_ref().map(|c| c.users.counters.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "cn=Relay,ou=groups,dc=x";
    const RELAY_ELSEWHERE: &str = "cn=Relay,ou=projects,dc=x";

    fn names(entries: &[(&str, &[&str])]) -> GroupNames {
        GroupNames {
            entries: entries
                .iter()
                .map(|(n, dns)| (n.to_string(), dns.iter().map(|d| d.to_string()).collect()))
                .collect(),
        }
    }

    fn groups_of(dns: &[(&str, &str)]) -> Memberships {
        let mut m = Memberships::default();
        for (dn, name) in dns {
            m.insert_group(dn, name, Arc::from(vec!["bob".to_string(), name.to_string()]));
        }
        m
    }

    #[test]
    fn a_name_means_the_one_entry_the_directory_has_under_it() {
        let index = names(&[("relay", &[RELAY])]);
        // Found by the membership search under another of its names (a
        // multi-valued cn), spelled as the server stores it.
        let m = groups_of(&[("CN=Relay, OU=Groups,DC=x", "Outbound")]);
        let s = m.settled(&index);
        assert!(s.groups.contains("Relay") && !s.suspect);
        assert!(s.groups.contains(RELAY), "by DN too");
    }

    #[test]
    fn a_group_elsewhere_with_the_same_name_grants_nothing() {
        let index = names(&[("relay", &[RELAY])]);
        let m = groups_of(&[(RELAY_ELSEWHERE, "Relay")]);
        assert!(m.contains("relay"), "before settling, the name alone matched");
        let s = m.settled(&index);
        assert!(!s.groups.contains("relay") && s.groups.undecidable("relay").is_none());
        assert!(s.suspect, "worth reading the names again: the group may be new");
    }

    #[test]
    fn a_name_with_no_entry_under_group_base_dn_is_undecidable_for_a_namesake_member() {
        // The rule's group is not where group_base_dn says (a deny group
        // among them): its namesake's members tempfail, nobody else does.
        let index = names(&[("relay", &[])]);
        let s = groups_of(&[(RELAY_ELSEWHERE, "Relay")]).settled(&index);
        assert!(!s.groups.contains("relay"));
        let why = s.groups.undecidable("Relay").expect("undecidable");
        assert!(why.contains("group_base_dn"), "{why}");
        let other = groups_of(&[("cn=Other,dc=x", "Other")]).settled(&index);
        assert!(other.groups.undecidable("relay").is_none());
    }

    #[test]
    fn a_name_meaning_several_entries_is_undecidable_for_their_members_only() {
        let index = names(&[("relay", &[RELAY, RELAY_ELSEWHERE])]);
        for member_of in [RELAY, RELAY_ELSEWHERE] {
            let s = groups_of(&[(member_of, "Relay"), ("cn=Other,dc=x", "Other")]).settled(&index);
            assert!(!s.groups.contains("relay"));
            let why = s.groups.undecidable("relay").expect("undecidable");
            assert!(
                why.contains(RELAY) && why.contains(RELAY_ELSEWHERE) && why.contains("by DN"),
                "{why}"
            );
            // Only that name: the user's other groups still count.
            assert!(s.groups.contains("other") && s.groups.undecidable("other").is_none());
            // By DN, each entry is still itself.
            assert!(s.groups.contains(member_of));
        }
        let outsider = groups_of(&[("cn=Other,dc=x", "Other")]).settled(&index);
        assert!(!outsider.groups.contains("relay") && outsider.groups.undecidable("relay").is_none());
    }

    /// A rule's group name matches in any case: short ASCII names (looked
    /// up without an allocation), long ones and non-ASCII ones alike.
    #[test]
    fn group_names_match_in_any_case() {
        let long = "Internet Mail Users of the Eastern Region and of all its Branch Offices";
        assert!(long.len() > 64);
        let mut m = Memberships::default();
        for name in ["Internet Mail Users", long, "Équipe Été"] {
            m.insert(name, Arc::from([String::from("alice"), name.to_string()]));
        }
        for asked in [
            "internet mail users",
            "INTERNET MAIL USERS",
            "Internet Mail Users",
            &long.to_uppercase(),
            "ÉQUIPE ÉTÉ",
            "équipe été",
        ] {
            assert!(m.contains(asked), "{asked}");
        }
        assert!(!m.contains("Internet Mail User"));
        assert!(!m.contains("INTERNET MAIL USERSX"));
    }

    #[test]
    fn a_name_spelled_like_a_dn_is_not_that_dn() {
        // Someone who may create groups names one after the rule's DN.
        let m = groups_of(&[("cn=evil,ou=projects,dc=x", RELAY)]);
        assert!(m.path_to(RELAY).is_none());
        assert!(m.path_to("cn=evil,ou=projects,dc=x").is_some());
        assert!(m.path_to("CN=Evil, OU=Projects, DC=x").is_some());
    }

    #[test]
    fn what_a_name_means_changes_with_new_renamed_and_deleted_entries_only() {
        let index = names(&[("relay", &[RELAY])]);
        assert!(
            index.affected_by("cn=relay, ou=groups,dc=x", &["outbound".into()]),
            "renamed away"
        );
        assert!(index.affected_by("cn=relay,ou=groups,dc=x", &[]), "deleted");
        assert!(
            index.affected_by("cn=new,ou=projects,dc=x", &["relay".into()]),
            "a new one"
        );
        assert!(
            !index.affected_by("CN=Relay,ou=groups,dc=x", &["relay".into()]),
            "a member added to it"
        );
        assert!(!index.affected_by("cn=other,ou=groups,dc=x", &["other".into()]));
    }
}
