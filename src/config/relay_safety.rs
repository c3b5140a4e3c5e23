//! Relay safety of a listener's `trusted_networks`: trusted clients relay
//! without authenticating, so a wide range is an open relay. Ranges are
//! measured together (overlaps once, `0.0.0.0/1` + `128.0.0.0/1` is the
//! whole space), as a share of their address family.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Ranges no Internet client comes from: private, shared (CGNAT),
/// loopback, link-local, unique-local. Covering them is not an open relay.
const NOT_PUBLIC: [&str; 9] = [
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// Share of its family's space one network covers (1.0 for /0).
fn share(net: &IpNet) -> f64 {
    2f64.powi(-i32::from(net.prefix_len()))
}

/// How much of each family a list of networks covers, all addresses and
/// public ones only.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Coverage {
    pub ipv4: f64,
    pub ipv6: f64,
    pub public_ipv4: f64,
    pub public_ipv6: f64,
}

pub fn coverage(nets: &[IpNet]) -> Coverage {
    let not_public: Vec<IpNet> = NOT_PUBLIC.iter().map(|n| n.parse().expect("valid")).collect();
    let mut c = Coverage::default();
    // Aggregated: disjoint, so shares add up.
    for net in IpNet::aggregate(&nets.to_vec()) {
        // The part inside non-public ranges (disjoint among themselves).
        let private: f64 = not_public
            .iter()
            .filter_map(|p| {
                if net.contains(p) {
                    Some(share(p))
                } else if p.contains(&net) {
                    Some(share(&net))
                } else {
                    None
                }
            })
            .sum();
        let public = (share(&net) - private).max(0.0);
        match net {
            IpNet::V4(_) => {
                c.ipv4 += share(&net);
                c.public_ipv4 += public;
            }
            IpNet::V6(_) => {
                c.ipv6 += share(&net);
                c.public_ipv6 += public;
            }
        }
    }
    c
}

/// The widest trusted coverage a listener may have without a warning, as
/// the prefix length of one network of that size per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustLimits {
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Default for TrustLimits {
    fn default() -> Self {
        TrustLimits {
            ipv4_prefix: 8,
            ipv6_prefix: 32,
        }
    }
}

impl TrustLimits {
    fn ipv4(&self) -> f64 {
        share(&IpNet::V4(
            Ipv4Net::new(0.into(), self.ipv4_prefix).unwrap_or_default(),
        ))
    }

    fn ipv6(&self) -> f64 {
        share(&IpNet::V6(
            Ipv6Net::new(0.into(), self.ipv6_prefix).unwrap_or_default(),
        ))
    }
}

/// What a listener's trusted networks amount to.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Narrow,
    /// Wider than the limits, all of it private: a warning.
    Wide(String),
    /// Public space wider than the limits: any Internet client in it may
    /// relay. An error unless the listener acknowledges it.
    OpenRelay(String),
}

fn describe(share: f64, family: &str) -> String {
    let prefix = -share.log2();
    if share >= 1.0 {
        format!("all of {family}")
    } else {
        format!("as much {family} space as one /{:.0}", prefix.ceil())
    }
}

pub fn judge(nets: &[IpNet], limits: TrustLimits) -> Verdict {
    let c = coverage(nets);
    // A little tolerance: shares are sums of powers of two.
    let over = |x: f64, limit: f64| x > limit * (1.0 + 1e-9);
    if over(c.public_ipv4, limits.ipv4()) {
        return Verdict::OpenRelay(format!(
            "{}, with public addresses beyond one /{}",
            describe(c.ipv4, "IPv4"),
            limits.ipv4_prefix
        ));
    }
    if over(c.public_ipv6, limits.ipv6()) {
        return Verdict::OpenRelay(format!(
            "{}, with public addresses beyond one /{}",
            describe(c.ipv6, "IPv6"),
            limits.ipv6_prefix
        ));
    }
    if over(c.ipv4, limits.ipv4()) {
        return Verdict::Wide(describe(c.ipv4, "IPv4"));
    }
    if over(c.ipv6, limits.ipv6()) {
        return Verdict::Wide(describe(c.ipv6, "IPv6"));
    }
    Verdict::Narrow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn verdict(list: &[&str]) -> Verdict {
        judge(&nets(list), TrustLimits::default())
    }

    #[test]
    fn the_whole_space_in_any_split_is_an_open_relay() {
        for list in [
            &["0.0.0.0/0"][..],
            &["0.0.0.0/1", "128.0.0.0/1"],
            &["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/2"],
            &["::/0"],
            &["2000::/3"],
            &["8.0.0.0/7"],
            &["11.0.0.0/8", "12.0.0.0/9"],
        ] {
            assert!(
                matches!(verdict(list), Verdict::OpenRelay(_)),
                "{list:?}: {:?}",
                verdict(list)
            );
        }
        assert!(format!("{:?}", verdict(&["0.0.0.0/1", "128.0.0.0/1"])).contains("all of IPv4"));
    }

    #[test]
    fn private_ranges_are_narrow_or_only_wide() {
        for list in [
            &["10.0.0.0/8"][..],
            &["192.168.0.0/16", "127.0.0.1/32"],
            &["203.0.113.0/24", "2001:db8::/48"],
            &["11.0.0.0/8"],
            &[],
        ] {
            assert_eq!(verdict(list), Verdict::Narrow, "{list:?}");
        }
        // All of RFC 1918 is more than one /8, all of it private: a warning.
        assert!(matches!(
            verdict(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]),
            Verdict::Wide(_)
        ));
        assert!(matches!(verdict(&["fc00::/7"]), Verdict::Wide(_)));
        // Overlaps count once.
        assert_eq!(
            verdict(&["10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/9"]),
            Verdict::Narrow
        );
    }

    #[test]
    fn the_limits_are_configurable() {
        let strict = TrustLimits {
            ipv4_prefix: 24,
            ipv6_prefix: 64,
        };
        assert!(matches!(
            judge(&nets(&["192.168.0.0/16"]), strict),
            Verdict::Wide(_)
        ));
        assert!(matches!(
            judge(&nets(&["198.51.100.0/23"]), strict),
            Verdict::OpenRelay(_)
        ));
        assert_eq!(judge(&nets(&["198.51.100.0/24"]), strict), Verdict::Narrow);
    }
}
