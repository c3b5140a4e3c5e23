//! The static backend: users and groups from the configuration file. Nested
//! groups are expanded once, at load, breadth-first with a visited set, so
//! cycles are harmless and every lookup is a hash-map read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::{Answer, Backend, Finding, Memberships, NamedGroup, Pending, ResolvedUser, UserEntry, UserKey};

/// Deepest nesting followed; deeper groups are ignored with a warning.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticUser {
    pub login: String,
    pub addresses: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticGroup {
    pub name: String,
    /// `user:LOGIN` or `group:NAME`.
    pub members: Vec<String>,
}

#[derive(Debug, Default)]
pub struct StaticDirectory {
    by_login: HashMap<String, Arc<ResolvedUser>>,
    by_address: HashMap<String, Arc<ResolvedUser>>,
}

impl StaticDirectory {
    pub fn new(users: &[StaticUser], groups: &[StaticGroup]) -> StaticDirectory {
        // parent_of[x] = groups that contain x, where x is "user:login" or "group:name" (lowercased).
        let mut parent_of: HashMap<String, Vec<String>> = HashMap::new();
        let mut display: HashMap<String, String> = HashMap::new();
        for g in groups {
            let key = g.name.to_ascii_lowercase();
            display.insert(key.clone(), g.name.clone());
            for m in &g.members {
                parent_of
                    .entry(m.to_ascii_lowercase())
                    .or_default()
                    .push(key.clone());
            }
        }
        for u in users {
            for g in &u.groups {
                let key = g.to_ascii_lowercase();
                display.entry(key.clone()).or_insert_with(|| g.clone());
                parent_of
                    .entry(format!("user:{}", u.login.to_ascii_lowercase()))
                    .or_default()
                    .push(key);
            }
        }
        let mut dir = StaticDirectory::default();
        for u in users {
            let mut memberships = Memberships::default();
            let start: Arc<[String]> = Arc::from(vec![u.login.clone()]);
            let mut queue: VecDeque<(String, Arc<[String]>)> = VecDeque::new();
            queue.push_back((format!("user:{}", u.login.to_ascii_lowercase()), start));
            let mut seen = HashSet::new();
            while let Some((node, path)) = queue.pop_front() {
                if path.len() > MAX_DEPTH {
                    tracing::warn!(user = %u.login, "group nesting deeper than {MAX_DEPTH}: ignored below");
                    continue;
                }
                for parent in parent_of.get(&node).into_iter().flatten() {
                    if !seen.insert(parent.clone()) {
                        continue;
                    }
                    let mut p = path.to_vec();
                    p.push(display.get(parent).cloned().unwrap_or_else(|| parent.clone()));
                    let p: Arc<[String]> = Arc::from(p);
                    memberships.insert(parent, p.clone());
                    queue.push_back((format!("group:{parent}"), p));
                }
            }
            let entry = UserEntry {
                login: u.login.clone(),
                dn: format!("user:{}", u.login),
                addresses: u.addresses.iter().map(|a| a.to_ascii_lowercase()).collect(),
                member_of: Vec::new(),
                ..Default::default()
            };
            let resolved = Arc::new(ResolvedUser {
                entry,
                groups: memberships,
            });
            dir.by_login
                .insert(u.login.to_ascii_lowercase(), resolved.clone());
            for a in &u.addresses {
                dir.by_address.insert(a.to_ascii_lowercase(), resolved.clone());
            }
        }
        dir
    }

    /// Whether any user is in this group (directly or nested).
    pub fn group_has_members(&self, name: &str) -> bool {
        self.by_login.values().any(|u| u.groups.contains(name))
    }
}

impl StaticDirectory {
    /// A login may be an address ("alice@example.com"), as SASL clients often send.
    pub fn user_by_login(&self, login: &str) -> Option<Arc<ResolvedUser>> {
        let key = login.to_ascii_lowercase();
        self.by_login
            .get(&key)
            .or_else(|| self.by_address.get(&key))
            .cloned()
    }

    pub fn user_by_address(&self, address: &str) -> Option<Arc<ResolvedUser>> {
        self.by_address.get(&address.to_ascii_lowercase()).cloned()
    }
}

impl Backend for StaticDirectory {
    fn describe(&self) -> String {
        "static directory (configuration file)".into()
    }

    fn in_memory(&self) -> bool {
        true
    }

    fn find_user<'a>(&'a self, key: &'a UserKey) -> Answer<'a, Option<Arc<ResolvedUser>>> {
        Answer::Ready(Ok(match key {
            UserKey::Login(l) => self.user_by_login(l),
            UserKey::Address(a) => self.user_by_address(a),
        }))
    }

    fn verify<'a>(&'a self, groups: &'a [NamedGroup]) -> Pending<'a, Vec<Finding>> {
        let mut findings: Vec<Finding> = groups
            .iter()
            .filter(|g| !self.group_has_members(&g.name))
            .map(|g| Finding::Warning(format!("group {:?} ({}) resolves to nobody", g.name, g.used)))
            .collect();
        findings.push(Finding::Note(
            "directory: static (from the configuration file)".into(),
        ));
        Box::pin(std::future::ready(Ok(findings)))
    }

    /// The static directory is the configuration itself: a reload rebuilds it.
    fn same_as(&self, _: &dyn Backend) -> bool {
        false
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(login: &str, addresses: &[&str], groups: &[&str]) -> StaticUser {
        StaticUser {
            login: login.into(),
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn group(name: &str, members: &[&str]) -> StaticGroup {
        StaticGroup {
            name: name.into(),
            members: members.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn nested_membership_with_path() {
        let d = StaticDirectory::new(
            &[user("alice", &["alice@example.com"], &["Engineering"])],
            &[
                group("Full-Time Employees", &["group:Engineering"]),
                group("All Staff", &["group:full-time employees"]),
            ],
        );
        let alice = d.user_by_login("ALICE").unwrap();
        assert_eq!(
            &alice.groups.path_to("all staff").unwrap()[..],
            &["alice", "Engineering", "Full-Time Employees", "All Staff"]
        );
        assert!(d.user_by_address("Alice@Example.com").is_some());
        assert!(d.user_by_login("alice@example.com").is_some(), "address as login");
    }

    #[test]
    fn cycles_terminate() {
        let d = StaticDirectory::new(
            &[user("bob", &[], &["A"])],
            &[group("A", &["group:B"]), group("B", &["group:A"])],
        );
        let bob = d.user_by_login("bob").unwrap();
        assert!(bob.groups.contains("A") && bob.groups.contains("B"));
        assert_eq!(bob.groups.len(), 2);
    }

    #[test]
    fn membership_by_group_member_list() {
        let d = StaticDirectory::new(&[user("carol", &[], &[])], &[group("All Staff", &["user:carol"])]);
        assert!(d.user_by_login("carol").unwrap().groups.contains("all staff"));
        assert!(d.user_by_login("nobody").is_none());
    }
}
