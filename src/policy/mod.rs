//! The rules. Pure and synchronous: given a compiled [`Policy`], the session's
//! [`Subject`] (already resolved in the directory) and the envelope, each
//! function returns a [`Decision`] naming the rule that made it. No sockets,
//! no clock, no logging: every rule is tested with tables of cases.
//!
//! Order (Exchange's, see the design): at MAIL anonymous access, submit
//! permission, send-as, anonymous local sender; at RCPT relay, postmaster
//! exemption, then recipient restrictions (require-auth, deny list, allow
//! list). Deny beats allow.

pub mod address;
pub mod listener;
pub mod reply;
mod rules;

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::IpNet;

pub use address::{Address, AddressError};
pub use listener::{ListenerContext, ListenerMatch};
pub use reply::{Replies, ReplyKind, ReplyTemplate};
pub use rules::{
    evaluate_invalid_rcpt, evaluate_mail, evaluate_rcpt, evaluate_rcpt_after_mail, evaluate_rcpt_with,
    stricter,
};

use crate::directory::{DirectoryUnavailable, ResolvedUser};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Monitor,
}

/// What to do when a rule needs the directory and it cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryErrorAction {
    Tempfail,
    Accept,
    Reject,
}

/// Allow/deny group lists of a listener's submit or relay permission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRule {
    pub allow_groups: Vec<String>,
    pub deny_groups: Vec<String>,
}

impl GroupRule {
    pub fn is_open(&self) -> bool {
        self.allow_groups.is_empty() && self.deny_groups.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub matcher: ListenerMatch,
    pub allow_anonymous: bool,
    pub trusted_networks: Vec<IpNet>,
    pub reject_anonymous_local_sender: bool,
    pub require_sender_match: bool,
    pub submit: GroupRule,
    pub relay: GroupRule,
    pub mode: Option<Mode>,
}

/// A reference to senders in a recipient's lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderRef {
    Group(String),
    User(String),
    Sender(Address),
    /// A directory entry by DN (restrictions stored on the recipient: `authOrig`).
    Dn(String),
}

impl std::fmt::Display for SenderRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SenderRef::Group(g) => write!(f, "group:{g}"),
            SenderRef::User(u) => write!(f, "user:{u}"),
            SenderRef::Sender(a) => write!(f, "sender:{a}"),
            SenderRef::Dn(d) => write!(f, "dn:{d}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecipientRule {
    pub address: Address,
    pub require_authenticated: bool,
    pub accept_from: Vec<SenderRef>,
    pub reject_from: Vec<SenderRef>,
    pub mode: Option<Mode>,
}

impl RecipientRule {
    /// The restrictions a recipient's directory entry stores, as a rule.
    pub fn from_stored(address: &Address, s: &crate::directory::RecipientEntry) -> RecipientRule {
        RecipientRule {
            address: address.clone(),
            require_authenticated: s.require_authenticated,
            accept_from: s
                .accept_senders
                .iter()
                .map(|d| SenderRef::Dn(d.clone()))
                .chain(s.accept_groups.iter().map(|g| SenderRef::Group(g.clone())))
                .collect(),
            reject_from: s
                .reject_senders
                .iter()
                .map(|d| SenderRef::Dn(d.clone()))
                .chain(s.reject_groups.iter().map(|g| SenderRef::Group(g.clone())))
                .collect(),
            mode: None,
        }
    }
}

/// Restrictions found on the recipient's own directory entry, as the
/// enforcer hands them to the rules.
#[derive(Debug, Clone, Copy)]
pub enum StoredRule<'a> {
    /// None stored (or the feature is off).
    None,
    /// Every one applies; the strictest decides.
    Rules(&'a [RecipientRule]),
    /// The directory could not say: `on_directory_error` decides an outage,
    /// an unusable answer is a tempfail.
    Unavailable(crate::directory::Fault),
}

/// `example.com` (exactly) or `.example.com` (every subdomain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPattern {
    pub domain: String,
    pub subdomains: bool,
}

impl DomainPattern {
    pub fn parse(s: &str) -> Result<DomainPattern, String> {
        let lower = s.trim().trim_end_matches('.').to_lowercase();
        let (subdomains, domain) = match lower.strip_prefix('.') {
            Some(d) => (true, d.to_string()),
            None => (false, lower),
        };
        let label_ok = |l: &str| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if domain.is_empty() || !domain.split('.').all(label_ok) {
            return Err(format!("{s:?} is not a domain (example.com or .example.com)"));
        }
        Ok(DomainPattern { domain, subdomains })
    }

    pub fn matches(&self, domain: &str) -> bool {
        if self.subdomains {
            domain.len() > self.domain.len() + 1
                && domain.ends_with(&self.domain)
                && domain.as_bytes()[domain.len() - self.domain.len() - 1] == b'.'
        } else {
            domain == self.domain
        }
    }
}

/// A whole configuration, compiled and immutable. Reload builds a new one.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Increases with every successful (re)load; stamped on every decision log line.
    pub version: u64,
    pub mode: Mode,
    pub on_directory_error: DirectoryErrorAction,
    /// One budget for everything a MAIL or RCPT asks of the directory; on
    /// expiry the decision follows `on_directory_error`.
    pub decision_timeout: std::time::Duration,
    pub local_domains: Vec<DomainPattern>,
    pub addresses: AddressSettings,
    pub listeners: Vec<Listener>,
    /// Used when no other listener matches.
    pub default_listener: Option<Listener>,
    pub recipients: HashMap<Address, RecipientRule>,
    pub replies: Replies,
    /// `[log] accepted`: accepted decisions logged with every field.
    pub log_accepted: bool,
}

/// How envelope addresses are completed and compared (`[addresses]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSettings {
    /// Completes a bare local part (`all-staff`, `all-staff@`) as the MTA does.
    pub default_domain: Option<String>,
    /// Characters that start an address extension (`+` for `user+tag`); empty: none.
    pub recipient_delimiter: String,
    /// Whether the MTA's own resolution of a recipient is judged too.
    pub mta_view: MtaView,
    /// Domains the MTA delivers by local part, to its aliases and local
    /// users (Postfix `mydestination`, Sendmail class `w`): a recipient
    /// there can mean the same-named list of the default domain.
    pub local_delivery_domains: Vec<DomainPattern>,
}

impl Default for AddressSettings {
    fn default() -> Self {
        AddressSettings {
            default_domain: None,
            recipient_delimiter: String::new(),
            mta_view: MtaView::Enforce,
            local_delivery_domains: Vec::new(),
        }
    }
}

/// What to do with the MTA's resolution of a recipient (`{rcpt_addr}`, `{rcpt_mailer}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MtaView {
    /// Judge it like the typed address; the stricter decision wins.
    Enforce,
    /// Judge it and log where it would decide differently, but decide by the typed address.
    Log,
}

impl Policy {
    /// Every group the rules name (by name or DN), with where it is used.
    pub fn group_references(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for l in self.listeners.iter().chain(self.default_listener.iter()) {
            for (what, list) in [
                ("submit.allow_groups", &l.submit.allow_groups),
                ("submit.deny_groups", &l.submit.deny_groups),
                ("relay.allow_groups", &l.relay.allow_groups),
                ("relay.deny_groups", &l.relay.deny_groups),
            ] {
                for g in list {
                    out.push((g.clone(), format!("listener {:?} {what}", l.name)));
                }
            }
        }
        for r in self.recipients.values() {
            for (what, list) in [("accept_from", &r.accept_from), ("reject_from", &r.reject_from)] {
                for s in list {
                    if let SenderRef::Group(g) = s {
                        out.push((g.clone(), format!("recipient {} {what}", r.address)));
                    }
                }
            }
        }
        out
    }

    /// Local: a valid, unrouted mailbox in a local domain. A bare local part
    /// is local only when no default domain completes it (the MTA then
    /// delivers it here); routed addresses are never local.
    pub fn is_local(&self, address: &Address) -> bool {
        if address.is_routed() || !address.has_valid_domain() {
            return false;
        }
        address.domain.is_empty() || self.local_domains.iter().any(|p| p.matches(&address.domain))
    }

    /// Whether an address names one of our domains in any spelling an MTA
    /// could deliver here: itself or any hop of its route, syntax aside.
    /// For the spoofing check on claimed senders, where a wrong "yes" is
    /// only a refusal of an anonymous claim.
    pub fn claims_local_domain(&self, address: &Address) -> bool {
        std::iter::once(address.clone())
            .chain(address.route_targets())
            .map(|a| a.completed(self.addresses.default_domain.as_deref()))
            .any(|a| a.domain.is_empty() || self.local_domains.iter().any(|p| p.matches(&a.domain)))
    }

    /// Whether any `[[recipient]]` rule is configured.
    pub fn restricts_recipients(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// The `[[recipient]]` rules that apply to `address` under any of its
    /// [`Policy::restriction_keys`].
    pub fn configured_restrictions(&self, address: &Address) -> Vec<&RecipientRule> {
        if self.recipients.is_empty() {
            return Vec::new();
        }
        let plain = !address.is_routed()
            && !address.domain.is_empty()
            && address
                .without_extension(&self.addresses.recipient_delimiter)
                .is_none()
            && !self.delivers_by_local_part(address);
        if plain {
            // The common case, on every RCPT: the address is its only spelling.
            return self.recipients.get(address).into_iter().collect();
        }
        self.restriction_keys(address)
            .iter()
            .filter_map(|k| self.recipients.get(k))
            .collect()
    }

    /// Whether the MTA delivers `address` by its local part (a domain of
    /// `addresses.local_delivery_domains`).
    fn delivers_by_local_part(&self, address: &Address) -> bool {
        !address.is_routed()
            && self
                .addresses
                .local_delivery_domains
                .iter()
                .any(|d| d.matches(&address.domain))
    }

    /// Every spelling under which a restricted recipient could be meant by
    /// `address`: itself, without its extension, and each hop of its route
    /// (completed with the default domain), each without extension too; a
    /// hop in a local-delivery domain also as its local part in the default
    /// domain (the MTA delivers it to the same alias).
    pub fn restriction_keys(&self, address: &Address) -> Vec<Address> {
        let delimiters = self.addresses.recipient_delimiter.as_str();
        let default = self.addresses.default_domain.as_deref();
        let mut keys: Vec<Address> = Vec::new();
        let hops = std::iter::once(address.clone()).chain(address.route_targets());
        let by_local_part = |hop: Address| {
            let local = self.delivers_by_local_part(&hop);
            let as_default = default.filter(|d| local && hop.domain != *d).map(|d| Address {
                local: hop.local.clone(),
                domain: d.to_string(),
            });
            std::iter::once(hop).chain(as_default)
        };
        for hop in hops.map(|a| a.completed(default)).flat_map(by_local_part) {
            let base = hop.without_extension(delimiters);
            for k in std::iter::once(hop).chain(base) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        keys
    }

    /// What a reload from `old` to this policy takes away: listeners and
    /// restricted recipients that are gone, for the log (a file cut short
    /// must not drop restrictions silently).
    pub fn removed_since(&self, old: &Policy) -> Vec<String> {
        let names = |p: &Policy| -> Vec<String> {
            p.listeners
                .iter()
                .chain(p.default_listener.iter())
                .map(|l| l.name.to_ascii_lowercase())
                .collect()
        };
        let now = names(self);
        let mut removed: Vec<String> = names(old)
            .into_iter()
            .filter(|n| !now.contains(n))
            .map(|n| format!("listener {n:?}"))
            .collect();
        let mut gone: Vec<String> = old
            .recipients
            .keys()
            .filter(|a| !self.recipients.contains_key(*a))
            .map(|a| format!("the restrictions on {a}"))
            .collect();
        gone.sort();
        removed.extend(gone);
        removed
    }

    /// The listener for a session, most specific match first, else `default`.
    pub fn select_listener(&self, ctx: &ListenerContext<'_>) -> Option<ListenerId> {
        self.listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.matcher.specificity(ctx).map(|s| (s, i)))
            // On equal specificity (refused at load) the first listener wins.
            .max_by_key(|(s, i)| (*s, std::cmp::Reverse(*i)))
            .map(|(_, i)| ListenerId::Index(i))
            .or(self.default_listener.as_ref().map(|_| ListenerId::Default))
    }

    pub fn listener_by_id(&self, id: ListenerId) -> &Listener {
        match id {
            ListenerId::Index(i) => &self.listeners[i],
            ListenerId::Default => self
                .default_listener
                .as_ref()
                .expect("id came from select_listener"),
        }
    }

    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners
            .iter()
            .chain(self.default_listener.iter())
            .find(|l| l.name.eq_ignore_ascii_case(name))
    }
}

/// A listener of one policy snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerId {
    Index(usize),
    Default,
}

/// How the session's client is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Anonymous,
    /// SASL-authenticated (`{auth_authen}`).
    Authenticated,
    /// Client address inside the listener's trusted networks; identity = envelope sender.
    Trusted,
}

/// The session's identity as resolved in the directory before the rules run.
#[derive(Debug, Clone)]
pub struct Subject {
    pub kind: SubjectKind,
    /// SASL login for Authenticated.
    pub login: Option<String>,
    /// Directory entry: `Ok(None)` unknown to the directory; `Err` the
    /// directory could not answer. Always `Ok(None)` for Anonymous: an
    /// anonymous sender is only a claim and is never resolved.
    pub user: Result<Option<Arc<ResolvedUser>>, DirectoryUnavailable>,
}

impl Subject {
    pub fn anonymous() -> Subject {
        Subject {
            kind: SubjectKind::Anonymous,
            login: None,
            user: Ok(None),
        }
    }
}

/// A decision in words, rendered in this one place for the MTA, the log and
/// `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedDecision {
    /// See [`Decision::action_name`].
    pub action: &'static str,
    /// The SMTP reply of a refusal (code, enhanced code, text): what the MTA
    /// is told, or would be told when the decision is only monitored.
    pub reply: Option<String>,
    /// Whether the MTA is told the reply.
    pub sent: bool,
}

impl Policy {
    /// A refusal as a Postfix policy-delegation answer (see
    /// [`reply::ReplyTemplate::action`]); `None` when `d` lets through or
    /// has no reply of its own.
    pub fn render_action(&self, d: &Decision, rcpt: Option<&Address>) -> Option<String> {
        if d.lets_through() {
            return None;
        }
        let rcpt = rcpt.map(|r| r.to_string());
        d.reply_kind()
            .map(|k| self.replies.get(k).action(rcpt.as_deref()))
    }

    pub fn render(&self, d: &Decision, rcpt: Option<&Address>) -> RenderedDecision {
        RenderedDecision {
            action: d.action_name(),
            reply: d.reply_kind().map(|k| {
                let rcpt = rcpt.map(|r| r.to_string());
                self.replies.get(k).render(rcpt.as_deref())
            }),
            sent: !d.lets_through(),
        }
    }
}

/// What a rule decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    Reject(ReplyKind),
    Tempfail(ReplyKind),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Name of the rule that decided (`relay`, `recipient_accept_from`, …).
    pub rule: &'static str,
    /// The rule said reject/tempfail but the effective mode is monitor.
    pub monitored: bool,
    /// Membership path behind the decision, if a membership made it.
    pub path: Option<MembershipPath>,
}

/// A membership path (user → group → parent group), shared with the
/// directory's answer: deciding copies no names.
pub type MembershipPath = Arc<[String]>;

impl Decision {
    /// The membership path behind the decision (empty when none made it).
    pub fn path(&self) -> &[String] {
        self.path.as_deref().unwrap_or_default()
    }

    /// Whether the MTA is told to go on (accepted, or only monitored).
    pub fn lets_through(&self) -> bool {
        self.action == Action::Accept || self.monitored
    }

    pub fn reply_kind(&self) -> Option<ReplyKind> {
        match self.action {
            Action::Accept => None,
            Action::Reject(k) | Action::Tempfail(k) => Some(k),
        }
    }

    /// `accept`, `reject`, `tempfail`, or `monitored` for a refusal that
    /// monitor mode let through.
    pub fn action_name(&self) -> &'static str {
        if self.monitored {
            return "monitored";
        }
        match self.action {
            Action::Accept => "accept",
            Action::Reject(_) => "reject",
            Action::Tempfail(_) => "tempfail",
        }
    }
}
