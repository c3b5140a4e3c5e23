//! `[directory]` and `[cache]`: which backend, with what settings. The live
//! directory (connections, caches) is built from these by
//! [`DirectorySettings::build`], not while parsing: `check`, the daemon and
//! a reload decide when.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use super::addresses::full_address;
use super::bounds::{secs, DAY};
use super::context::{Context, Section};
use super::raw;
use super::ConfigError;
use crate::directory::ldap::{
    is_attribute_name, LdapBackend, LdapSettings, Membership, RestrictionAttributes,
};
use crate::directory::{is_dn_reference, CacheSettings, Directory, StaticDirectory, StaticGroup, StaticUser};
use toml::Spanned;

/// `[directory]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum DirectorySettings {
    Static {
        users: Vec<StaticUser>,
        groups: Vec<StaticGroup>,
    },
    Ldap {
        settings: Box<LdapSettings>,
        cache: CacheSettings,
        /// Line of `[directory.ldap]`, for errors found when building.
        line: usize,
    },
}

impl DirectorySettings {
    /// The directory these settings describe. Reads the password file and
    /// the CA now, so a bad path is an error before anything is served; no
    /// connection is opened yet.
    pub fn build(&self) -> Result<Directory, String> {
        match self {
            DirectorySettings::Static { users, groups } => Ok(Directory::new(
                StaticDirectory::new(users, groups),
                CacheSettings::default(),
            )),
            DirectorySettings::Ldap {
                settings,
                cache,
                line,
            } => {
                let backend = LdapBackend::new((**settings).clone())
                    .map_err(|m| format!("line {line}: directory.ldap: {m}"))?;
                Ok(Directory::new(backend, *cache))
            }
        }
    }

    /// Whether a group of this name can be referred to. A static group is
    /// declared or named by a user; LDAP groups are resolved against the
    /// server by `gatehouse check`, not at load.
    pub(super) fn knows_group(&self, name: &str) -> bool {
        match self {
            DirectorySettings::Static { users, groups } => {
                groups.iter().any(|g| g.name.eq_ignore_ascii_case(name))
                    || users
                        .iter()
                        .any(|u| u.groups.iter().any(|g| g.eq_ignore_ascii_case(name)))
            }
            DirectorySettings::Ldap { .. } => true,
        }
    }

    /// Every `user:` and `group:` member of a static group names one that
    /// is defined: a typo would silently leave the intended member out of a
    /// group that grants or denies something.
    fn check_members(&self, cx: &Context, spans: &[Range<usize>]) -> Result<(), ConfigError> {
        let DirectorySettings::Static { groups, .. } = self else {
            return Ok(());
        };
        for (g, span) in groups.iter().zip(spans) {
            for member in &g.members {
                let known = match member.split_once(':') {
                    Some(("user", login)) => self.knows_user(login),
                    Some((_, name)) => self.knows_group(name),
                    None => false,
                };
                if !known {
                    return Err(cx.at(
                        span.clone(),
                        format!(
                            "group {:?}: member {member:?} is not defined in the directory",
                            g.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn knows_user(&self, login: &str) -> bool {
        match self {
            DirectorySettings::Static { users, .. } => {
                users.iter().any(|u| u.login.eq_ignore_ascii_case(login))
            }
            DirectorySettings::Ldap { .. } => true,
        }
    }
}

impl TryFrom<Section<'_, raw::RawCache>> for CacheSettings {
    type Error = ConfigError;

    fn try_from(Section { raw: c, cx }: Section<'_, raw::RawCache>) -> Result<Self, ConfigError> {
        let t = "cache";
        Ok(CacheSettings {
            capacity: cx.bounded(t, "capacity", c.capacity, 1..=10_000_000)?,
            ttl: cx.bounded(t, "ttl", c.ttl.0, secs(0)..=DAY * 7)?,
            negative_ttl: cx.bounded(t, "negative_ttl", c.negative_ttl.0, secs(0)..=DAY)?,
            stale_if_error: cx.bounded(t, "stale_if_error", c.stale_if_error.0, secs(0)..=DAY * 30)?,
            ttl_while_following: cx.bounded(
                t,
                "ttl_while_following",
                c.ttl_while_following.0,
                secs(0)..=DAY * 7,
            )?,
        })
    }
}

impl TryFrom<Section<'_, (raw::RawDirectory, CacheSettings)>> for DirectorySettings {
    type Error = ConfigError;

    fn try_from(
        Section { raw: (d, cache), cx }: Section<'_, (raw::RawDirectory, CacheSettings)>,
    ) -> Result<Self, ConfigError> {
        let users = static_users(cx, d.users)?;
        let (groups, spans) = static_groups(cx, d.groups)?;
        match (d.backend, d.ldap) {
            (raw::Backend::Static, None) => {
                let settings = DirectorySettings::Static { users, groups };
                settings.check_members(cx, &spans)?;
                Ok(settings)
            }
            (raw::Backend::Static, Some(l)) => Err(cx.at(
                l.span(),
                "[directory.ldap] is set but directory.backend is \"static\": set backend = \"ldap\"".into(),
            )),
            (raw::Backend::Ldap, None) => Err(cx.err(format!(
                "{}directory.backend = \"ldap\" needs a [directory.ldap] section",
                cx.keys.at("directory", "backend")
            ))),
            (raw::Backend::Ldap, Some(_)) if !users.is_empty() || !groups.is_empty() => Err(cx.err(
                "directory.users and directory.groups belong to the static backend; remove them or use backend = \"static\"".into(),
            )),
            (raw::Backend::Ldap, Some(l)) => {
                let line = cx.line_of(l.span());
                let settings = Box::new(LdapSettings::try_from(cx.section(l))?);
                Ok(DirectorySettings::Ldap { settings, cache, line })
            }
        }
    }
}

fn static_users(cx: &Context, raw: Vec<Spanned<raw::RawUser>>) -> Result<Vec<StaticUser>, ConfigError> {
    let mut logins = HashSet::new();
    let mut addresses = HashSet::new();
    let mut users = Vec::new();
    for u in raw {
        let span = u.span();
        let u = u.into_inner();
        if u.login.is_empty() || !logins.insert(u.login.to_lowercase()) {
            return Err(cx.at(
                span,
                format!("directory.users: login {:?} is empty or used twice", u.login),
            ));
        }
        let mut addrs = Vec::new();
        for a in &u.addresses {
            let parsed = full_address(a).ok_or_else(|| {
                cx.at(
                    span.clone(),
                    format!("directory.users {:?}: {a:?} is not an address", u.login),
                )
            })?;
            if !addresses.insert(parsed.to_string()) {
                return Err(cx.at(
                    span,
                    format!("directory.users: address {a:?} belongs to two users"),
                ));
            }
            addrs.push(parsed.to_string());
        }
        if let Some(g) = u.groups.iter().find(|g| is_dn_reference(g)) {
            return Err(cx.at(span, dn_like_group(g)));
        }
        users.push(StaticUser {
            login: u.login,
            addresses: addrs,
            groups: u.groups,
        });
    }
    Ok(users)
}

/// A static group named like a DN: rules would look it up as a DN, which
/// the static directory has none of, so no rule naming it would ever hold.
fn dn_like_group(name: &str) -> String {
    format!("directory: group name {name:?} has `=` and `,`, so rules read it as a DN; static groups are named, not DNs")
}

/// The groups, each with the span of its table.
fn static_groups(
    cx: &Context,
    raw: Vec<Spanned<raw::RawGroup>>,
) -> Result<(Vec<StaticGroup>, Vec<Range<usize>>), ConfigError> {
    let mut groups = Vec::new();
    let mut spans = Vec::new();
    let mut names = HashSet::new();
    for g in raw {
        let span = g.span();
        let g = g.into_inner();
        if g.name.is_empty() || !names.insert(g.name.to_lowercase()) {
            return Err(cx.at(
                span,
                format!("directory.groups: name {:?} is empty or used twice", g.name),
            ));
        }
        if is_dn_reference(&g.name) {
            return Err(cx.at(span, dn_like_group(&g.name)));
        }
        for member in &g.members {
            let ok = member
                .split_once(':')
                .is_some_and(|(kind, name)| matches!(kind, "user" | "group") && !name.is_empty());
            if !ok {
                return Err(cx.at(
                    span,
                    format!(
                        "group {:?}: member {member:?} must be \"user:LOGIN\" or \"group:NAME\"",
                        g.name
                    ),
                ));
            }
        }
        spans.push(span);
        groups.push(StaticGroup {
            name: g.name,
            members: g.members,
        });
    }
    Ok((groups, spans))
}

impl TryFrom<Section<'_, Spanned<raw::RawLdap>>> for LdapSettings {
    type Error = ConfigError;

    fn try_from(Section { raw, cx }: Section<'_, Spanned<raw::RawLdap>>) -> Result<Self, ConfigError> {
        let span = raw.span();
        let l = raw.into_inner();
        let t = "directory.ldap";
        cx.bounded(t, "timeout", l.timeout.0, Duration::from_millis(100)..=secs(60))?;
        cx.bounded(t, "failback_after", l.failback_after.0, secs(1)..=DAY)?;
        cx.bounded(
            t,
            "follow_interval",
            l.follow_interval.0,
            Duration::from_millis(100)..=secs(60),
        )?;
        cx.bounded(t, "pool_size", l.pool_size, 1..=256)?;
        cx.bounded(t, "page_size", l.page_size, 1..=100_000)?;
        cx.bounded(t, "max_depth", l.max_depth, 1..=100)?;
        cx.bounded(t, "max_groups", l.max_groups, 1..=1_000_000)?;
        if let Some(file) = &l.bind_password_file {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(file) {
                if meta.permissions().mode() & 0o004 != 0 {
                    cx.warn(format!(
                        "{}directory.ldap.bind_password_file {file:?} is readable by every local user (chmod 0640, group gatehouse)",
                        cx.keys.at(t, "bind_password_file")
                    ));
                }
            }
        }
        let proxy = l
            .address_attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("proxyAddresses"));
        if proxy
            && !l
                .user_filter
                .to_ascii_lowercase()
                .contains("(proxyaddresses={address})")
        {
            cx.warn(format!(
                "{}directory.ldap.user_filter does not search proxyAddresses: a sender writing from one of a user's aliases is not found by it (add (proxyAddresses={{address}}); gatehouse adds the smtp: type)",
                cx.keys.at(t, "user_filter")
            ));
        }
        ldap_settings(l).map_err(|m| cx.at(span, format!("directory.ldap: {m}")))
    }
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
    let login_attributes = l.login_attribute.into_vec();
    if login_attributes.is_empty() || login_attributes.iter().any(|a| !is_attribute_name(a)) {
        return Err(format!(
            "login_attribute {login_attributes:?} must be one attribute name or a non-empty list of them"
        ));
    }
    for a in &l.address_attributes {
        if !is_attribute_name(a) {
            return Err(format!("address_attributes: {a:?} is not an attribute name"));
        }
    }
    if let Some(d) = &l.netbios_domain {
        if d.is_empty()
            || d.len() > 15
            || !d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "netbios_domain {d:?} must be a down-level domain name (the EXAMPLE of EXAMPLE\\alice: up to 15 letters, digits, - or _)"
            ));
        }
    }
    if let Some(name) = &l.tls_server_name {
        if l.ca_file.is_none() {
            return Err(format!(
                "tls_server_name {name:?} needs ca_file (the CA that signed the servers' certificates)"
            ));
        }
        if !l.starttls && !l.urls.iter().all(|u| u.starts_with("ldaps://")) {
            return Err(format!(
                "tls_server_name {name:?} is set but an ldap:// URL would not use TLS: set starttls = true or use ldaps://"
            ));
        }
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(format!(
                "tls_server_name {name:?} is not a host name or IP address"
            ));
        }
    }
    if !l.nested && matches!(l.membership, Membership::AdInChain | Membership::AdTokenGroups) {
        return Err(
            "nested = false cannot hold with membership = \"ad-in-chain\" or \"ad-token-groups\": the server answers nested groups too (use \"memberof\")"
                .into(),
        );
    }
    if l.bind_dn.is_some() != l.bind_password_file.is_some() {
        return Err("bind_dn and bind_password_file go together (omit both for an anonymous bind)".into());
    }
    Ok(LdapSettings {
        urls: l.urls,
        starttls: l.starttls,
        ca_file: l.ca_file.map(PathBuf::from),
        tls_server_name: l.tls_server_name,
        bind_dn: l.bind_dn,
        bind_password_file: l.bind_password_file.map(PathBuf::from),
        group_base_dn: l.group_base_dn.unwrap_or_else(|| l.base_dn.clone()),
        base_dn: l.base_dn,
        user_filter: l.user_filter,
        login_attributes,
        netbios_domain: l.netbios_domain,
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
        recipient_aliases: l.recipient_aliases,
        follow_changes: l.follow_changes,
        follow_interval: l.follow_interval.0,
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
