//! The file's shape, as serde reads it. Value types validate themselves while
//! deserializing so errors point at the offending line.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use toml::Spanned;

use crate::directory::follow::FollowMethod;
use crate::directory::ldap::Membership;
use crate::directory::CacheSettings;
use crate::milter::Endpoint;
use crate::policy::{DirectoryErrorAction, DomainPattern, Mode, MtaView, ReplyKind};

/// A value parsed from a string with `FromStr`-like validation.
macro_rules! string_value {
    ($name:ident, $inner:ty, $parse:expr) => {
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(pub $inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                let parse: fn(&str) -> Result<$inner, String> = $parse;
                parse(&s).map($name).map_err(de::Error::custom)
            }
        }
    };
}

string_value!(Dur, Duration, parse_duration);
string_value!(Net, IpNet, parse_net);
string_value!(Domain, DomainPattern, DomainPattern::parse);
string_value!(Socket, Endpoint, |s| Endpoint::parse(s)
    .map_err(|e| e.to_string()));

/// `"30s"`, `"5m"`, `"1h"`, `"500ms"`, `"2d"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like \"30s\", \"5m\", \"1h\""))?;
    let unit_secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unit must be ms, s, m, h or d")),
    };
    // Far beyond every range a key allows; those are checked at load.
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// A CIDR network; a bare address is a /32 or /128.
fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(n) = IpNet::from_str(s) {
        if n.trunc() != n {
            return Err(format!("{s:?} has host bits set (did you mean {}?)", n.trunc()));
        }
        return Ok(n);
    }
    IpAddr::from_str(s)
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not an IP network like \"10.0.0.0/8\" or \"2001:db8::/32\""))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub milter: RawMilter,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub directory: RawDirectory,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub domains: RawDomains,
    #[serde(default)]
    pub addresses: RawAddresses,
    #[serde(default)]
    pub listener: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub recipient: Vec<Spanned<RawRecipient>>,
    #[serde(default)]
    pub replies: RawReplies,
    #[serde(default)]
    pub safety: RawSafety,
    #[serde(default)]
    pub policy_service: RawPolicyService,
    #[serde(default)]
    pub metrics: RawMetrics,
}

/// `[metrics]`: the Prometheus endpoint, off without `listen`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

/// `[policy_service]`: Postfix's policy delegation, off without `listen`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicyService {
    pub listen: Vec<Socket>,
    pub socket_mode: String,
    pub max_connections: usize,
    pub idle_timeout: Dur,
    pub request_timeout: Dur,
    pub max_request_bytes: usize,
    pub max_attributes: usize,
}

impl Default for RawPolicyService {
    fn default() -> Self {
        RawPolicyService {
            listen: Vec::new(),
            socket_mode: "0660".into(),
            max_connections: 1024,
            // Above Postfix's smtpd_policy_service_max_idle (300s): Postfix
            // closes first and never finds its connection gone.
            idle_timeout: Dur(Duration::from_secs(330)),
            request_timeout: Dur(Duration::from_secs(10)),
            max_request_bytes: 16384,
            max_attributes: 128,
        }
    }
}

/// `[safety]`: how wide trusted networks may be.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSafety {
    pub trusted_ipv4_prefix: u8,
    pub trusted_ipv6_prefix: u8,
}

impl Default for RawSafety {
    fn default() -> Self {
        let d = super::relay_safety::TrustLimits::default();
        RawSafety {
            trusted_ipv4_prefix: d.ipv4_prefix,
            trusted_ipv6_prefix: d.ipv6_prefix,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMilter {
    pub listen: Vec<Socket>,
    pub socket_mode: String,
    pub max_connections: usize,
    pub idle_timeout: Dur,
    pub shutdown_timeout: Dur,
    pub max_packet_size: usize,
    pub max_macro_bytes: usize,
    pub max_read_rate: u64,
    pub decision_timeout: Dur,
    pub on_directory_error: DirectoryErrorAction,
    pub mode: Mode,
}

impl Default for RawMilter {
    fn default() -> Self {
        RawMilter {
            listen: vec![Socket(
                Endpoint::parse("inet:127.0.0.1:8890").expect("valid default"),
            )],
            socket_mode: "0660".into(),
            max_connections: 4096,
            idle_timeout: Dur(Duration::from_secs(300)),
            shutdown_timeout: Dur(Duration::from_secs(30)),
            max_packet_size: 1 << 20,
            max_macro_bytes: crate::milter::session::DEFAULT_MACRO_BUDGET,
            max_read_rate: 1 << 20,
            decision_timeout: Dur(Duration::from_secs(5)),
            on_directory_error: DirectoryErrorAction::Tempfail,
            mode: Mode::Enforce,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: LogFormat,
    pub level: String,
    pub accepted: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: LogFormat::Text,
            level: "info".into(),
            accepted: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Static,
    Ldap,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawDirectory {
    pub backend: Backend,
    pub users: Vec<Spanned<RawUser>>,
    pub groups: Vec<Spanned<RawGroup>>,
    pub ldap: Option<Spanned<RawLdap>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLdap {
    pub urls: Vec<String>,
    pub starttls: bool,
    pub ca_file: Option<String>,
    pub tls_server_name: Option<String>,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<String>,
    pub base_dn: String,
    pub group_base_dn: Option<String>,
    pub user_filter: String,
    pub login_attribute: OneOrMany,
    pub netbios_domain: Option<String>,
    pub address_attributes: Vec<String>,
    pub membership: Membership,
    pub memberof_attribute: String,
    pub group_filter: String,
    pub group_name_attribute: String,
    pub nested: bool,
    pub max_depth: usize,
    pub max_groups: usize,
    pub timeout: Dur,
    pub pool_size: usize,
    pub page_size: i32,
    pub failback_after: Dur,
    pub recipient_aliases: bool,
    pub follow_changes: FollowMethod,
    pub follow_interval: Dur,
    pub recipient_restrictions: RawRestrictions,
}

/// A key that takes one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `[directory.ldap.recipient_restrictions]`: restrictions read from the
/// recipient's own entry (Exchange attribute names by default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRestrictions {
    pub enabled: bool,
    pub require_auth_attribute: String,
    pub accept_senders_attribute: String,
    pub reject_senders_attribute: String,
    pub accept_groups_attribute: String,
    pub reject_groups_attribute: String,
}

impl Default for RawRestrictions {
    fn default() -> Self {
        RawRestrictions {
            enabled: false,
            require_auth_attribute: "msExchRequireAuthToSendTo".into(),
            accept_senders_attribute: "authOrig".into(),
            reject_senders_attribute: "unauthOrig".into(),
            accept_groups_attribute: "dLMemSubmitPerms".into(),
            reject_groups_attribute: "dLMemRejectPerms".into(),
        }
    }
}

impl Default for RawLdap {
    fn default() -> Self {
        RawLdap {
            urls: Vec::new(),
            starttls: false,
            ca_file: None,
            tls_server_name: None,
            bind_dn: None,
            bind_password_file: None,
            base_dn: String::new(),
            group_base_dn: None,
            user_filter: "(&(objectClass=inetOrgPerson)(|(uid={login})(mail={address})))".into(),
            login_attribute: OneOrMany::One("uid".into()),
            netbios_domain: None,
            address_attributes: vec!["mail".into()],
            membership: Membership::MemberOf,
            memberof_attribute: "memberOf".into(),
            group_filter: "(&(objectClass=groupOfNames)(member={dn}))".into(),
            group_name_attribute: "cn".into(),
            nested: true,
            max_depth: 10,
            max_groups: 1000,
            timeout: Dur(Duration::from_secs(3)),
            pool_size: 4,
            page_size: 500,
            failback_after: Dur(Duration::from_secs(30)),
            recipient_aliases: true,
            follow_changes: FollowMethod::Off,
            follow_interval: Dur(Duration::from_secs(1)),
            recipient_restrictions: RawRestrictions::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    pub capacity: usize,
    pub ttl: Dur,
    pub negative_ttl: Dur,
    pub stale_if_error: Dur,
    pub ttl_while_following: Dur,
}

impl Default for RawCache {
    fn default() -> Self {
        let d = CacheSettings::default();
        RawCache {
            capacity: d.capacity,
            ttl: Dur(d.ttl),
            negative_ttl: Dur(d.negative_ttl),
            stale_if_error: Dur(d.stale_if_error),
            ttl_while_following: Dur(d.ttl_while_following),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub login: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawDomains {
    pub local: Vec<Domain>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawAddresses {
    pub default_domain: Option<Spanned<String>>,
    pub recipient_delimiter: Option<Spanned<String>>,
    pub mta_view: Option<MtaView>,
    #[serde(default)]
    pub local_delivery_domains: Vec<Spanned<Domain>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: RawMatch,
    #[serde(default = "yes")]
    pub allow_anonymous: bool,
    #[serde(default)]
    pub trusted_networks: Vec<Net>,
    #[serde(default)]
    pub reject_anonymous_local_sender: bool,
    #[serde(default)]
    pub require_sender_match: bool,
    #[serde(default)]
    pub submit: RawGroupRule,
    #[serde(default)]
    pub relay: RawGroupRule,
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Trusted networks with public space wider than `[safety]` allows are
    /// an error unless this says the open relay is meant.
    #[serde(default)]
    pub acknowledge_open_relay: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawMatch {
    pub daemon_name: Option<String>,
    pub daemon_addr: Option<IpAddr>,
    pub daemon_port: Option<u16>,
    pub socket: Option<Socket>,
    pub client: Vec<Net>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawGroupRule {
    pub allow_groups: Vec<String>,
    pub deny_groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipient {
    pub address: String,
    #[serde(default)]
    pub require_authenticated: bool,
    #[serde(default)]
    pub accept_from: Vec<String>,
    #[serde(default)]
    pub reject_from: Vec<String>,
    #[serde(default)]
    pub mode: Option<Mode>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawReplies {
    pub anonymous_forbidden: Option<Spanned<String>>,
    pub submit_denied: Option<Spanned<String>>,
    pub relay_anonymous: Option<Spanned<String>>,
    pub relay_denied: Option<Spanned<String>>,
    pub recipient_requires_auth: Option<Spanned<String>>,
    pub recipient_not_authorized: Option<Spanned<String>>,
    pub send_as_denied: Option<Spanned<String>>,
    pub anonymous_local_sender: Option<Spanned<String>>,
    pub invalid_recipient: Option<Spanned<String>>,
    pub directory_unavailable: Option<Spanned<String>>,
    pub no_listener: Option<Spanned<String>>,
}

impl RawReplies {
    pub fn entries(self) -> Vec<(ReplyKind, Option<Spanned<String>>)> {
        vec![
            (ReplyKind::AnonymousForbidden, self.anonymous_forbidden),
            (ReplyKind::SubmitDenied, self.submit_denied),
            (ReplyKind::RelayAnonymous, self.relay_anonymous),
            (ReplyKind::RelayDenied, self.relay_denied),
            (ReplyKind::RecipientRequiresAuth, self.recipient_requires_auth),
            (ReplyKind::RecipientNotAuthorized, self.recipient_not_authorized),
            (ReplyKind::SendAsDenied, self.send_as_denied),
            (ReplyKind::AnonymousLocalSender, self.anonymous_local_sender),
            (ReplyKind::InvalidRecipient, self.invalid_recipient),
            (ReplyKind::DirectoryUnavailable, self.directory_unavailable),
            (ReplyKind::NoListener, self.no_listener),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "5", "5x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert_eq!(parse_net("192.0.2.1").unwrap().to_string(), "192.0.2.1/32");
        assert!(parse_net("10.0.0.1/8").is_err(), "host bits");
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
    }
}
