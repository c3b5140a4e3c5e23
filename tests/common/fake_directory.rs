//! A directory backend for in-process tests: users and groups set by the
//! test, and switches for the ways a real server fails (down, silent,
//! answering with somebody else's entry).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gatehouse::directory::{
    Answer, Backend, DirectoryUnavailable, Finding, Memberships, NamedGroup, Pending, ResolvedUser,
    UserEntry, UserKey,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Connection refused: an outage.
    Down,
    /// Never answers (a frozen server).
    Silent,
    /// Answers, with nothing safe to decide on (two entries for one login).
    Unusable,
}

#[derive(Default)]
pub struct Control {
    users: Mutex<HashMap<String, Arc<ResolvedUser>>>,
    health: Mutex<Option<Health>>,
    /// Keys answered with another user's entry, as a server whose matching
    /// rule folds width or spaces does.
    folds: Mutex<HashMap<String, String>>,
    pub lookups: AtomicUsize,
}

impl Control {
    pub fn add_user(&self, login: &str, addresses: &[&str], groups: &[&str]) {
        let mut memberships = Memberships::default();
        for g in groups {
            memberships.insert(g, Arc::from(vec![login.to_string(), g.to_string()]));
        }
        let user = Arc::new(ResolvedUser {
            entry: UserEntry {
                login: login.into(),
                dn: format!("uid={login},ou=fake"),
                addresses: addresses.iter().map(|a| a.to_lowercase()).collect(),
                member_of: Vec::new(),
                ..Default::default()
            },
            groups: memberships,
        });
        let mut users = self.users.lock().unwrap();
        users.insert(login.to_lowercase(), user.clone());
        for a in addresses {
            users.insert(a.to_lowercase(), user.clone());
        }
    }

    pub fn set_health(&self, h: Health) {
        *self.health.lock().unwrap() = Some(h);
    }

    pub fn fold(&self, key: &str, to_login: &str) {
        self.folds.lock().unwrap().insert(key.into(), to_login.into());
    }

    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

pub struct FakeDirectory(pub Arc<Control>);

impl Backend for FakeDirectory {
    fn describe(&self) -> String {
        "fake directory".into()
    }

    fn find_user<'a>(&'a self, key: &'a UserKey) -> Answer<'a, Option<Arc<ResolvedUser>>> {
        let c = &self.0;
        c.lookups.fetch_add(1, Ordering::SeqCst);
        let name = match key {
            UserKey::Login(n) | UserKey::Address(n) => n.clone(),
        };
        match c.health.lock().unwrap().unwrap_or(Health::Up) {
            Health::Up => {}
            Health::Down => {
                return Answer::Ready(Err(DirectoryUnavailable::outage("fake: connection refused")))
            }
            Health::Silent => return Answer::later(std::future::pending()),
            Health::Unusable => {
                return Answer::Ready(Err(DirectoryUnavailable::permanent("fake: 2 entries match")))
            }
        }
        let name = c.folds.lock().unwrap().get(&name).cloned().unwrap_or(name);
        let found = c.users.lock().unwrap().get(&name).cloned();
        // Asynchronous like a real server: the answer comes later.
        Answer::later(async move { Ok(found) })
    }

    fn verify<'a>(&'a self, _: &'a [NamedGroup]) -> Pending<'a, Vec<Finding>> {
        Box::pin(async { Ok(vec![Finding::Note("fake directory".into())]) })
    }

    fn same_as(&self, _: &dyn Backend) -> bool {
        false
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
