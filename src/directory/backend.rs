//! What a directory backend answers. A backend knows one kind of server (or
//! the configuration file); caching, the own-entry check and the logging of
//! failures are the [`Directory`](super::Directory) layer's, the same for
//! every backend. Active Directory's membership methods and the change
//! follower are added as backends or beside them, behind this trait.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{DirectoryUnavailable, GroupNames, RecipientEntry, ResolvedUser, UserKey};

/// A lookup under way, boxed so that the trait can be used as `dyn Backend`.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, DirectoryUnavailable>> + Send + 'a>>;

/// A backend's answer: at once, or later. A backend that holds everything in
/// memory answers at once and so costs no boxed future and no timer on the
/// hot path (the static directory is asked on every transaction).
pub enum Answer<'a, T> {
    Ready(Result<T, DirectoryUnavailable>),
    Later(Pending<'a, T>),
}

impl<'a, T> Answer<'a, T> {
    pub fn later(f: impl Future<Output = Result<T, DirectoryUnavailable>> + Send + 'a) -> Self {
        Answer::Later(Box::pin(f))
    }

    pub async fn get(self) -> Result<T, DirectoryUnavailable> {
        match self {
            Answer::Ready(r) => r,
            Answer::Later(f) => f.await,
        }
    }
}

/// One line of `gatehouse check` about the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Error(String),
    Warning(String),
    Note(String),
}

/// A group the policy names, and where, for [`Backend::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedGroup {
    pub name: String,
    pub used: String,
}

pub trait Backend: Send + Sync + 'static {
    /// Where answers come from, for `lookup` and the logs.
    fn describe(&self) -> String;

    /// Answers come from memory, at once: nothing to cache, no deadline.
    fn in_memory(&self) -> bool {
        false
    }

    /// The user owning a login or an address, with every group (nested
    /// included). `Ok(None)`: no such user. The caller checks that the entry
    /// is the key's own.
    fn find_user<'a>(&'a self, key: &'a UserKey) -> Answer<'a, Option<Arc<ResolvedUser>>>;

    /// Whether recipients' own entries are read for stored restrictions.
    fn reads_stored_restrictions(&self) -> bool {
        false
    }

    /// Whether recipients' entries are read for their other addresses, so
    /// that a `[[recipient]]` rule holds under every alias of its list.
    fn reads_recipient_aliases(&self) -> bool {
        false
    }

    /// The entry owning `address` (lowercased): its addresses, and the
    /// restrictions stored on it when those are read. `Ok(None)`: no such
    /// entry.
    fn recipient_entry<'a>(&'a self, address: &'a str) -> Answer<'a, Option<Arc<RecipientEntry>>> {
        let _ = address;
        Answer::Ready(Ok(None))
    }

    /// What each group name the rules use (lowercased) means: the DNs of
    /// the entries the directory has under it. `Ok(None)`: this backend's
    /// names are unique by construction (the static directory).
    fn groups_named<'a>(&'a self, names: &'a [String]) -> Answer<'a, Option<GroupNames>> {
        let _ = names;
        Answer::Ready(Ok(None))
    }

    /// For `gatehouse check`: reach the server and resolve every group the
    /// policy names. `Err`: the directory cannot be reached at all.
    fn verify<'a>(&'a self, groups: &'a [NamedGroup]) -> Pending<'a, Vec<Finding>>;

    /// Whether `other` answers exactly as this one does (same kind, same
    /// settings, same credentials): a reload then keeps the running one.
    fn same_as(&self, other: &dyn Backend) -> bool;

    /// Search operations sent to a server so far (benchmark, logs).
    fn operations(&self) -> u64 {
        0
    }

    fn as_any(&self) -> &dyn Any;
}
