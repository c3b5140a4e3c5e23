//! Which listener (SMTP "virtual server") a session belongs to.
//!
//! Exchange's receive-connector rule: every key a listener's `match` gives must
//! hold, and the most specific match wins: more keys first, then the narrowest
//! client range. Ties that a session could hit are refused at load.

use std::net::IpAddr;

use ipnet::IpNet;

/// What a session tells about where it came in.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerContext<'a> {
    pub daemon_name: Option<&'a str>,
    pub daemon_addr: Option<IpAddr>,
    pub daemon_port: Option<u16>,
    /// The gatehouse socket the MTA connected to, in config notation.
    pub socket: &'a str,
    pub client: Option<IpAddr>,
}

/// The `match` table of a listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerMatch {
    pub daemon_name: Option<String>,
    pub daemon_addr: Option<IpAddr>,
    pub daemon_port: Option<u16>,
    pub socket: Option<String>,
    pub client: Vec<IpNet>,
}

/// Ordering key: more keys, then a narrower client range.
pub type Specificity = (usize, u8);

impl ListenerMatch {
    fn key_count(&self) -> usize {
        [
            self.daemon_name.is_some(),
            self.daemon_addr.is_some(),
            self.daemon_port.is_some(),
            self.socket.is_some(),
            !self.client.is_empty(),
        ]
        .iter()
        .filter(|&&b| b)
        .count()
    }

    /// `Some(specificity)` if every given key holds for `ctx`.
    pub fn specificity(&self, ctx: &ListenerContext<'_>) -> Option<Specificity> {
        if let Some(name) = &self.daemon_name {
            if !ctx.daemon_name.is_some_and(|n| n.eq_ignore_ascii_case(name)) {
                return None;
            }
        }
        if self.daemon_addr.is_some() && self.daemon_addr != ctx.daemon_addr {
            return None;
        }
        if self.daemon_port.is_some() && self.daemon_port != ctx.daemon_port {
            return None;
        }
        if let Some(socket) = &self.socket {
            if socket != ctx.socket {
                return None;
            }
        }
        let mut prefix = 0;
        if !self.client.is_empty() {
            let ip = ctx.client?;
            prefix = self
                .client
                .iter()
                .filter(|net| net.contains(&ip))
                .map(|net| net.prefix_len())
                .max()?;
        }
        Some((self.key_count(), prefix))
    }

    /// Why `self` and `other` could both match one session with equal
    /// specificity, if they can.
    pub fn ambiguity_with(&self, other: &ListenerMatch) -> Option<String> {
        if self.key_count() != other.key_count() {
            return None;
        }
        let differ = |a: Option<String>, b: Option<String>| matches!((a, b), (Some(x), Some(y)) if x != y);
        if differ(
            self.daemon_name.as_ref().map(|s| s.to_lowercase()),
            other.daemon_name.as_ref().map(|s| s.to_lowercase()),
        ) || differ(self.socket.clone(), other.socket.clone())
            || matches!((self.daemon_addr, other.daemon_addr), (Some(a), Some(b)) if a != b)
            || matches!((self.daemon_port, other.daemon_port), (Some(a), Some(b)) if a != b)
        {
            return None;
        }
        if self.client.is_empty() || other.client.is_empty() {
            return Some("both can match the same session with the same number of keys".into());
        }
        for a in &self.client {
            for b in &other.client {
                let overlap = a.contains(&b.network()) || b.contains(&a.network());
                if overlap && a.prefix_len() == b.prefix_len() {
                    return Some(format!("client ranges {a} and {b} are the same"));
                }
                if overlap && !(a.contains(b) || b.contains(a)) {
                    return Some(format!("client ranges {a} and {b} overlap"));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(name: Option<&'a str>, client: &str) -> ListenerContext<'a> {
        ListenerContext {
            daemon_name: name,
            client: Some(client.parse().unwrap()),
            socket: "inet:127.0.0.1:8890",
            ..Default::default()
        }
    }

    #[test]
    fn all_keys_must_hold() {
        let m = ListenerMatch {
            daemon_name: Some("submission".into()),
            daemon_port: Some(587),
            ..Default::default()
        };
        let mut c = ctx(Some("SUBMISSION"), "10.0.0.1");
        assert_eq!(m.specificity(&c), None, "port missing");
        c.daemon_port = Some(587);
        assert_eq!(m.specificity(&c), Some((2, 0)));
        c.daemon_port = Some(25);
        assert_eq!(m.specificity(&c), None);
    }

    #[test]
    fn narrowest_client_range_wins() {
        let wide = ListenerMatch {
            client: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        let narrow = ListenerMatch {
            client: vec!["10.1.0.0/16".parse().unwrap()],
            ..Default::default()
        };
        let c = ctx(None, "10.1.2.3");
        assert!(narrow.specificity(&c) > wide.specificity(&c));
        assert_eq!(wide.ambiguity_with(&narrow), None, "nested ranges are fine");
    }

    #[test]
    fn ambiguous_overlaps_are_found() {
        let a = ListenerMatch {
            daemon_name: Some("mx".into()),
            ..Default::default()
        };
        let b = ListenerMatch {
            daemon_port: Some(25),
            ..Default::default()
        };
        assert!(a.ambiguity_with(&b).is_some());
        let c = ListenerMatch {
            daemon_name: Some("submission".into()),
            ..Default::default()
        };
        assert!(a.ambiguity_with(&c).is_none(), "different names never meet");
        let x = ListenerMatch {
            client: vec!["10.0.0.0/9".parse().unwrap()],
            ..Default::default()
        };
        let y = ListenerMatch {
            client: vec!["10.0.0.0/9".parse().unwrap()],
            ..Default::default()
        };
        assert!(x.ambiguity_with(&y).is_some());
    }
}
