//! Who is who and who is in which group. Every lookup the policy needs goes
//! through the [`Directory`] trait; the static backend answers from the
//! configuration. (An LDAP backend behind a shared cache is planned; nothing
//! outside this module will talk to LDAP.)

mod static_dir;

use std::collections::HashMap;
use std::sync::Arc;

pub use static_dir::{StaticDirectory, StaticGroup, StaticUser};

/// One user entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// Login as stored (the static backend's `login`, LDAP's uid).
    pub login: String,
    /// Distinguished name (LDAP) or `user:LOGIN` (static).
    pub dn: String,
    /// Addresses that are this user's own, lowercased.
    pub addresses: Vec<String>,
}

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
        self.paths.get(&group.to_lowercase())
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

/// The directory could not answer (server down, timeout). Never to be read as
/// "unknown user" or "not a member".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("directory unavailable: {0}")]
pub struct DirectoryUnavailable(pub String);

pub trait Directory: Send + Sync {
    /// Resolve an authenticated login (or an address used as login).
    fn user_by_login(&self, login: &str) -> Result<Option<Arc<ResolvedUser>>, DirectoryUnavailable>;
    /// Resolve an address to the user who owns it.
    fn user_by_address(&self, address: &str) -> Result<Option<Arc<ResolvedUser>>, DirectoryUnavailable>;
}
