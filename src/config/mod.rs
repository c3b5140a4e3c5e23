//! The configuration file: TOML → validated, immutable structs.
//!
//! Field-level errors (a bad duration, network, socket or enum value, an
//! unknown key) are raised while deserializing, so the toml crate names the
//! line, column and key. Cross-field errors (duplicate listener, ambiguous
//! matches, undefined group) carry the span of the table they are about and
//! are reported with its line number.

mod bounds;
mod raw;
mod relay_safety;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::directory::cache::Cache;
use crate::directory::ldap::{LdapBackend, LdapSettings, Membership, RestrictionAttributes};
use crate::directory::{CacheSettings, CachedLdap, Directory, StaticDirectory, StaticGroup, StaticUser};
use crate::policy::{
    Address, AddressSettings, DirectoryErrorAction, DomainPattern, GroupRule, Listener, ListenerMatch, Mode,
    MtaView, Policy, RecipientRule, Replies, ReplyKind, ReplyTemplate, SenderRef,
};
use crate::server::ServerSettings;

pub use raw::{Dur, LogFormat};

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// A loaded configuration.
pub struct Config {
    pub path: PathBuf,
    pub server: ServerSettings,
    pub log: LogSettings,
    pub policy: Arc<Policy>,
    pub directory: Arc<Directory>,
    /// Legal but risky settings, for the log and `check`.
    pub warnings: Vec<String>,
}

static VERSION: AtomicU64 = AtomicU64::new(0);

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&source, path)
}

/// Parse and validate `source` (read from `path`, used in messages).
pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigError> {
    let err = |message: String| ConfigError {
        file: path.to_path_buf(),
        message,
    };
    let raw: raw::RawConfig =
        toml::from_str(source).map_err(|e| err(e.to_string().trim_end().to_string()))?;
    let at = |span: std::ops::Range<usize>, msg: String| {
        let line = source[..span.start.min(source.len())].matches('\n').count() + 1;
        err(format!("line {line}: {msg}"))
    };
    let mut warnings = Vec::new();

    let keys = bounds::KeyLines::new(source);

    // [log]
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if !LEVELS.contains(&raw.log.level.as_str()) {
        return Err(err(format!(
            "{}log.level = {:?} is not one of {}",
            keys.at("log", "level"),
            raw.log.level,
            LEVELS.join(", ")
        )));
    }

    // [milter]
    let m = raw.milter;
    keys.check("milter", "max_connections", m.max_connections, 1..=1_000_000)
        .map_err(err)?;
    keys.check(
        "milter",
        "idle_timeout",
        m.idle_timeout.0,
        bounds::secs(1)..=bounds::DAY,
    )
    .map_err(err)?;
    keys.check(
        "milter",
        "shutdown_timeout",
        m.shutdown_timeout.0,
        bounds::secs(0)..=bounds::secs(3600),
    )
    .map_err(err)?;
    keys.check("milter", "max_packet_size", m.max_packet_size, 65536..=64 << 20)
        .map_err(err)?;
    keys.check(
        "milter",
        "max_macro_bytes",
        m.max_macro_bytes,
        1024..=m.max_packet_size,
    )
    .map_err(err)?;
    keys.check("milter", "max_read_rate", m.max_read_rate, 65536..=1 << 30)
        .map_err(err)?;
    let decision_timeout = keys
        .check(
            "milter",
            "decision_timeout",
            m.decision_timeout.0,
            Duration::from_millis(100)..=bounds::secs(60),
        )
        .map_err(err)?;
    if decision_timeout >= Duration::from_secs(10) {
        warnings.push(format!(
            "milter.decision_timeout = {decision_timeout:?} is not below the shipped MTA timeouts (Postfix milter_command_timeout = 10s, Sendmail T=S:10s): the MTA may give up first and apply its own default action"
        ));
    }
    let socket_mode = u32::from_str_radix(m.socket_mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            err(format!(
                "milter.socket_mode = {:?} is not an octal file mode like \"0660\"",
                m.socket_mode
            ))
        })?;
    if socket_mode & 0o002 != 0
        && m.listen
            .iter()
            .any(|e| matches!(e.0, crate::milter::Endpoint::Unix(_)))
    {
        warnings.push(format!(
            "{}milter.socket_mode = {:?} lets every local user talk to gatehouse as the MTA (use 0660 and the MTA's group)",
            keys.at("milter", "socket_mode"),
            m.socket_mode
        ));
    }
    let mut seen = HashSet::new();
    for e in &m.listen {
        if !seen.insert(e.0.to_string()) {
            return Err(err(format!("milter.listen names {} twice", e.0)));
        }
    }
    let server = ServerSettings {
        endpoints: m.listen.into_iter().map(|e| e.0).collect(),
        socket_mode,
        max_connections: m.max_connections,
        idle_timeout: m.idle_timeout.0,
        shutdown_timeout: m.shutdown_timeout.0,
        max_packet_size: m.max_packet_size,
        max_macro_bytes: m.max_macro_bytes,
        max_read_rate: m.max_read_rate,
    };

    // [directory]
    let d = raw.directory;
    let mut logins = HashSet::new();
    let mut addresses = HashSet::new();
    let mut users = Vec::new();
    for u in d.users {
        let span = u.span();
        let u = u.into_inner();
        if u.login.is_empty() || !logins.insert(u.login.to_lowercase()) {
            return Err(at(
                span,
                format!("directory.users: login {:?} is empty or used twice", u.login),
            ));
        }
        let mut addrs = Vec::new();
        for a in &u.addresses {
            let parsed = full_address(a).ok_or_else(|| {
                at(
                    span.clone(),
                    format!("directory.users {:?}: {a:?} is not an address", u.login),
                )
            })?;
            if !addresses.insert(parsed.to_string()) {
                return Err(at(
                    span,
                    format!("directory.users: address {a:?} belongs to two users"),
                ));
            }
            addrs.push(parsed.to_string());
        }
        users.push(StaticUser {
            login: u.login,
            addresses: addrs,
            groups: u.groups,
        });
    }
    let mut groups = Vec::new();
    let mut group_names = HashSet::new();
    for g in d.groups {
        let span = g.span();
        let g = g.into_inner();
        if g.name.is_empty() || !group_names.insert(g.name.to_lowercase()) {
            return Err(at(
                span,
                format!("directory.groups: name {:?} is empty or used twice", g.name),
            ));
        }
        for member in &g.members {
            let ok = member
                .split_once(':')
                .is_some_and(|(kind, name)| matches!(kind, "user" | "group") && !name.is_empty());
            if !ok {
                return Err(at(
                    span,
                    format!(
                        "group {:?}: member {member:?} must be \"user:LOGIN\" or \"group:NAME\"",
                        g.name
                    ),
                ));
            }
        }
        groups.push(StaticGroup {
            name: g.name,
            members: g.members,
        });
    }
    let cache = CacheSettings {
        capacity: keys
            .check("cache", "capacity", raw.cache.capacity, 1..=10_000_000)
            .map_err(err)?,
        ttl: keys
            .check("cache", "ttl", raw.cache.ttl.0, bounds::secs(0)..=bounds::DAY * 7)
            .map_err(err)?,
        negative_ttl: keys
            .check(
                "cache",
                "negative_ttl",
                raw.cache.negative_ttl.0,
                bounds::secs(0)..=bounds::DAY,
            )
            .map_err(err)?,
        stale_if_error: keys
            .check(
                "cache",
                "stale_if_error",
                raw.cache.stale_if_error.0,
                bounds::secs(0)..=bounds::DAY * 30,
            )
            .map_err(err)?,
    };
    let directory = match (d.backend, d.ldap) {
        (raw::Backend::Static, None) => Directory::Static(StaticDirectory::new(&users, &groups)),
        (raw::Backend::Static, Some(l)) => {
            return Err(at(
                l.span(),
                "[directory.ldap] is set but directory.backend is \"static\": set backend = \"ldap\"".into(),
            ))
        }
        (raw::Backend::Ldap, None) => {
            return Err(err(format!(
                "{}directory.backend = \"ldap\" needs a [directory.ldap] section",
                keys.at("directory", "backend")
            )))
        }
        (raw::Backend::Ldap, Some(l)) => {
            if !users.is_empty() || !groups.is_empty() {
                return Err(err(
                    "directory.users and directory.groups belong to the static backend; remove them or use backend = \"static\"".into(),
                ));
            }
            let span = l.span();
            let r = l.get_ref();
            let t = "directory.ldap";
            keys.check(
                t,
                "timeout",
                r.timeout.0,
                Duration::from_millis(100)..=bounds::secs(60),
            )
            .map_err(err)?;
            keys.check(
                t,
                "failback_after",
                r.failback_after.0,
                bounds::secs(1)..=bounds::DAY,
            )
            .map_err(err)?;
            keys.check(t, "pool_size", r.pool_size, 1..=256).map_err(err)?;
            keys.check(t, "page_size", r.page_size, 1..=100_000)
                .map_err(err)?;
            keys.check(t, "max_depth", r.max_depth, 1..=100).map_err(err)?;
            keys.check(t, "max_groups", r.max_groups, 1..=1_000_000)
                .map_err(err)?;
            if let Some(file) = &r.bind_password_file {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(file) {
                    if meta.permissions().mode() & 0o004 != 0 {
                        warnings.push(format!(
                            "{}directory.ldap.bind_password_file {file:?} is readable by every local user (chmod 0640, group gatehouse)",
                            keys.at("directory.ldap", "bind_password_file")
                        ));
                    }
                }
            }
            let settings = ldap_settings(l.into_inner())
                .map_err(|m| at(span.clone(), format!("directory.ldap: {m}")))?;
            let backend = LdapBackend::new(settings).map_err(|m| at(span, format!("directory.ldap: {m}")))?;
            Directory::Ldap(Box::new(CachedLdap {
                backend,
                cache: Cache::new(cache),
                restrictions: Cache::new(cache),
            }))
        }
    };
    let directory = Arc::new(directory);
    let known_group = |name: &str| match &*directory {
        Directory::Static(d) => d.has_group(name),
        // Resolved against the server by `gatehouse check`, not at load.
        Directory::Ldap(_) => true,
    };

    // [domains]
    let local_domains = raw
        .domains
        .local
        .into_iter()
        .map(|d| d.0)
        .collect::<Vec<DomainPattern>>();
    if local_domains.is_empty() {
        warnings.push("domains.local is empty: every recipient counts as relaying".into());
    }

    // [addresses]
    let addresses = address_settings(raw.addresses, &local_domains)
        .map_err(|(span, m)| at(span, format!("addresses.{m}")))?;

    // [safety]
    let limits = relay_safety::TrustLimits {
        ipv4_prefix: keys
            .check(
                "safety",
                "trusted_ipv4_prefix",
                raw.safety.trusted_ipv4_prefix,
                0..=32,
            )
            .map_err(err)?,
        ipv6_prefix: keys
            .check(
                "safety",
                "trusted_ipv6_prefix",
                raw.safety.trusted_ipv6_prefix,
                0..=128,
            )
            .map_err(err)?,
    };

    // [[listener]]
    let mut listeners: Vec<Listener> = Vec::new();
    let mut default_listener = None;
    let mut catch_all = None;
    let mut spans = Vec::new();
    for l in raw.listener {
        let span = l.span();
        let l = l.into_inner();
        if l.name.is_empty() {
            return Err(at(span, "listener without a name".into()));
        }
        if listeners
            .iter()
            .chain(default_listener.iter())
            .any(|x: &Listener| x.name.eq_ignore_ascii_case(&l.name))
        {
            return Err(at(span, format!("listener {:?} is defined twice", l.name)));
        }
        for g in l
            .submit
            .allow_groups
            .iter()
            .chain(&l.submit.deny_groups)
            .chain(&l.relay.allow_groups)
            .chain(&l.relay.deny_groups)
        {
            if !known_group(g) {
                return Err(at(
                    span,
                    format!(
                        "listener {:?}: group {g:?} is not defined in the directory",
                        l.name
                    ),
                ));
            }
        }
        let mm = l.matcher;
        let matcher = ListenerMatch {
            daemon_name: mm.daemon_name,
            daemon_addr: mm.daemon_addr,
            daemon_port: mm.daemon_port,
            socket: mm.socket.map(|s| s.0.to_string()),
            client: mm.client.into_iter().map(|n| n.0).collect(),
        };
        let trusted: Vec<_> = l.trusted_networks.iter().map(|n| n.0).collect();
        match relay_safety::judge(&trusted, limits) {
            relay_safety::Verdict::Narrow => {}
            relay_safety::Verdict::Wide(what) => warnings.push(format!(
                "listener {:?}: trusted_networks cover {what} (more than [safety] allows): every client there may relay without authenticating",
                l.name
            )),
            relay_safety::Verdict::OpenRelay(what) if l.acknowledge_open_relay => warnings.push(format!(
                "listener {:?}: trusted_networks cover {what}: an open relay for those clients (acknowledged)",
                l.name
            )),
            relay_safety::Verdict::OpenRelay(what) => {
                return Err(at(
                    span,
                    format!(
                        "listener {:?}: trusted_networks cover {what}: any client there may relay without authenticating (an open relay). Narrow the ranges, or set acknowledge_open_relay = true if that is meant",
                        l.name
                    ),
                ))
            }
        }
        let listener = Listener {
            name: l.name,
            matcher,
            allow_anonymous: l.allow_anonymous,
            trusted_networks: trusted,
            reject_anonymous_local_sender: l.reject_anonymous_local_sender,
            require_sender_match: l.require_sender_match,
            submit: GroupRule {
                allow_groups: l.submit.allow_groups,
                deny_groups: l.submit.deny_groups,
            },
            relay: GroupRule {
                allow_groups: l.relay.allow_groups,
                deny_groups: l.relay.deny_groups,
            },
            mode: l.mode,
        };
        if listener.name == "default" {
            if listener.matcher != ListenerMatch::default() {
                return Err(at(
                    span,
                    "listener \"default\" is used when no other matches: give it no match keys".into(),
                ));
            }
            default_listener = Some(listener);
            continue;
        }
        if let Some(socket) = &listener.matcher.socket {
            if !server.endpoints.iter().any(|e| e.to_string() == *socket) {
                return Err(at(
                    span,
                    format!(
                        "listener {:?}: match.socket {socket:?} is not in milter.listen",
                        listener.name
                    ),
                ));
            }
        }
        for (other, _) in listeners.iter().zip(&spans) {
            if let Some(why) = listener.matcher.ambiguity_with(&other.matcher) {
                return Err(at(
                    span,
                    format!(
                        "listeners {:?} and {:?} are ambiguous: {why}",
                        other.name, listener.name
                    ),
                ));
            }
        }
        if listener.matcher == ListenerMatch::default() {
            catch_all = Some((listener.name.clone(), span.clone()));
        }
        spans.push(span);
        listeners.push(listener);
    }
    if let (Some((name, span)), Some(_)) = (catch_all, &default_listener) {
        // It would silently take every session "default" is there for.
        return Err(at(
            span,
            format!("listener {name:?} has no match keys: a second catch-all beside \"default\""),
        ));
    }
    if listeners.is_empty() && default_listener.is_none() {
        // An empty or cut file: refused rather than answering 451 to all.
        return Err(err(
            "no [[listener]]: there is no policy to enforce (an empty or truncated file?)".into(),
        ));
    }

    // [[recipient]]
    let mut recipients = HashMap::new();
    for r in raw.recipient {
        let span = r.span();
        let r = r.into_inner();
        let address = full_address(&r.address).ok_or_else(|| {
            at(
                span.clone(),
                format!("recipient {:?} is not an address", r.address),
            )
        })?;
        let refs = |list: &[String]| -> Result<Vec<SenderRef>, ConfigError> {
            list.iter()
                .map(|s| parse_sender_ref(s, &known_group, &directory))
                .collect::<Result<_, _>>()
                .map_err(|m| at(span.clone(), format!("recipient {:?}: {m}", r.address)))
        };
        let rule = RecipientRule {
            accept_from: refs(&r.accept_from)?,
            reject_from: refs(&r.reject_from)?,
            address: address.clone(),
            require_authenticated: r.require_authenticated,
            mode: r.mode,
        };
        if recipients.insert(address.clone(), rule).is_some() {
            return Err(at(span, format!("recipient {address} is listed twice")));
        }
    }

    // [replies]
    let mut replies = Replies::default();
    for (kind, text) in raw.replies.entries() {
        if let Some(text) = text {
            let span = text.span();
            let t = ReplyTemplate::parse(text.get_ref())
                .map_err(|m| at(span, format!("replies.{}: {m}", kind.key())))?;
            if kind == ReplyKind::DirectoryUnavailable && !t.is_temporary() {
                warnings.push("replies.directory_unavailable is permanent (5xx): mail is bounced while the directory is down".into());
            }
            replies.set(kind, t);
        }
    }

    let policy = Policy {
        version: VERSION.fetch_add(1, Ordering::Relaxed) + 1,
        mode: m.mode,
        on_directory_error: m.on_directory_error,
        decision_timeout,
        local_domains,
        addresses,
        listeners,
        default_listener,
        recipients,
        replies,
    };
    Ok(Config {
        path: path.to_path_buf(),
        server,
        log: LogSettings {
            format: raw.log.format,
            level: raw.log.level,
        },
        policy: Arc::new(policy),
        directory,
        warnings,
    })
}

/// `[addresses]`: the default domain must be one of ours (it completes bare
/// local parts, which the MTA delivers here) and defaults to the first
/// exact local domain; the delimiter is a few punctuation characters.
fn address_settings(
    a: raw::RawAddresses,
    local: &[DomainPattern],
) -> Result<AddressSettings, (std::ops::Range<usize>, String)> {
    let default_domain = match a.default_domain {
        Some(d) => {
            let span = d.span();
            let p = DomainPattern::parse(d.get_ref())
                .ok()
                .filter(|p| !p.subdomains)
                .ok_or_else(|| {
                    (
                        span.clone(),
                        format!("default_domain: {:?} is not a domain", d.get_ref()),
                    )
                })?;
            if !local.iter().any(|l| l.matches(&p.domain)) {
                return Err((
                    span,
                    format!(
                        "default_domain: {:?} is not in domains.local (bare addresses are delivered here)",
                        p.domain
                    ),
                ));
            }
            Some(p.domain)
        }
        None => local.iter().find(|l| !l.subdomains).map(|l| l.domain.clone()),
    };
    let recipient_delimiter = match a.recipient_delimiter {
        Some(d) => {
            let ok = d.get_ref().chars().count() <= 8
                && d.get_ref()
                    .chars()
                    .all(|c| c.is_ascii_punctuation() && !"@.\"\\<>()[],;:".contains(c));
            if !ok {
                return Err((
                    d.span(),
                    format!(
                        "recipient_delimiter: {:?} must be a few punctuation characters such as \"+\" (not @ . \" \\ or brackets)",
                        d.get_ref()
                    ),
                ));
            }
            d.into_inner()
        }
        None => String::new(),
    };
    Ok(AddressSettings {
        default_domain,
        recipient_delimiter,
        mta_view: a.mta_view.unwrap_or(MtaView::Enforce),
    })
}

/// An address written in the configuration: valid, with a domain, unrouted.
fn full_address(s: &str) -> Option<Address> {
    Address::parse(s)
        .ok()
        .flatten()
        .filter(|a| !a.domain.is_empty() && !a.is_routed())
}

fn ldap_settings(l: raw::RawLdap) -> Result<LdapSettings, String> {
    if l.urls.is_empty() {
        return Err("urls is empty".into());
    }
    for u in &l.urls {
        if !(u.starts_with("ldap://") || u.starts_with("ldaps://")) {
            return Err(format!("url {u:?} must start with ldap:// or ldaps://"));
        }
    }
    if l.base_dn.trim().is_empty() {
        return Err("base_dn is empty".into());
    }
    if !l.user_filter.contains("{login}") && !l.user_filter.contains("{address}") {
        return Err("user_filter must contain {login} or {address}".into());
    }
    for (name, f) in [("user_filter", &l.user_filter), ("group_filter", &l.group_filter)] {
        if !balanced(f) {
            return Err(format!("{name} {f:?} has unbalanced parentheses"));
        }
    }
    if l.membership == Membership::Search
        && !l.group_filter.contains("{dn}")
        && !l.group_filter.contains("{login}")
    {
        return Err("membership = \"search\" needs {dn} or {login} in group_filter".into());
    }
    if l.bind_dn.is_some() != l.bind_password_file.is_some() {
        return Err("bind_dn and bind_password_file go together (omit both for an anonymous bind)".into());
    }
    Ok(LdapSettings {
        urls: l.urls,
        starttls: l.starttls,
        ca_file: l.ca_file.map(PathBuf::from),
        bind_dn: l.bind_dn,
        bind_password_file: l.bind_password_file.map(PathBuf::from),
        group_base_dn: l.group_base_dn.unwrap_or_else(|| l.base_dn.clone()),
        base_dn: l.base_dn,
        user_filter: l.user_filter,
        login_attribute: l.login_attribute,
        address_attributes: l.address_attributes,
        membership: l.membership,
        memberof_attribute: l.memberof_attribute,
        group_filter: l.group_filter,
        group_name_attribute: l.group_name_attribute,
        nested: l.nested,
        max_depth: l.max_depth,
        max_groups: l.max_groups,
        timeout: l.timeout.0,
        pool_size: l.pool_size,
        page_size: l.page_size,
        failback_after: l.failback_after.0,
        recipient_restrictions: {
            let r = l.recipient_restrictions;
            r.enabled.then_some(RestrictionAttributes {
                require_auth: r.require_auth_attribute,
                accept_senders: r.accept_senders_attribute,
                reject_senders: r.reject_senders_attribute,
                accept_groups: r.accept_groups_attribute,
                reject_groups: r.reject_groups_attribute,
            })
        },
    })
}

/// Parentheses of an LDAP filter template balance (escapes are `\28`/`\29`, never raw).
fn balanced(filter: &str) -> bool {
    let mut depth = 0i32;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0 && filter.starts_with('(')
}

fn parse_sender_ref(
    s: &str,
    known_group: &dyn Fn(&str) -> bool,
    dir: &Directory,
) -> Result<SenderRef, String> {
    match s.split_once(':') {
        Some(("group", g)) if known_group(g) => Ok(SenderRef::Group(g.to_string())),
        Some(("group", g)) => Err(format!("group {g:?} is not defined in the directory")),
        Some(("user", u)) if !matches!(dir, Directory::Static(d) if !d.has_user(u)) => {
            Ok(SenderRef::User(u.to_string()))
        }
        Some(("user", u)) => Err(format!("user {u:?} is not defined in the directory")),
        Some(("sender", a)) => full_address(a)
            .map(SenderRef::Sender)
            .ok_or_else(|| format!("{a:?} is not an address")),
        _ => Err(format!(
            "{s:?} must be \"group:NAME\", \"user:LOGIN\" or \"sender:ADDRESS\""
        )),
    }
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

impl DirectoryErrorAction {
    pub fn name(self) -> &'static str {
        match self {
            DirectoryErrorAction::Tempfail => "tempfail",
            DirectoryErrorAction::Accept => "accept",
            DirectoryErrorAction::Reject => "reject",
        }
    }
}
