//! The LDAP backend (ldap3): finds a user entry by login or address and the
//! user's groups, nested, in one of three membership modes.
//!
//! - `memberof`: the user's `memberOf` values, then each group's own
//!   `memberOf`, breadth-first (OpenLDAP memberof overlay, 389-ds, AD).
//! - `search`: groups found with `group_filter` (`{dn}` = member DN,
//!   `{login}` = uid for posixGroup memberUid), then groups that contain
//!   those groups, breadth-first.
//! - `ad-in-chain`: one search with Active Directory's transitive rule
//!   `member:1.2.840.113556.1.4.1941:=`; the server walks the chain.
//! - `ad-token-groups`: the user's `tokenGroups` (every security group it is
//!   in, transitively, as SIDs, computed by the DC) in one base-scope read,
//!   resolved to groups in one search (as SSSD does). Security groups only.
//!
//! In the two Active Directory modes the server answers the transitive set
//! without the chain; the chain shown in logs and `explain` is rebuilt from
//! the user's and the found groups' `memberOf`, read in the same searches,
//! and a group it cannot place is shown as reached through "…", never as a
//! direct membership.
//!
//! Active Directory's ways apply whatever the mode: `proxyAddresses`
//! values count as addresses only with an `smtp:` prefix (any case), which
//! is stripped (`X500:`, `SIP:` … are not mail addresses); a disabled
//! account (`userAccountControl` bit 0x2) is a member of no group.
//!
//! Client-side expansion keeps a visited set (cycles are harmless), stops at
//! `max_depth` and at `max_groups`. Every value put into a filter is escaped
//! per RFC 4515 (`ldap3::ldap_escape`); DNs taken from the directory are
//! escaped the same way when they go into a filter.
//!
//! Servers are tried in the order of `urls`; a server that fails (refused,
//! or timed out) is skipped for a short back-off, 1 s then 2 s, counted per
//! server: the pool slots that fail at the same moment count once, and a
//! recovered server is used again within two seconds. A connection to a later
//! server is given up after `failback_after`, so the first server gets the
//! traffic back when it recovers. An operation that fails on a pooled
//! connection is retried once on a new one (a restarted server leaves dead
//! connections behind).

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::adapters::{EntriesOnly, PagedResults};
use ldap3::{ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::follow::{Change, FollowMethod, SYNC_REQUEST_OID};
use super::{
    Answer, Backend, DirectoryUnavailable, Finding, GroupNames, Memberships, NamedGroup, Pending,
    RecipientEntry, ResolvedUser, UserEntry, UserKey, UNKNOWN_CHAIN,
};

/// Short on purpose: a probe of a dead server every two seconds costs one
/// connection attempt, and a recovered server must be used again at once.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Membership {
    #[serde(rename = "memberof")]
    MemberOf,
    #[serde(rename = "search")]
    Search,
    #[serde(rename = "ad-in-chain")]
    AdInChain,
    #[serde(rename = "ad-token-groups")]
    AdTokenGroups,
}

impl Membership {
    /// Modes in which the server answers the transitive set of groups.
    fn server_side(self) -> bool {
        matches!(self, Membership::AdInChain | Membership::AdTokenGroups)
    }
}

/// The attribute in which Exchange keeps a recipient's addresses, each with
/// its type (`SMTP:` primary, `smtp:` alias, `X500:`, `SIP:` …).
const PROXY_ADDRESSES: &str = "proxyAddresses";

/// Active Directory's account flags and the "account disabled" bit.
const USER_ACCOUNT_CONTROL: &str = "userAccountControl";
const ACCOUNT_DISABLED: u32 = 0x2;

/// `[directory.ldap]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LdapSettings {
    pub urls: Vec<String>,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    /// Verify the server's certificate against this name instead of the
    /// URL's host (an IP address, a load balancer's name).
    pub tls_server_name: Option<String>,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    pub base_dn: String,
    pub group_base_dn: String,
    pub user_filter: String,
    /// Attributes whose values are the user's logins; the first names the
    /// user (AD: `sAMAccountName`, then `userPrincipalName`).
    pub login_attributes: Vec<String>,
    /// Active Directory's down-level (NetBIOS) domain: `DOMAIN\login` is
    /// the login `login`. Unset: a backslash login is looked up as typed.
    pub netbios_domain: Option<String>,
    pub address_attributes: Vec<String>,
    pub membership: Membership,
    pub memberof_attribute: String,
    pub group_filter: String,
    pub group_name_attribute: String,
    pub nested: bool,
    pub max_depth: usize,
    pub max_groups: usize,
    pub timeout: Duration,
    pub pool_size: usize,
    pub page_size: i32,
    /// A connection to a server later in `urls` is dropped after this long,
    /// so traffic returns to the first server once it is back.
    pub failback_after: Duration,
    /// Directory-driven restrictions: attribute names on the recipient's entry.
    pub recipient_restrictions: Option<RestrictionAttributes>,
    /// A recipient's entry is read for its other addresses, so that a
    /// `[[recipient]]` rule holds under every alias of the list it names.
    pub recipient_aliases: bool,
    /// How directory changes are followed (see [`super::follow`]).
    pub follow_changes: FollowMethod,
    /// Active Directory: how often `uSNChanged` is polled.
    pub follow_interval: Duration,
}

/// Where a recipient's own entry keeps its delivery restrictions (Exchange
/// names by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestrictionAttributes {
    /// Boolean: only authenticated senders (`msExchRequireAuthToSendTo`).
    pub require_auth: String,
    /// DNs of senders allowed (`authOrig`) / refused (`unauthOrig`).
    pub accept_senders: String,
    pub reject_senders: String,
    /// DNs of groups whose members are allowed (`dLMemSubmitPerms`) / refused (`dLMemRejectPerms`).
    pub accept_groups: String,
    pub reject_groups: String,
}

impl RestrictionAttributes {
    pub fn names(&self) -> [&str; 5] {
        [
            &self.require_auth,
            &self.accept_senders,
            &self.reject_senders,
            &self.accept_groups,
            &self.reject_groups,
        ]
    }
}

struct Server {
    url: String,
    state: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    failures: u32,
    down_until: Option<Instant>,
}

struct Pooled {
    ldap: Ldap,
    server: usize,
    since: Instant,
}

pub struct LdapBackend {
    settings: LdapSettings,
    password: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    servers: Vec<Server>,
    pool: Vec<tokio::sync::Mutex<Option<Pooled>>>,
    next: AtomicUsize,
    /// LDAP search operations sent, for the benchmark and the logs.
    operations: AtomicU64,
    /// Active Directory (`netbios_domain` set): the domain's DNS name, from
    /// `base_dn`'s DC components, for implicit UPN logins.
    ad_dns_domain: Option<String>,
}

fn unavailable(msg: impl Into<String>) -> DirectoryUnavailable {
    DirectoryUnavailable::outage(msg)
}

/// The server answered, but nothing safe follows from the answer.
fn unusable(msg: impl Into<String>) -> DirectoryUnavailable {
    DirectoryUnavailable::permanent(msg)
}

/// LDAP result codes that say "later" (timeLimitExceeded, busy,
/// unavailable, other); every other failure code is the same next time.
fn rc_is_transient(rc: u32) -> bool {
    matches!(rc, 3 | 51 | 52 | 80)
}

impl LdapBackend {
    /// Read the password file and CA now, so a bad path is a start-up error.
    pub fn new(settings: LdapSettings) -> Result<LdapBackend, String> {
        let password = match &settings.bind_password_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("bind_password_file {}: {e}", p.display()))?;
                Some(text.trim_end_matches(['\n', '\r']).to_string())
            }
            None => None,
        };
        let tls = match &settings.ca_file {
            Some(ca) => Some(Arc::new(tls_config(ca, settings.tls_server_name.as_deref())?)),
            None => None,
        };
        let servers = settings
            .urls
            .iter()
            .map(|u| {
                crate::metrics::know_directory_server(u);
                Server {
                    url: u.clone(),
                    state: Mutex::new(Health::default()),
                }
            })
            .collect();
        let pool = (0..settings.pool_size.max(1))
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        Ok(LdapBackend {
            password,
            tls,
            servers,
            pool,
            next: AtomicUsize::new(0),
            operations: AtomicU64::new(0),
            ad_dns_domain: settings_dns_domain(&settings),
            settings,
        })
    }

    pub fn settings(&self) -> &LdapSettings {
        &self.settings
    }

    /// A backend with the same servers and credentials and a pool of one,
    /// for the change follower: its searches never wait behind lookups.
    pub(super) fn follower_copy(&self) -> LdapBackend {
        let settings = LdapSettings {
            pool_size: 1,
            ..self.settings.clone()
        };
        LdapBackend {
            password: self.password.clone(),
            tls: self.tls.clone(),
            servers: settings
                .urls
                .iter()
                .map(|u| Server {
                    url: u.clone(),
                    state: Mutex::new(Health::default()),
                })
                .collect(),
            pool: vec![tokio::sync::Mutex::new(None)],
            next: AtomicUsize::new(0),
            operations: AtomicU64::new(0),
            ad_dns_domain: self.ad_dns_domain.clone(),
            settings,
        }
    }

    /// A connection of its own (for a persistent search) and its server's URL.
    pub(super) async fn follower_connection(&self) -> Result<(Ldap, String), DirectoryUnavailable> {
        let p = self.connect_any().await?;
        Ok((p.ldap, self.servers[p.server].url.clone()))
    }

    /// The follow method the server's root DSE announces, if any.
    pub(super) async fn follow_method_offered(&self) -> Result<Option<FollowMethod>, DirectoryUnavailable> {
        let e = self
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                &["supportedControl", "supportedCapabilities"],
            )
            .await?;
        let Some(e) = e.first() else {
            return Ok(None);
        };
        if attr(e, "supportedCapabilities")
            .iter()
            .any(|c| c == AD_CAPABILITY)
        {
            return Ok(Some(FollowMethod::Ad));
        }
        Ok(attr(e, "supportedControl")
            .iter()
            .any(|c| c == SYNC_REQUEST_OID)
            .then_some(FollowMethod::Syncrepl))
    }

    /// What the follower reads of a changed entry: enough to tell whose
    /// cached answers it can affect.
    pub(super) fn watched_attributes(&self) -> Vec<String> {
        let s = &self.settings;
        let mut attrs: Vec<String> = ["member", "uniqueMember", "memberUid"]
            .into_iter()
            .map(String::from)
            .collect();
        attrs.extend(s.login_attributes.iter().cloned());
        attrs.extend(s.address_attributes.iter().cloned());
        attrs.push(s.group_name_attribute.clone());
        attrs.extend(
            filter_member_attributes(&s.group_filter)
                .into_iter()
                .map(|(a, _)| a),
        );
        attrs.sort_by_key(|a| a.to_lowercase());
        attrs.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        attrs
    }

    /// A changed entry as the cache sees it; a deleted one by its DN alone.
    pub(super) async fn change_of(
        &self,
        e: &SearchEntry,
        deleted: bool,
    ) -> Result<Change, DirectoryUnavailable> {
        let mut change = Change {
            dn: e.dn.clone(),
            ..Change::default()
        };
        if deleted {
            return Ok(change);
        }
        // Ranged on Active Directory for groups of more than 1,500 members.
        change.members = self.all_values(e, "member").await?;
        change.members.extend(attr(e, "uniqueMember"));
        change.member_logins = attr(e, "memberUid");
        // Whatever else group_filter reads membership from.
        for (a, by_login) in filter_member_attributes(&self.settings.group_filter) {
            if ["member", "uniqueMember", "memberUid"]
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&a))
            {
                continue;
            }
            let values = attr(e, &a);
            if by_login {
                change.member_logins.extend(values);
            } else {
                change.members.extend(values);
            }
        }
        let s = &self.settings;
        let mut names: Vec<String> = s
            .login_attributes
            .iter()
            .chain([&s.group_name_attribute])
            .flat_map(|a| attr(e, a))
            .map(|v| v.to_lowercase())
            .collect();
        names.extend(self.own_addresses(&e.attrs));
        names.sort();
        names.dedup();
        change.names = names;
        Ok(change)
    }

    /// OpenLDAP: the `contextCSN` of the database holding `base` (on its
    /// suffix entry), `;`-joined as a sync cookie carries it.
    pub(super) async fn context_csn(&self, base: &str) -> Option<String> {
        let root = self
            .search("", Scope::Base, "(objectClass=*)", &["namingContexts"])
            .await
            .ok()?;
        let base_key = super::dn_key(base).into_owned();
        let suffix = root
            .first()
            .map(|e| attr(e, "namingContexts"))
            .unwrap_or_default()
            .into_iter()
            .filter(|n| {
                let n = super::dn_key(n).into_owned();
                !n.is_empty() && (base_key == n || base_key.ends_with(&format!(",{n}")))
            })
            .max_by_key(String::len)?;
        let e = self
            .search(&suffix, Scope::Base, "(objectClass=*)", &["contextCSN"])
            .await
            .ok()?;
        let csns = attr(e.first()?, "contextCSN");
        (!csns.is_empty()).then(|| csns.join(";"))
    }

    /// Active Directory: the DC answering (`dsServiceName`) and its
    /// `highestCommittedUSN`.
    pub(super) async fn dc_state(&self) -> Result<(String, u64), DirectoryUnavailable> {
        let e = self
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                &["dsServiceName", "highestCommittedUSN"],
            )
            .await?;
        let e = e.first().ok_or_else(|| unusable("no root DSE"))?;
        let dc = first(e, "dsServiceName")
            .ok_or_else(|| unusable("root DSE without dsServiceName: not Active Directory"))?;
        let usn = first(e, "highestCommittedUSN")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| unusable("root DSE without a highestCommittedUSN"))?;
        Ok((dc, usn))
    }

    /// Active Directory: whether this account can list deleted objects
    /// (`CN=Deleted Objects` under `base_dn`, with Show Deleted).
    pub(super) async fn sees_deleted_objects(&self) -> bool {
        let container = format!("CN=Deleted Objects,{}", self.settings.base_dn);
        let show_deleted = ldap3::controls::RawControl {
            ctype: SHOW_DELETED_OID.into(),
            crit: false,
            val: None,
        };
        self.search_with(
            &container,
            Scope::Base,
            "(objectClass=*)",
            &["1.1"],
            vec![show_deleted],
        )
        .await
        .is_ok_and(|e| !e.is_empty())
    }

    /// Entries under `base` written with a USN in `from..=to`, each with
    /// whether it is a deleted object (seen only with the rights to).
    pub(super) async fn changed_since(
        &self,
        base: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(SearchEntry, bool)>, DirectoryUnavailable> {
        let filter = format!("(&(uSNChanged>={from})(uSNChanged<={to}))");
        let mut attrs = self.watched_attributes();
        attrs.push("isDeleted".into());
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let show_deleted = ldap3::controls::RawControl {
            ctype: SHOW_DELETED_OID.into(),
            crit: false,
            val: None,
        };
        let entries = self
            .search_with(base, Scope::Subtree, &filter, &attrs, vec![show_deleted])
            .await?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let deleted = first(&e, "isDeleted").is_some_and(|v| v.eq_ignore_ascii_case("TRUE"));
                (e, deleted)
            })
            .collect())
    }

    async fn connect(&self, index: usize) -> Result<Ldap, String> {
        let s = &self.settings;
        let url = &self.servers[index].url;
        let mut conn_settings = LdapConnSettings::new()
            .set_conn_timeout(s.timeout)
            .set_starttls(s.starttls && url.starts_with("ldap://"));
        if let Some(tls) = &self.tls {
            conn_settings = conn_settings.set_config(tls.clone());
        }
        let (conn, mut ldap) =
            tokio::time::timeout(s.timeout, LdapConnAsync::with_settings(conn_settings, url))
                .await
                .map_err(|_| format!("{url}: connect timed out after {:?}", s.timeout))?
                .map_err(|e| format!("{url}: {e}"))?;
        ldap3::drive!(conn);
        if let Some(dn) = &s.bind_dn {
            let pw = self.password.as_deref().unwrap_or("");
            let r = ldap
                .with_timeout(s.timeout)
                .simple_bind(dn, pw)
                .await
                .map_err(|e| format!("{url}: bind: {e}"))?;
            if r.rc != 0 {
                // The password is never part of the message.
                return Err(format!("{url}: bind as {dn} refused: rc={} {}", r.rc, r.text));
            }
        }
        Ok(ldap)
    }

    /// First healthy server in order; a failed one is backed off.
    async fn connect_any(&self) -> Result<Pooled, DirectoryUnavailable> {
        let mut errors = Vec::new();
        for (i, server) in self.servers.iter().enumerate() {
            let now = Instant::now();
            if lock(&server.state).down_until.is_some_and(|t| now < t) {
                errors.push(format!("{}: backing off", server.url));
                continue;
            }
            match self.connect(i).await {
                Ok(ldap) => {
                    let mut h = lock(&server.state);
                    if h.failures > 0 {
                        tracing::info!(server = %server.url, "directory server reachable again");
                    }
                    *h = Health::default();
                    if i > 0 {
                        crate::metrics::count_failover(&server.url);
                    }
                    return Ok(Pooled {
                        ldap,
                        server: i,
                        since: Instant::now(),
                    });
                }
                Err(e) => {
                    self.record_failure(i, &e);
                    errors.push(e);
                }
            }
        }
        Err(unavailable(format!(
            "no directory server reachable: {}",
            errors.join("; ")
        )))
    }

    /// Back a failed server off. Failures while it is already backed off
    /// (other pool slots, failing at the same moment) do not count again;
    /// the first failure of an outage is logged, the rest at debug level.
    fn record_failure(&self, server: usize, error: &str) {
        let s = &self.servers[server];
        let mut h = lock(&s.state);
        let now = Instant::now();
        if h.down_until.is_some_and(|t| now < t) {
            return;
        }
        h.failures += 1;
        let backoff = (Duration::from_millis(500) * (1 << h.failures.min(3))).min(MAX_BACKOFF);
        h.down_until = Some(now + backoff);
        if h.failures == 1 {
            tracing::warn!(server = %s.url, error = %error, retry_in = ?backoff, "directory server failed");
        } else {
            tracing::debug!(server = %s.url, error = %error, failures = h.failures, "directory server still failing");
        }
    }

    /// A live connection handle from the pool (ldap3 multiplexes operations
    /// on it): (handle, pool slot, server index).
    async fn handle(&self) -> Result<(Ldap, usize, usize), DirectoryUnavailable> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let mut guard = self.pool[slot].lock().await;
        if let Some(p) = guard.as_mut() {
            let failback = p.server > 0 && p.since.elapsed() > self.settings.failback_after;
            if !p.ldap.is_closed() && !failback {
                return Ok((p.ldap.clone(), slot, p.server));
            }
        }
        *guard = None;
        let p = self.connect_any().await?;
        let (ldap, server) = (p.ldap.clone(), p.server);
        *guard = Some(p);
        Ok((ldap, slot, server))
    }

    async fn discard(&self, slot: usize) {
        *self.pool[slot].lock().await = None;
    }

    /// Search with paging; `Ok(empty)` when the base does not exist.
    pub async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, DirectoryUnavailable> {
        self.search_with(base, scope, filter, attrs, Vec::new()).await
    }

    /// [`LdapBackend::search`] with request controls.
    async fn search_with(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        controls: Vec<ldap3::controls::RawControl>,
    ) -> Result<Vec<SearchEntry>, DirectoryUnavailable> {
        let mut last = None;
        for attempt in 0..2 {
            let (ldap, slot, server) = self.handle().await?;
            self.operations.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = self
                .search_on(ldap, base, scope, filter, attrs, controls.clone())
                .await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(SearchError::Fatal(_)) => "error",
                Err(SearchError::Connection(_)) => "unreachable",
            };
            crate::metrics::count_directory_operation(&self.servers[server].url, outcome, started.elapsed());
            match result {
                Ok(entries) => return Ok(entries),
                Err(SearchError::Fatal(e)) => return Err(e),
                Err(SearchError::Connection(e)) => {
                    // A server that times out is backed off like one that
                    // refuses; a dead pooled connection alone (the server
                    // restarted) is not the server's failure: the retry on a
                    // new connection tells.
                    if attempt > 0 {
                        self.record_failure(server, &e.0);
                    }
                    self.discard(slot).await;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| unavailable("search failed")))
    }

    async fn search_on(
        &self,
        mut ldap: Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        controls: Vec<ldap3::controls::RawControl>,
    ) -> Result<Vec<SearchEntry>, SearchError> {
        let t = self.settings.timeout;
        let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
        let run = async {
            let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> = vec![
                Box::new(EntriesOnly::new()),
                Box::new(PagedResults::new(self.settings.page_size)),
            ];
            if !controls.is_empty() {
                ldap.with_controls(controls);
            }
            let mut stream = ldap
                .with_timeout(t)
                .streaming_search_with(adapters, base, scope, filter, attrs)
                .await
                .map_err(|e| SearchError::Connection(unavailable(format!("search {filter}: {e}"))))?;
            let mut out = Vec::new();
            loop {
                match stream.next().await {
                    Ok(Some(entry)) => out.push(construct(entry).map_err(SearchError::Fatal)?),
                    Ok(None) => break,
                    Err(e) => {
                        return Err(SearchError::Connection(unavailable(format!(
                            "search {filter}: {e}"
                        ))));
                    }
                }
            }
            let res = stream.finish().await;
            match res.rc {
                0 => Ok(out),
                32 => Ok(Vec::new()), // noSuchObject: the base (e.g. a deleted group) is gone
                rc => {
                    let msg = format!("search {filter} under {base}: rc={rc} {}", res.text);
                    Err(SearchError::Fatal(if rc_is_transient(rc) {
                        unavailable(msg)
                    } else {
                        unusable(msg)
                    }))
                }
            }
        };
        tokio::time::timeout(t * 2, run).await.unwrap_or_else(|_| {
            Err(SearchError::Connection(unavailable(format!(
                "search {filter}: timed out"
            ))))
        })
    }

    /// The server's root DSE `supportedCapabilities` (proves the directory answers).
    pub async fn capabilities(&self) -> Result<Vec<String>, DirectoryUnavailable> {
        let e = self
            .search("", Scope::Base, "(objectClass=*)", &["supportedCapabilities"])
            .await?;
        Ok(e.first()
            .map(|e| attr(e, "supportedCapabilities"))
            .unwrap_or_default())
    }

    /// DNs of the groups a rule's reference names: by DN (must exist) or by
    /// `group_name_attribute` under `group_base_dn`.
    pub async fn find_group(&self, reference: &str) -> Result<Vec<String>, DirectoryUnavailable> {
        let s = &self.settings;
        let entries = if super::is_dn_reference(reference) {
            self.search(reference, Scope::Base, "(objectClass=*)", &["1.1"])
                .await?
        } else {
            let filter = format!("({}={})", s.group_name_attribute, ldap_escape(reference));
            self.search(&s.group_base_dn, Scope::Subtree, &filter, &["1.1"])
                .await?
        };
        Ok(entries.into_iter().map(|e| e.dn).collect())
    }

    /// The directory entry that owns `address` (any of `address_attributes`),
    /// with the attributes asked for (phase 2: restrictions stored on the
    /// recipient, e.g. `authOrig`, `dLMemSubmitPerms`). `Ok(None)`: no entry.
    pub async fn entry_by_address(
        &self,
        address: &str,
        attributes: &[&str],
    ) -> Result<Option<SearchEntry>, DirectoryUnavailable> {
        let s = &self.settings;
        let any: String = s
            .address_attributes
            .iter()
            .map(|a| address_term(a, address))
            .collect();
        let filter = format!("(|{any})");
        let mut entries = self
            .search(&s.base_dn, Scope::Subtree, &filter, attributes)
            .await?;
        match entries.len() {
            0 => Ok(None),
            1 => Ok(entries.pop()),
            n => Err(unusable(format!("{n} entries own {address}: refusing to guess"))),
        }
    }

    /// The user entry for a login or an address.
    pub async fn find_user(&self, key: &str) -> Result<Option<UserEntry>, DirectoryUnavailable> {
        let s = &self.settings;
        let key = self.without_netbios_domain(key);
        let mut filter = user_filter(&s.user_filter, key);
        // Active Directory also takes `account@its DNS domain` (the implicit
        // UPN) as a login: that account is searched too, so a login that is
        // one user's implicit UPN and another's mail finds two entries and
        // is refused, never read as the mail's owner.
        if let Some((account, domain)) = key.rsplit_once('@') {
            if self
                .ad_dns_domain
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case(domain))
            {
                filter = format!(
                    "(|{filter}(&(objectClass=user)({}={})))",
                    s.login_attributes[0],
                    ldap_escape(account)
                );
            }
        }
        let mut attrs: Vec<&str> = s.login_attributes.iter().map(|a| a.as_str()).collect();
        attrs.extend(s.address_attributes.iter().map(|a| a.as_str()));
        attrs.push(USER_ACCOUNT_CONTROL);
        if s.membership == Membership::MemberOf || s.membership.server_side() {
            attrs.push(s.memberof_attribute.as_str());
        }
        let entries = self.search(&s.base_dn, Scope::Subtree, &filter, &attrs).await?;
        match entries.len() {
            0 => Ok(None),
            1 => {
                let entry = entries.into_iter().next().expect("one entry");
                Ok(Some(self.user_entry(entry).await?))
            }
            n => Err(unusable(format!(
                "{n} entries match {filter}: refusing to guess which user this is"
            ))),
        }
    }

    /// The addresses an entry owns, from every `address_attributes` value
    /// that is one (see [`address_value`]), lowercased, each once.
    fn own_addresses(&self, attrs: &std::collections::HashMap<String, Vec<String>>) -> Vec<String> {
        let mut addresses: Vec<String> = Vec::new();
        for a in &self.settings.address_attributes {
            for v in attr_values(attrs, a) {
                if let Some(address) = address_value(a, &v) {
                    if !addresses.contains(&address) {
                        addresses.push(address);
                    }
                }
            }
        }
        addresses
    }

    /// `DOMAIN\login` as `login` when DOMAIN is the configured down-level
    /// domain; any other login as typed.
    fn without_netbios_domain<'k>(&self, login: &'k str) -> &'k str {
        match (&self.settings.netbios_domain, login.split_once('\\')) {
            (Some(domain), Some((d, rest))) if d.eq_ignore_ascii_case(domain) => rest,
            _ => login,
        }
    }

    async fn user_entry(&self, e: SearchEntry) -> Result<UserEntry, DirectoryUnavailable> {
        let s = &self.settings;
        let mut logins = s.login_attributes.iter().flat_map(|a| attr(&e, a));
        let login = logins.next().unwrap_or_default();
        let mut other_logins: Vec<String> = logins.collect();
        if let Some(domain) = &s.netbios_domain {
            if !login.is_empty() {
                other_logins.push(format!("{domain}\\{login}"));
            }
        }
        if let Some(dns) = &self.ad_dns_domain {
            if !login.is_empty() && !login.contains('@') {
                other_logins.push(format!("{login}@{dns}"));
            }
        }
        let addresses = self.own_addresses(&e.attrs);
        let member_of = self.all_values(&e, &s.memberof_attribute).await?;
        let disabled = first(&e, USER_ACCOUNT_CONTROL)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|flags| flags as u32 & ACCOUNT_DISABLED != 0);
        Ok(UserEntry {
            login,
            other_logins,
            dn: e.dn.clone(),
            addresses,
            member_of,
            disabled,
        })
    }

    /// Every value of `name`, following Active Directory's ranged retrieval
    /// (`memberOf;range=0-1499`, then `memberOf;range=1500-*`, …) for large
    /// multi-valued attributes.
    async fn all_values(&self, e: &SearchEntry, name: &str) -> Result<Vec<String>, DirectoryUnavailable> {
        let (mut values, mut next) = ranged_values(e, name);
        let mut rounds = 0;
        while let Some(low) = next {
            rounds += 1;
            if rounds > 1000 {
                return Err(unusable(format!("{name} of {}: too many ranges", e.dn)));
            }
            let wanted = format!("{name};range={low}-*");
            let page = self
                .search(&e.dn, Scope::Base, "(objectClass=*)", &[&wanted])
                .await?;
            let Some(entry) = page.first() else { break };
            let (more, n) = ranged_values(entry, name);
            if more.is_empty() {
                break;
            }
            values.extend(more);
            next = n;
        }
        Ok(values)
    }

    /// The user's groups, nested included, with the path to each.
    pub async fn groups_of(&self, user: &UserEntry) -> Result<Memberships, DirectoryUnavailable> {
        let s = &self.settings;
        let mut out = Memberships::default();
        if user.disabled {
            return Ok(out);
        }
        let root: Arc<[String]> = Arc::from(vec![user.login.clone()]);
        match s.membership {
            Membership::AdInChain => {
                let filter = format!(
                    "(member:1.2.840.113556.1.4.1941:={})",
                    ldap_escape(user.dn.as_str())
                );
                let found = self.search_groups_with_parents(&filter).await?;
                self.add_transitive(&mut out, &root, user, found);
            }
            Membership::AdTokenGroups => {
                let found = self.token_groups(user).await?;
                self.add_transitive(&mut out, &root, user, found);
            }
            Membership::MemberOf | Membership::Search => {
                // Breadth-first: (group DN, path to it); `seen` also counts the groups found.
                let mut queue: VecDeque<(String, Arc<[String]>)> = VecDeque::new();
                let mut seen: HashSet<String> = HashSet::new();
                let mut found = self
                    .direct_groups(user.dn.as_str(), Some(user), s.membership)
                    .await?;
                let mut parent_path = root;
                loop {
                    for (dn, name) in found {
                        // Over the cap: an error, never a cut that could
                        // drop a deny group.
                        if seen.len() >= s.max_groups {
                            return Err(unusable(format!(
                                "{} is in more than max_groups = {} groups",
                                user.dn, s.max_groups
                            )));
                        }
                        if seen.insert(dn.to_lowercase()) {
                            let path = self.add_group(&mut out, &parent_path, &dn, name);
                            queue.push_back((dn, path));
                        }
                    }
                    let Some((dn, path)) = queue.pop_front() else {
                        break;
                    };
                    if !s.nested {
                        break;
                    }
                    // path = user, then one name per level: a group at level d is
                    // followed upwards while d <= max_depth.
                    if path.len() > s.max_depth + 1 {
                        tracing::warn!(group = %dn, max_depth = s.max_depth, "group nesting too deep: not followed");
                        found = Vec::new();
                        parent_path = path;
                        continue;
                    }
                    found = self.direct_groups(&dn, None, s.membership).await?;
                    parent_path = path;
                }
            }
        }
        Ok(out)
    }

    /// Groups that directly contain `member_dn`, as (DN, name if known).
    async fn direct_groups(
        &self,
        member_dn: &str,
        user: Option<&UserEntry>,
        mode: Membership,
    ) -> Result<Vec<(String, Option<String>)>, DirectoryUnavailable> {
        let s = &self.settings;
        match mode {
            Membership::MemberOf => {
                let dns = match user {
                    Some(u) => u.member_of.clone(),
                    None => {
                        let e = self
                            .search(
                                member_dn,
                                Scope::Base,
                                "(objectClass=*)",
                                &[&s.memberof_attribute],
                            )
                            .await?;
                        // Ranged like the user's own memberOf (a group in many groups, on AD).
                        match e.first() {
                            Some(e) => self.all_values(e, &s.memberof_attribute).await?,
                            None => Vec::new(),
                        }
                    }
                };
                Ok(dns.into_iter().map(|dn| (dn, None)).collect())
            }
            _ => {
                // A group (not a user) has no login: a filter on {login} alone must not match "".
                if user.is_none() && !s.group_filter.contains("{dn}") {
                    return Ok(Vec::new());
                }
                let login = user.map(|u| u.login.as_str()).unwrap_or("");
                let filter = s
                    .group_filter
                    .replace("{dn}", &ldap_escape(member_dn))
                    .replace("{login}", &ldap_escape(login));
                self.search_groups(&filter).await
            }
        }
    }

    /// The security groups in the user's `tokenGroups` (the DC's transitive
    /// closure, as SIDs), found by `objectSid` in as few searches as the
    /// filter size allows (one for most users).
    async fn token_groups(&self, user: &UserEntry) -> Result<Vec<FoundGroup>, DirectoryUnavailable> {
        let entries = self
            .search(&user.dn, Scope::Base, "(objectClass=*)", &["tokenGroups"])
            .await?;
        let Some(entry) = entries.first() else {
            return Ok(Vec::new());
        };
        let sids = binary_values(entry, "tokenGroups");
        // An enabled account's token holds at least its primary group: none
        // means the service account may not read it (a domain without
        // "Pre-Windows 2000 Compatible Access"), not "in no group".
        if sids.is_empty() {
            return Err(unusable(format!(
                "tokenGroups of {} is empty or not readable by the bind account",
                user.dn
            )));
        }
        // Over the cap: an error, never a cut that could drop a deny group.
        if sids.len() > self.settings.max_groups {
            return Err(unusable(format!(
                "{} is in {} security groups, more than max_groups = {}",
                user.dn,
                sids.len(),
                self.settings.max_groups
            )));
        }
        let mut found = Vec::new();
        for chunk in sids.chunks(TOKEN_GROUPS_PER_SEARCH) {
            let any: String = chunk
                .iter()
                .map(|sid| format!("(objectSid={})", escape_binary(sid)))
                .collect();
            found.extend(self.search_groups_with_parents(&format!("(|{any})")).await?);
        }
        Ok(found)
    }

    /// Groups matching `filter` under `group_base_dn`, with the groups each
    /// is a direct member of (to rebuild chains), at most `max_groups`.
    async fn search_groups_with_parents(
        &self,
        filter: &str,
    ) -> Result<Vec<FoundGroup>, DirectoryUnavailable> {
        let s = &self.settings;
        let entries = self
            .search(
                &s.group_base_dn,
                Scope::Subtree,
                filter,
                &[&s.group_name_attribute, &s.memberof_attribute],
            )
            .await?;
        // Over the cap: an error, never a cut that could drop a deny group.
        if entries.len() > s.max_groups {
            return Err(unusable(format!(
                "{filter} found {} groups, more than max_groups = {}",
                entries.len(),
                s.max_groups
            )));
        }
        Ok(entries
            .into_iter()
            .map(|g| FoundGroup {
                name: first(&g, &s.group_name_attribute),
                // Ranged values (a group in over 1,500 groups) are not
                // followed here: they only place groups in chains.
                member_of: ranged_values(&g, &s.memberof_attribute).0,
                dn: g.dn,
            })
            .collect())
    }

    /// Groups the server found transitively, each with the path from the
    /// user rebuilt breadth-first through `memberOf` within the found set;
    /// a group that cannot be placed is shown as reached through "…".
    fn add_transitive(
        &self,
        out: &mut Memberships,
        root: &Arc<[String]>,
        user: &UserEntry,
        found: Vec<FoundGroup>,
    ) {
        let index: std::collections::HashMap<String, usize> = found
            .iter()
            .enumerate()
            .map(|(i, g)| (g.dn.to_lowercase(), i))
            .collect();
        let mut placed = vec![false; found.len()];
        let mut queue: VecDeque<(usize, Arc<[String]>)> = VecDeque::new();
        let mut place =
            |parents: &[String], path: &Arc<[String]>, queue: &mut VecDeque<_>, out: &mut Memberships| {
                for parent in parents {
                    if let Some(&i) = index.get(&parent.to_lowercase()) {
                        if !placed[i] {
                            placed[i] = true;
                            let g = &found[i];
                            let p = self.add_group(out, path, &g.dn, g.name.clone());
                            queue.push_back((i, p));
                        }
                    }
                }
            };
        place(&user.member_of, root, &mut queue, out);
        while let Some((i, path)) = queue.pop_front() {
            place(&found[i].member_of, &path, &mut queue, out);
        }
        let unknown: Arc<[String]> = Arc::from(vec![user.login.clone(), UNKNOWN_CHAIN.to_string()]);
        for (g, was_placed) in found.iter().zip(&placed) {
            if !was_placed {
                self.add_group(out, &unknown, &g.dn, g.name.clone());
            }
        }
    }

    /// Groups matching `filter` under `group_base_dn`, as (DN, name if it has one).
    async fn search_groups(
        &self,
        filter: &str,
    ) -> Result<Vec<(String, Option<String>)>, DirectoryUnavailable> {
        let s = &self.settings;
        let entries = self
            .search(
                &s.group_base_dn,
                Scope::Subtree,
                filter,
                &[&s.group_name_attribute],
            )
            .await?;
        Ok(entries
            .into_iter()
            .map(|g| {
                let name = first(&g, &s.group_name_attribute);
                (g.dn, name)
            })
            .collect())
    }

    fn add_group(
        &self,
        out: &mut Memberships,
        path: &Arc<[String]>,
        dn: &str,
        name: Option<String>,
    ) -> Arc<[String]> {
        let name = name
            .or_else(|| first_rdn_value(dn))
            .unwrap_or_else(|| dn.to_string());
        let mut p = path.to_vec();
        p.push(name.clone());
        let p: Arc<[String]> = Arc::from(p);
        out.insert_group(dn, &name, p.clone());
        p
    }
}

/// A group found by a server-side (transitive) search.
struct FoundGroup {
    dn: String,
    name: Option<String>,
    /// The groups it is a direct member of.
    member_of: Vec<String>,
}

/// SIDs per `objectSid` search: keeps a filter for a user in hundreds of
/// groups within what servers accept (about 30 bytes per SID).
const TOKEN_GROUPS_PER_SEARCH: usize = 200;

enum SearchError {
    /// The connection is suspect: retry on a new one.
    Connection(DirectoryUnavailable),
    /// The server answered with an error: retrying will not help.
    Fatal(DirectoryUnavailable),
}

/// Active Directory announces itself in the root DSE with this capability.
const AD_CAPABILITY: &str = "1.2.840.113556.1.4.800";

/// Active Directory's Show Deleted control: deleted objects (tombstones) too.
const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";

impl LdapBackend {
    /// A user entry and its groups.
    async fn resolve(&self, key: &UserKey) -> Result<Option<Arc<ResolvedUser>>, DirectoryUnavailable> {
        let name = match key {
            UserKey::Login(l) => l.as_str(),
            UserKey::Address(a) => a.as_str(),
        };
        let Some(entry) = self.find_user(name).await? else {
            return Ok(None);
        };
        // Not its own entry: refused by the directory layer, so no group
        // searches for it.
        if !entry.is_own(key) {
            return Ok(Some(Arc::new(ResolvedUser {
                entry,
                groups: Memberships::default(),
            })));
        }
        let groups = self.groups_of(&entry).await?;
        Ok(Some(Arc::new(ResolvedUser { entry, groups })))
    }

    /// The entry owning `address`: its addresses, and the restrictions
    /// stored on it when those are read.
    async fn read_recipient_entry(
        &self,
        address: &str,
    ) -> Result<Option<Arc<RecipientEntry>>, DirectoryUnavailable> {
        let s = &self.settings;
        let mut wanted: Vec<&str> = s.address_attributes.iter().map(|a| a.as_str()).collect();
        if let Some(names) = &s.recipient_restrictions {
            wanted.extend(names.names());
        }
        let Some(entry) = self.entry_by_address(address, &wanted).await? else {
            return Ok(None);
        };
        let values = |n: &str| attr_values(&entry.attrs, n);
        let mut r = RecipientEntry {
            dn: entry.dn.clone(),
            addresses: self.own_addresses(&entry.attrs),
            ..Default::default()
        };
        if let Some(names) = &s.recipient_restrictions {
            r.require_authenticated = values(&names.require_auth)
                .iter()
                .any(|v| v.eq_ignore_ascii_case("TRUE"));
            r.accept_senders = values(&names.accept_senders);
            r.reject_senders = values(&names.reject_senders);
            r.accept_groups = values(&names.accept_groups);
            r.reject_groups = values(&names.reject_groups);
        }
        Ok(Some(Arc::new(r)))
    }

    /// Whether the group at `dn` is an AD security group (`groupType` bit
    /// 0x80000000); an entry without `groupType` is not AD's and counts as one.
    async fn is_security_group(&self, dn: &str) -> Result<bool, DirectoryUnavailable> {
        let e = self
            .search(dn, Scope::Base, "(objectClass=*)", &["groupType"])
            .await?;
        Ok(match e.first().and_then(|e| first(e, "groupType")) {
            Some(v) => v.trim().parse::<i64>().is_ok_and(|t| t as u32 & 0x8000_0000 != 0),
            None => true,
        })
    }

    async fn verify_groups(&self, groups: &[NamedGroup]) -> Result<Vec<Finding>, DirectoryUnavailable> {
        let caps = self.capabilities().await?;
        let mut findings = vec![Finding::Note(format!(
            "directory: reached {}",
            self.settings.urls.join(", ")
        ))];
        if self.settings.membership.server_side() && !caps.iter().any(|c| c == AD_CAPABILITY) {
            let mode = match self.settings.membership {
                Membership::AdTokenGroups => "ad-token-groups",
                _ => "ad-in-chain",
            };
            findings.push(Finding::Error(format!(
                "membership = \"{mode}\" but the server is not Active Directory: it would find no groups (use \"memberof\" or \"search\")"
            )));
        }
        self.verify_following(&mut findings).await;
        if groups.iter().any(|g| !super::is_dn_reference(&g.name))
            && super::dn_key(&self.settings.group_base_dn) == super::dn_key(&self.settings.base_dn)
        {
            findings.push(Finding::Note(
                "rules name groups by name and group_base_dn is base_dn: a group created anywhere under it with a rule group's name makes that name ambiguous, and its members' decisions tempfail; set group_base_dn to where the groups live, or name them by DN".into(),
            ));
        }
        let mut seen = HashSet::new();
        for g in groups {
            if !seen.insert(g.name.to_lowercase()) {
                continue;
            }
            let (name, used) = (&g.name, &g.used);
            findings.push(match self.find_group(name).await {
                Err(e) => Finding::Error(format!("group {name:?} ({used}): {e}")),
                Ok(dns) if dns.is_empty() => {
                    Finding::Error(format!("group {name:?} ({used}) is not in the directory"))
                }
                Ok(dns) if dns.len() > 1 => Finding::Error(format!(
                    "group name {name:?} ({used}) matches {} entries ({}): a member of any of them is answered tempfail, as gatehouse cannot tell which is meant; name the group by DN",
                    dns.len(),
                    dns.join("; ")
                )),
                Ok(dns) if super::is_dn_reference(name) && super::dn_key(name) != super::dn_key(&dns[0]) => {
                    Finding::Error(format!(
                        "group {name:?} ({used}): the server spells this entry {:?}, which gatehouse does not take for the same DN (an attribute alias, another case of a non-ASCII letter); write the DN as the server returns it",
                        dns[0]
                    ))
                }
                Ok(dns) if self.settings.membership == Membership::AdTokenGroups
                    && !self.is_security_group(&dns[0]).await? =>
                {
                    Finding::Error(format!(
                        "group {name:?} ({used}) = {} is a distribution group: membership = \"ad-token-groups\" sees security groups only, so this rule would never match (use \"memberof\")",
                        dns[0]
                    ))
                }
                Ok(dns) => Finding::Note(format!("group {name:?} = {}", dns[0])),
            });
        }
        Ok(findings)
    }
}

impl LdapBackend {
    /// `check`: whether the server offers the configured follow method, and
    /// whether this account may use it.
    async fn verify_following(&self, findings: &mut Vec<Finding>) {
        let configured = self.settings.follow_changes;
        if configured == FollowMethod::Off {
            return;
        }
        let offered = match self.follow_method_offered().await {
            Ok(m) => m,
            Err(e) => {
                findings.push(Finding::Error(format!(
                    "follow_changes: reading the root DSE: {e}"
                )));
                return;
            }
        };
        let method = match (configured, offered) {
            (FollowMethod::Auto, None) => {
                findings.push(Finding::Warning(
                    "follow_changes = \"auto\": the server offers neither syncrepl nor Active Directory's uSNChanged; changes will apply when cached entries expire (ttl)".into(),
                ));
                return;
            }
            (FollowMethod::Auto, Some(m)) => m,
            (m, o) if Some(m) != o => {
                let missing = match m {
                    FollowMethod::Syncrepl => "the server does not announce the content synchronization control (OpenLDAP: load the syncprov overlay on the database)",
                    _ => "the server is not Active Directory",
                };
                findings.push(Finding::Error(format!(
                    "follow_changes = \"{}\": {missing}",
                    m.name()
                )));
                return;
            }
            (m, _) => m,
        };
        let probe = match method {
            FollowMethod::Syncrepl => self.probe_sync().await,
            _ => match self.dc_state().await {
                Ok((dc, usn)) => self
                    .changed_since(&self.settings.base_dn, usn, usn)
                    .await
                    .map(|_| format!("uSNChanged of {dc}"))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        findings.push(match probe {
            Ok(what) => Finding::Note(format!(
                "follow_changes: {} ({what}) accepted for this account",
                method.name()
            )),
            Err(e) => Finding::Error(format!("follow_changes = \"{}\": {e}", method.name())),
        });
    }

    /// A one-entry refreshOnly sync search: does the server take the
    /// control from this account?
    async fn probe_sync(&self) -> Result<String, String> {
        use ldap3::controls::{MakeCritical, RefreshMode, SyncRequest};
        let (mut ldap, server) = self.follower_connection().await.map_err(|e| e.to_string())?;
        let request = SyncRequest {
            mode: RefreshMode::RefreshOnly,
            cookie: None,
            reload_hint: false,
        };
        let t = self.settings.timeout;
        let run = async {
            let mut stream = ldap
                .with_search_options(ldap3::SearchOptions::new().sizelimit(1))
                .with_controls(request.critical())
                .with_timeout(t)
                .streaming_search(
                    &self.settings.base_dn,
                    Scope::Base,
                    "(objectClass=*)",
                    vec!["1.1"],
                )
                .await
                .map_err(|e| format!("{server}: {e}"))?;
            while let Ok(Some(_)) = stream.next().await {}
            let res = stream.finish().await;
            match res.rc {
                0 | 4 => Ok(format!("sync request on {server}")),
                rc => Err(format!("{server} refused the sync request: rc={rc} {}", res.text)),
            }
        };
        let r = tokio::time::timeout(t * 2, run)
            .await
            .unwrap_or_else(|_| Err(format!("{server}: sync request timed out")));
        let _ = ldap.unbind().await;
        r
    }
}

impl Backend for LdapBackend {
    fn describe(&self) -> String {
        "directory server".into()
    }

    fn find_user<'a>(&'a self, key: &'a UserKey) -> Answer<'a, Option<Arc<ResolvedUser>>> {
        Answer::later(self.resolve(key))
    }

    fn reads_stored_restrictions(&self) -> bool {
        self.settings.recipient_restrictions.is_some()
    }

    fn reads_recipient_aliases(&self) -> bool {
        self.settings.recipient_aliases
    }

    fn recipient_entry<'a>(&'a self, address: &'a str) -> Answer<'a, Option<Arc<RecipientEntry>>> {
        Answer::later(self.read_recipient_entry(address))
    }

    fn groups_named<'a>(&'a self, names: &'a [String]) -> Answer<'a, Option<GroupNames>> {
        Answer::later(async move {
            let mut index = GroupNames::default();
            for name in names {
                index.entries.insert(name.clone(), self.find_group(name).await?);
            }
            Ok(Some(index))
        })
    }

    fn verify<'a>(&'a self, groups: &'a [NamedGroup]) -> Pending<'a, Vec<Finding>> {
        Box::pin(self.verify_groups(groups))
    }

    /// Same servers, same way, same password (read from the file).
    fn same_as(&self, other: &dyn Backend) -> bool {
        other
            .as_any()
            .downcast_ref::<LdapBackend>()
            .is_some_and(|o| self.settings == o.settings && self.password == o.password)
    }

    fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// ldap3's entry parser panics on malformed BER; a directory answer must never
/// bring gatehouse down, so a panic here becomes "directory unavailable".
pub(super) fn construct(entry: ldap3::ResultEntry) -> Result<SearchEntry, DirectoryUnavailable> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(entry)))
        .map_err(|_| unusable("malformed entry in a directory answer"))
}

/// Attribute values, by case-insensitive attribute name.
pub fn attr_values(attrs: &std::collections::HashMap<String, Vec<String>>, name: &str) -> Vec<String> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Attribute values of an entry, by case-insensitive attribute name.
fn attr(e: &SearchEntry, name: &str) -> Vec<String> {
    attr_values(&e.attrs, name)
}

/// Values of `name` in one answer, plain or as a range (`name;range=LOW-HIGH`),
/// and the low end of the next range when the server has more.
fn ranged_values(e: &SearchEntry, name: &str) -> (Vec<String>, Option<u64>) {
    let mut values = attr(e, name);
    let mut next = None;
    let prefix = format!("{};range=", name.to_lowercase());
    for (k, v) in &e.attrs {
        let Some(range) = k.to_lowercase().strip_prefix(&prefix).map(str::to_string) else {
            continue;
        };
        values.extend(v.iter().cloned());
        if let Some((_, high)) = range.split_once('-') {
            if high != "*" {
                next = high.parse::<u64>().ok().and_then(|h| h.checked_add(1));
            }
        }
    }
    (values, next)
}

/// The DNS name of the AD domain at `base_dn` (`DC=corp,DC=example,DC=com`
/// → `corp.example.com`), when `netbios_domain` says this is AD.
fn settings_dns_domain(settings: &LdapSettings) -> Option<String> {
    settings.netbios_domain.as_ref()?;
    let labels: Vec<&str> = settings
        .base_dn
        .split(',')
        .filter_map(|rdn| {
            let (k, v) = rdn.split_once('=')?;
            k.trim().eq_ignore_ascii_case("dc").then(|| v.trim())
        })
        .collect();
    (!labels.is_empty()).then(|| labels.join(".").to_ascii_lowercase())
}

/// A binary attribute's values (ldap3 keeps a value that happens to be
/// valid UTF-8 among the text attributes).
fn binary_values(e: &SearchEntry, name: &str) -> Vec<Vec<u8>> {
    let text = attr(e, name).into_iter().map(String::into_bytes);
    let binary = e
        .bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    text.chain(binary).collect()
}

/// A binary value in a filter: every byte as `\xx` (RFC 4515).
fn escape_binary(value: &[u8]) -> String {
    value.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// An address attribute's value as an address, lowercased: a
/// `proxyAddresses` value only when it is of type SMTP (`SMTP:` primary,
/// `smtp:` alias), without the prefix; any other attribute's value as is.
fn address_value(attribute: &str, value: &str) -> Option<String> {
    if !attribute.eq_ignore_ascii_case(PROXY_ADDRESSES) {
        return Some(value.to_lowercase());
    }
    let (kind, address) = value.split_once(':')?;
    (kind.eq_ignore_ascii_case("smtp") && !address.is_empty()).then(|| address.to_lowercase())
}

/// The filter term that finds `address` in `attribute`: a `proxyAddresses`
/// value carries its `smtp:` type (AD matches it in any case).
fn address_term(attribute: &str, address: &str) -> String {
    let escaped = ldap_escape(address);
    if attribute.eq_ignore_ascii_case(PROXY_ADDRESSES) {
        format!("({attribute}=smtp:{escaped})")
    } else {
        format!("({attribute}={escaped})")
    }
}

/// The attributes `group_filter` matches members by: `(ATTR={dn})` gives
/// (ATTR, false), `(ATTR={login})` gives (ATTR, true).
fn filter_member_attributes(template: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for (placeholder, by_login) in [("={dn})", false), ("={login})", true)] {
        for (at, _) in template.match_indices(placeholder) {
            let before = &template[..at];
            let name = &before[before.rfind('(').map_or(0, |i| i + 1)..];
            if is_attribute_name(name) {
                out.push((name.to_string(), by_login));
            }
        }
    }
    out
}

/// An LDAP attribute description: a name or OID (letters, digits, `-`, `.`),
/// never a filter fragment.
pub fn is_attribute_name(a: &str) -> bool {
    !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// `user_filter` with `{login}` and `{address}` filled in, RFC 4515-escaped,
/// in one pass (a key is never read as a placeholder);
/// `(proxyAddresses={address})` searches the SMTP alias, so the filter names
/// the attribute without Exchange's type prefix.
fn user_filter(template: &str, key: &str) -> String {
    let escaped = ldap_escape(key);
    let mut out = String::with_capacity(template.len() + key.len() * 2);
    let mut rest = template;
    loop {
        let next = ["{login}", "{address}"]
            .into_iter()
            .filter_map(|p| rest.find(p).map(|at| (at, p)))
            .min();
        let Some((at, placeholder)) = next else { break };
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        // The attribute of this term: between the last '(' and the '='.
        let attribute = before
            .rsplit_once('(')
            .and_then(|(_, a)| a.strip_suffix('='))
            .unwrap_or("");
        if placeholder == "{address}" && attribute.eq_ignore_ascii_case(PROXY_ADDRESSES) {
            out.push_str("smtp:");
        }
        out.push_str(&escaped);
        rest = &after[placeholder.len()..];
    }
    out.push_str(rest);
    out
}

fn first(e: &SearchEntry, name: &str) -> Option<String> {
    attr(e, name).into_iter().next()
}

/// The value of a DN's first RDN, unescaped per RFC 4514 (`cn=Sales\, EMEA,ou=…` → `Sales, EMEA`).
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut out = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (hex, bytes.get(i + 1)) {
                    (Some(b), _) => {
                        out.push(b);
                        i += 3;
                    }
                    (None, Some(&c)) => {
                        out.push(c);
                        i += 2;
                    }
                    // A lone trailing backslash is dropped.
                    (None, None) => i += 1,
                }
            }
            b',' | b'+' => break,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).trim().to_string())
}

/// TLS for StartTLS and ldaps: the server's certificate must chain to a CA
/// of `ca` and name the URL's host, or `server_name` when set.
fn tls_config(ca: &std::path::Path, server_name: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("ca_file {}: no certificate found", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let Some(name) = server_name else {
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    };
    let name = rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| format!("tls_server_name {name:?}: {e}"))?;
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
    // rustls calls every custom verifier "dangerous"; this one verifies
    // exactly as the standard one does, only against another name.
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NamedServerVerifier { inner, name }))
        .with_no_client_auth())
}

/// The standard certificate verification (chain, validity, signatures),
/// with the certificate required to name `name` rather than the host the
/// URL connects to.
#[derive(Debug)]
struct NamedServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for NamedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _url_host: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_filter_names_the_member_attributes() {
        assert_eq!(
            filter_member_attributes("(&(objectClass=groupOfNames)(member={dn}))"),
            [("member".to_string(), false)]
        );
        assert_eq!(
            filter_member_attributes("(|(mgrpMember={dn})(memberUid={login})(x=y))"),
            [("mgrpMember".to_string(), false), ("memberUid".to_string(), true)]
        );
    }

    #[test]
    fn rdn_values() {
        assert_eq!(
            first_rdn_value("cn=Sales\\, EMEA,ou=groups,dc=x").as_deref(),
            Some("Sales, EMEA")
        );
        assert_eq!(first_rdn_value("cn=A\\2cB,dc=x").as_deref(), Some("A,B"));
        assert_eq!(
            first_rdn_value("CN=Domain Users,CN=Users,DC=corp").as_deref(),
            Some("Domain Users")
        );
        assert_eq!(first_rdn_value("cn=x+uid=y,dc=z").as_deref(), Some("x"));
        assert_eq!(first_rdn_value("garbage"), None);
        assert_eq!(first_rdn_value("cn=trailing\\").as_deref(), Some("trailing"));
    }

    #[test]
    fn ranged_attribute_values() {
        let entry = |pairs: &[(&str, &[&str])]| SearchEntry {
            dn: "cn=x".into(),
            attrs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            bin_attrs: Default::default(),
        };
        let e = entry(&[("memberOf;range=0-1", &["a", "b"])]);
        assert_eq!(
            ranged_values(&e, "memberOf"),
            (vec!["a".into(), "b".into()], Some(2))
        );
        let e = entry(&[("memberOf;range=2-*", &["c"])]);
        assert_eq!(ranged_values(&e, "memberof"), (vec!["c".into()], None));
        let e = entry(&[("memberOf", &["plain"])]);
        assert_eq!(ranged_values(&e, "memberOf"), (vec!["plain".into()], None));
    }

    #[test]
    fn proxy_addresses_count_only_as_smtp_without_their_type() {
        let cases = [
            (
                "proxyAddresses",
                "SMTP:Alice@Example.com",
                Some("alice@example.com"),
            ),
            (
                "proxyaddresses",
                "smtp:a.smith@example.com",
                Some("a.smith@example.com"),
            ),
            ("proxyAddresses", "sMtP:x@example.com", Some("x@example.com")),
            ("proxyAddresses", "X500:/o=Example/ou=Exchange/cn=alice", None),
            ("proxyAddresses", "SIP:alice@example.com", None),
            ("proxyAddresses", "alice@example.com", None),
            ("proxyAddresses", "smtp:", None),
            ("mail", "SMTP:odd@example.com", Some("smtp:odd@example.com")),
            ("mail", "Alice@Example.com", Some("alice@example.com")),
        ];
        for (attribute, value, want) in cases {
            assert_eq!(
                address_value(attribute, value).as_deref(),
                want,
                "{attribute}: {value}"
            );
        }
        assert_eq!(
            address_term("proxyAddresses", "a*@x"),
            "(proxyAddresses=smtp:a\\2a@x)"
        );
        assert_eq!(address_term("mail", "a*@x"), "(mail=a\\2a@x)");
    }

    #[test]
    fn user_filter_fills_placeholders_once_and_types_proxy_addresses() {
        let t =
            "(&(objectCategory=person)(|(sAMAccountName={login})(mail={address})(proxyAddresses={address})))";
        assert_eq!(
            user_filter(t, "bob@example.com"),
            "(&(objectCategory=person)(|(sAMAccountName=bob@example.com)(mail=bob@example.com)(proxyAddresses=smtp:bob@example.com)))"
        );
        // A key that spells a placeholder stays a value.
        assert_eq!(
            user_filter("(|(uid={login})(mail={address}))", "{address}*"),
            "(|(uid={address}\\2a)(mail={address}\\2a))"
        );
        assert_eq!(
            user_filter("(ProxyAddresses={address})", "a)(b"),
            "(ProxyAddresses=smtp:a\\29\\28b)"
        );
    }

    #[test]
    fn sids_are_escaped_byte_by_byte() {
        assert_eq!(
            escape_binary(&[0x01, 0x05, 0x00, 0xff, b'*']),
            "\\01\\05\\00\\ff\\2a"
        );
        let e = SearchEntry {
            dn: "cn=x".into(),
            attrs: [("tokenGroups".to_string(), vec!["ab".to_string()])].into(),
            bin_attrs: [("tokengroups".to_string(), vec![vec![0xff, 0x00]])].into(),
        };
        assert_eq!(
            binary_values(&e, "tokenGroups"),
            vec![b"ab".to_vec(), vec![0xff, 0x00]]
        );
    }

    fn backend() -> LdapBackend {
        let source = "[domains]\nlocal = [\"x\"]\n[directory]\nbackend = \"ldap\"\n[directory.ldap]\nurls = [\"ldap://127.0.0.1:1\"]\nbase_dn = \"dc=x\"\n[[listener]]\nname = \"default\"\n";
        let config = crate::config::parse(source, std::path::Path::new("test.toml")).unwrap();
        let crate::config::DirectorySettings::Ldap { settings, .. } = config.directory else {
            panic!("not ldap")
        };
        LdapBackend::new(*settings).unwrap()
    }

    fn found(dn: &str, member_of: &[&str]) -> FoundGroup {
        FoundGroup {
            dn: dn.into(),
            name: first_rdn_value(dn),
            member_of: member_of.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn transitive_groups_get_their_chain_or_an_unknown_one() {
        let user = UserEntry {
            login: "bob".into(),
            dn: "CN=bob,dc=x".into(),
            member_of: vec!["CN=Sales,dc=x".into(), "CN=Elsewhere,dc=x".into()],
            ..Default::default()
        };
        let groups = vec![
            found("CN=Internet Mail Users,dc=x", &[]),
            found(
                "CN=Staff,dc=x",
                &["cn=internet mail users,DC=X", "CN=All Staff,dc=x"],
            ),
            found("CN=Sales,dc=x", &["CN=Staff,dc=x"]),
            // The primary group: no memberOf link from the user.
            found("CN=Domain Users,dc=x", &[]),
        ];
        let mut out = Memberships::default();
        let root: Arc<[String]> = Arc::from(vec!["bob".to_string()]);
        backend().add_transitive(&mut out, &root, &user, groups);
        let path = |g: &str| out.path_to(g).map(|p| p.join(" > "));
        assert_eq!(path("sales").as_deref(), Some("bob > Sales"));
        assert_eq!(path("Staff").as_deref(), Some("bob > Sales > Staff"));
        assert_eq!(
            path("CN=Internet Mail Users,dc=x").as_deref(),
            Some("bob > Sales > Staff > Internet Mail Users")
        );
        assert_eq!(path("Domain Users").as_deref(), Some("bob > … > Domain Users"));
        // Groups the server did not report are not invented from memberOf.
        assert!(!out.contains("All Staff") && !out.contains("Elsewhere"));
    }

    #[test]
    fn filter_values_are_escaped_per_rfc4515() {
        for (input, want) in [
            ("*", "\\2a"),
            ("alice)(uid=*", "alice\\29\\28uid=\\2a"),
            ("\\", "\\5c"),
            ("a\0b", "a\\00b"),
            ("ünïcode", "ünïcode"),
        ] {
            assert_eq!(ldap_escape(input), want);
        }
    }
}
