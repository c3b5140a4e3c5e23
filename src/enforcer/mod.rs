//! Glue between a milter session and the pure policy: picks the listener,
//! resolves the identity in the directory, runs the rules, logs every refusal
//! once, and turns the decision into a milter verdict.
//!
//! The policy and directory live in one [`Snapshot`] swapped atomically on
//! reload; a transaction keeps the snapshot it started with, so a reload
//! applies to new transactions and never to half of one.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::directory::{Directory, ResolvedUser};
use crate::milter::macros::MacroStore;
use crate::milter::negotiate::MacroRequest;
use crate::milter::protocol::MacroStage;
use crate::milter::session::{parse_client_address, Facts, Handler, Verdict};
mod delegation;

pub use delegation::{external_form, DelegationState};

use crate::policy::{
    evaluate_invalid_rcpt, evaluate_mail, evaluate_rcpt_after_mail, stricter, Action, Address, Decision,
    Listener, ListenerContext, ListenerId, MtaView, Policy, RecipientRule, ReplyKind, StoredRule, Subject,
    SubjectKind,
};

/// One configuration generation: the rules and the directory they refer to.
pub struct Snapshot {
    pub policy: Arc<Policy>,
    pub directory: Arc<Directory>,
}

/// Macros gatehouse asks the MTA for, per stage: exactly what it reads.
/// `{daemon_*}` pick the listener, `{client_addr}` backs up CONNECT's address,
/// `{auth_authen}` is the identity (`{auth_type}` tells an MTA that sends a
/// login without a mechanism apart in the logs), `i` is the queue id for the
/// log (Postfix knows it only from DATA on), `{rcpt_addr}`, `{rcpt_host}`
/// and `{rcpt_mailer}` the MTA's own resolution of the recipient.
pub fn macro_request() -> MacroRequest {
    MacroRequest {
        lists: vec![
            (
                MacroStage::Connect,
                "{daemon_name} {daemon_addr} {daemon_port} {client_addr}".into(),
            ),
            (MacroStage::EnvFrom, "i {auth_type} {auth_authen}".into()),
            (
                MacroStage::EnvRcpt,
                "i {rcpt_addr} {rcpt_host} {rcpt_mailer}".into(),
            ),
            (MacroStage::Data, "i".into()),
        ],
    }
}

/// One listener-selection key as a front end gets it: the key, what the
/// MTA sends for it, and the MTA setting that makes it send it.
pub(crate) struct KeySource {
    pub key: &'static str,
    pub sent_as: &'static str,
    pub fix: &'static str,
}

/// The milter's listener-selection macros.
const LISTENER_MACROS: [KeySource; 3] = [
    KeySource {
        key: "daemon_name",
        sent_as: "{daemon_name}",
        fix: "Postfix: -o milter_macro_daemon_name=NAME on the smtpd service in master.cf; Sendmail: Name= in DAEMON_OPTIONS",
    },
    KeySource {
        key: "daemon_port",
        sent_as: "{daemon_port}",
        fix: "Postfix >= 3.2 sends it when asked (gatehouse asks with protocol 6; check milter_protocol); Sendmail: add {daemon_port} to confMILTER_MACROS_CONNECT",
    },
    KeySource {
        key: "daemon_addr",
        sent_as: "{daemon_addr}",
        fix: "Postfix >= 3.2; Sendmail: add {daemon_addr} to confMILTER_MACROS_CONNECT",
    },
];

const MILTER_NO_CLIENT: &str =
    "the MTA sent no client address (CONNECT without address and no {client_addr})";
const MILTER_CLIENT_FIX: &str =
    "Postfix: add {client_addr} to milter_connect_macros; Sendmail: add {client_addr} to confMILTER_MACROS_CONNECT";

pub struct Enforcer {
    current: ArcSwap<Snapshot>,
    warned: Mutex<HashSet<String>>,
}

/// What MAIL established for the rest of the transaction.
pub struct Transaction {
    snapshot: Arc<Snapshot>,
    listener: Option<ListenerId>,
    subject: Subject,
    sender: Option<Address>,
    /// The MAIL decision, which holds for every recipient (`None` without a listener).
    mail: Option<Decision>,
}

/// Session facts as the policy sees them, for one decision (also used by `explain`).
pub struct Envelope<'a> {
    pub listener: &'a str,
    pub client: Option<IpAddr>,
    pub login: Option<&'a str>,
    pub sender: Option<&'a Address>,
}

impl Enforcer {
    pub fn new(snapshot: Snapshot) -> Enforcer {
        Enforcer {
            current: ArcSwap::from_pointee(snapshot),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Install a new configuration for transactions that start from now on.
    pub fn replace(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn warn_once(&self, key: String, f: impl FnOnce()) {
        let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if w.insert(key) {
            f();
        }
    }

    /// Say once per listener and key when a listener's match (or its
    /// trusted networks) needs something the MTA did not send. `sent(key)`
    /// tells whether the MTA sent a key; `no_client` says how a missing
    /// client address shows and how to fix it.
    pub(crate) fn check_listener_keys(
        &self,
        policy: &Policy,
        sent: impl Fn(&str) -> bool,
        sources: &[KeySource],
        client: Option<IpAddr>,
        no_client: (&str, &str),
    ) {
        for source in sources {
            if sent(source.key) {
                continue;
            }
            let needs = |l: &&crate::policy::Listener| match source.key {
                "daemon_name" => l.matcher.daemon_name.is_some(),
                "daemon_port" => l.matcher.daemon_port.is_some(),
                _ => l.matcher.daemon_addr.is_some(),
            };
            for l in policy.listeners.iter().filter(needs) {
                self.warn_once(format!("key:{}:{}:{}", l.name, source.key, source.sent_as), || {
                    tracing::warn!(
                        listener = %l.name,
                        "the MTA did not send {}, which listener {:?} matches on ({}); sessions fall through to another listener. Fix: {}",
                        source.sent_as,
                        l.name,
                        source.key,
                        source.fix
                    )
                });
            }
        }
        if client.is_none() {
            let needs =
                |l: &&crate::policy::Listener| !l.matcher.client.is_empty() || !l.trusted_networks.is_empty();
            for l in policy
                .listeners
                .iter()
                .chain(policy.default_listener.iter())
                .filter(needs)
            {
                self.warn_once(format!("client:{}:{}", l.name, no_client.0), || {
                    tracing::warn!(
                        listener = %l.name,
                        "{}, which listener {:?} needs for its client ranges or trusted networks; such sessions are treated as untrusted. Fix: {}",
                        no_client.0,
                        l.name,
                        no_client.1
                    )
                });
            }
        }
    }
}

/// The decision's directory budget ran out: an outage, for `on_directory_error`.
fn deadline_passed(policy: &Policy) -> crate::directory::DirectoryUnavailable {
    tracing::warn!(
        decision_timeout = ?policy.decision_timeout,
        "the directory did not answer within decision_timeout: deciding as for an unreachable directory"
    );
    crate::directory::DirectoryUnavailable::outage(format!(
        "no answer within decision_timeout ({:?})",
        policy.decision_timeout
    ))
}

/// A lookup cut off at the decision's `deadline`, however many searches it
/// takes. (The static directory answers from memory: no timer for it.)
async fn within_deadline<T>(
    policy: &Policy,
    directory: &Directory,
    deadline: tokio::time::Instant,
    lookup: impl std::future::Future<Output = Result<T, crate::directory::DirectoryUnavailable>>,
) -> Result<T, crate::directory::DirectoryUnavailable> {
    if directory.in_memory() {
        return lookup.await;
    }
    tokio::time::timeout_at(deadline, Box::pin(lookup))
        .await
        .unwrap_or_else(|_| Err(deadline_passed(policy)))
}

/// Resolve who the client is: SASL login, else trusted network (identity =
/// envelope sender), else anonymous (never resolved: a claim is not an identity).
pub async fn resolve_subject(
    directory: &Directory,
    policy: &Policy,
    listener: Option<ListenerId>,
    login: Option<&str>,
    client: Option<IpAddr>,
    sender: Option<&Address>,
) -> Subject {
    let deadline = tokio::time::Instant::now() + policy.decision_timeout;
    if let Some(login) = login.filter(|l| !l.is_empty()) {
        return Subject {
            kind: SubjectKind::Authenticated,
            login: Some(login.to_string()),
            user: within_deadline(policy, directory, deadline, directory.user_by_login(login)).await,
        };
    }
    let trusted = match (listener, client) {
        (Some(id), Some(ip)) => policy
            .listener_by_id(id)
            .trusted_networks
            .iter()
            .any(|n| n.contains(&ip)),
        _ => false,
    };
    if trusted {
        let user = match sender {
            Some(s) => {
                let address = s.to_string();
                within_deadline(policy, directory, deadline, directory.user_by_address(&address)).await
            }
            None => Ok(None::<Arc<ResolvedUser>>),
        };
        return Subject {
            kind: SubjectKind::Trusted,
            login: None,
            user,
        };
    }
    Subject::anonymous()
}

fn client_address(facts: &Facts<'_>) -> Option<IpAddr> {
    facts
        .client
        .and_then(|c| c.address)
        .or_else(|| facts.macros.get("client_addr").and_then(parse_client_address))
}

fn listener_context<'a>(facts: &'a Facts<'a>, daemon_name: Option<&'a str>) -> ListenerContext<'a> {
    ListenerContext {
        daemon_name,
        daemon_addr: facts.macros.get("daemon_addr").and_then(parse_client_address),
        daemon_port: facts
            .macros
            .get("daemon_port")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok()),
        socket: facts.socket,
        client: client_address(facts),
    }
}

/// Restrictions found through a recipient's directory entry, fetched for
/// the rules (only for local recipients the configuration does not
/// restrict under any of their spellings).
pub enum Stored {
    None,
    /// Every one applies; the strictest decides.
    Rules(Vec<RecipientRule>),
    Unavailable(crate::directory::Fault),
}

impl Stored {
    pub fn as_stored(&self) -> StoredRule<'_> {
        match self {
            Stored::None => StoredRule::None,
            Stored::Rules(r) => StoredRule::Rules(r),
            Stored::Unavailable(f) => StoredRule::Unavailable(*f),
        }
    }
}

/// The restrictions that hold for `rcpt` through the directory entries it
/// reaches (every local spelling of it, see [`Policy::restriction_keys`]):
/// a `[[recipient]]` rule on another address of the same entry (an alias of
/// a restricted list), else the restrictions stored on the entry. Only
/// read when the configuration restricts none of the spellings themselves;
/// when one entry cannot be read the answer is `Unavailable`.
pub async fn stored_rule(snapshot: &Snapshot, rcpt: &Address, deadline: tokio::time::Instant) -> Stored {
    let policy = &*snapshot.policy;
    let directory = &snapshot.directory;
    // Cheap checks first: this runs for every recipient.
    let stored = directory.reads_stored_restrictions();
    let aliases = policy.restricts_recipients() && directory.reads_recipient_aliases();
    if !stored && !aliases {
        return Stored::None;
    }
    if !policy.configured_restrictions(rcpt).is_empty() {
        return Stored::None;
    }
    let mut rules: Vec<RecipientRule> = Vec::new();
    let keys = policy.restriction_keys(rcpt);
    for key in keys.iter().filter(|k| policy.is_local(k) && !k.is_postmaster()) {
        let address = key.to_string();
        let lookup = directory.recipient_entry(&address);
        let entry = match within_deadline(policy, directory, deadline, lookup).await {
            Ok(None) => continue,
            Ok(Some(entry)) => entry,
            Err(e) => return Stored::Unavailable(e.1),
        };
        let mut by_alias: Vec<RecipientRule> = Vec::new();
        if aliases {
            let others = entry.addresses.iter().filter(|a| **a != address);
            for other in others.filter_map(|a| Address::parse(a).ok().flatten()) {
                by_alias.extend(policy.configured_restrictions(&other).into_iter().cloned());
            }
        }
        // Per entry, a rule the admin wrote beats what the directory stores
        // on it, as it does for the address the rule names; the rules of
        // every entry reached then all apply.
        if !by_alias.is_empty() {
            rules.extend(by_alias);
        } else if stored && !entry.is_empty() {
            rules.push(RecipientRule::from_stored(key, &entry));
        }
    }
    if rules.is_empty() {
        Stored::None
    } else {
        Stored::Rules(rules)
    }
}

/// The envelope sender as the rules judge it: completed as the MTA
/// completes a bare local part. A sender that is not an address is kept as
/// written: it then matches none of a user's addresses (send-as) and still
/// counts as claiming a local domain when it names one (spoofing).
pub fn sender_address(policy: &Policy, raw: &str) -> Option<Address> {
    match Address::parse(raw) {
        Ok(a) => a.map(|a| a.completed(policy.addresses.default_domain.as_deref())),
        // Read as Sendmail's tokenizer reads it, which drops blanks and
        // (comments): `alice@example .com` claims example.com.
        Err(_) => Some(Address::from_mta(&without_blanks_and_comments(raw))),
    }
}

/// `raw` without spaces, tabs and parenthesised comments outside quotes.
fn without_blanks_and_comments(raw: &str) -> String {
    let (mut out, mut depth, mut quoted, mut escaped) =
        (String::with_capacity(raw.len()), 0u32, false, false);
    for c in raw.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                if depth == 0 {
                    out.push(c);
                }
            }
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            ' ' | '\t' if !quoted => {}
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Where the MTA says it will deliver a recipient: `{rcpt_addr}`, read
/// with `{rcpt_mailer}` and `{rcpt_host}`. The local delivery agents
/// (`local` in both MTAs) deliver by local part, so that view is the local
/// part in the default domain. `None` when the MTA sent nothing to judge.
/// Postfix hands every recipient of a `virtual_alias_domains` domain to its
/// `error` transport and expands it later, so an `error` view is judged too
/// when it is an address (Sendmail's carries the error text instead).
pub fn mta_recipient(policy: &Policy, macros: &MacroStore, typed: &str) -> Option<Address> {
    let text = |name| macros.get(name).map(|v| String::from_utf8_lossy(v));
    let addr = text("rcpt_addr")?;
    let addr: &str = &addr;
    let mailer = text("rcpt_mailer").unwrap_or_default();
    let default = policy.addresses.default_domain.as_deref();
    if addr.trim().is_empty() {
        return None;
    }
    let local_or_error = mailer.eq_ignore_ascii_case("local") || mailer.eq_ignore_ascii_case("error");
    // The common case: the MTA routes the recipient as typed; the typed
    // view is judged anyway.
    if !local_or_error && typed.strip_prefix('<').and_then(|t| t.strip_suffix('>')) == Some(addr) {
        return None;
    }
    if mailer.eq_ignore_ascii_case("error") {
        return match Address::parse(addr) {
            Ok(Some(a)) if !a.domain.is_empty() => Some(a),
            _ => None,
        };
    }
    if mailer.eq_ignore_ascii_case("local") {
        let local = addr.rsplit_once('@').map_or(addr, |(l, _)| l);
        return Some(match Address::parse(local) {
            Ok(Some(a)) if a.domain.is_empty() => a.completed(default),
            _ => Address::from_mta(addr),
        });
    }
    let view = Address::from_mta(addr);
    if view.domain.is_empty() {
        // A remote mailer with a bare user: the host is where it goes.
        if let Some(host) = text("rcpt_host").filter(|h| !h.trim().is_empty()) {
            return Some(Address::from_mta(&format!("{}@{}", view.local, host.trim())));
        }
    }
    Some(view.completed(default))
}

/// One recipient, judged as a live session and `explain` judge it: the
/// typed argument by the strict model, then the MTA's view when it names
/// another address; the stricter decision wins (or, with
/// `mta_view = "log"`, is only logged). Returns the address to show.
pub async fn judge_rcpt(
    snapshot: &Snapshot,
    listener: &Listener,
    mail: &MailStage<'_>,
    raw: &str,
    mta: Option<Address>,
) -> RcptJudgement {
    let policy = &*snapshot.policy;
    let (subject, sender) = (mail.subject, mail.sender);
    let typed = match Address::parse(raw) {
        Ok(Some(a)) => a.completed(policy.addresses.default_domain.as_deref()),
        Ok(None) | Err(_) => {
            return RcptJudgement {
                shown: Address::from_mta(raw),
                mta: None,
                decision: evaluate_invalid_rcpt(policy, listener, subject, sender),
            }
        }
    };
    // Both views share one directory budget.
    let deadline = tokio::time::Instant::now() + policy.decision_timeout;
    let decide = |view| decide_view(snapshot, listener, mail, view, deadline);
    let by_typed = decide(&typed).await;
    let Some(mta) = mta.filter(|m| *m != typed) else {
        return RcptJudgement {
            shown: typed,
            mta: None,
            decision: by_typed,
        };
    };
    let by_mta = decide(&mta).await;
    if (by_mta.action != by_typed.action) || (by_mta.rule != by_typed.rule) {
        tracing::info!(
            listener = %listener.name,
            recipient = %typed,
            mta_recipient = %mta,
            rule = by_typed.rule,
            mta_rule = by_mta.rule,
            "the MTA resolves this recipient to another address, which the policy judges differently"
        );
    }
    let decision = match policy.addresses.mta_view {
        MtaView::Enforce => stricter(by_typed, by_mta),
        MtaView::Log => by_typed,
    };
    RcptJudgement {
        shown: typed,
        mta: Some(mta),
        decision,
    }
}

/// One view of a recipient: its stored restrictions, then the rules.
async fn decide_view(
    snapshot: &Snapshot,
    listener: &Listener,
    mail: &MailStage<'_>,
    view: &Address,
    deadline: tokio::time::Instant,
) -> Decision {
    let stored = stored_rule(snapshot, view, deadline).await;
    evaluate_rcpt_after_mail(
        &snapshot.policy,
        listener,
        mail.subject,
        mail.sender,
        mail.decision,
        view,
        stored.as_stored(),
    )
}

/// What a transaction's recipients are judged with: who sends, and the
/// MAIL decision (taken once; it holds for every recipient).
pub struct MailStage<'a> {
    pub subject: &'a Subject,
    pub sender: Option<&'a Address>,
    pub decision: &'a Decision,
}

/// A recipient's decision and the addresses it was made on.
pub struct RcptJudgement {
    /// The typed recipient, normalised (or as written when invalid).
    pub shown: Address,
    /// The MTA's view, when it differs from the typed one.
    pub mta: Option<Address>,
    pub decision: Decision,
}

/// Turn a decision into what the MTA is told.
pub fn verdict_for(policy: &Policy, d: &Decision, rcpt: Option<&Address>) -> Verdict {
    if d.lets_through() {
        return Verdict::Continue;
    }
    match policy.render(d, rcpt).reply {
        Some(reply) => Verdict::Reply(Bytes::from(crate::policy::reply::sanitize(&reply))),
        None => Verdict::Tempfail,
    }
}

/// The MAIL decision on listener `id`, logged (with the queue id and
/// client of `logged`) when it refuses.
fn decide_mail(
    policy: &Policy,
    id: ListenerId,
    subject: &Subject,
    sender: Option<&Address>,
    logged: (&str, Option<IpAddr>),
) -> Decision {
    let l = policy.listener_by_id(id);
    let d = evaluate_mail(policy, l, subject, sender);
    LogLine {
        queue_id: logged.0,
        client: logged.1,
        policy,
        listener: &l.name,
        subject,
        sender,
        rcpt: None,
        mta_rcpt: None,
    }
    .emit(&d);
    d
}

struct LogLine<'a> {
    queue_id: &'a str,
    client: Option<IpAddr>,
    policy: &'a Policy,
    listener: &'a str,
    subject: &'a Subject,
    sender: Option<&'a Address>,
    rcpt: Option<&'a Address>,
    /// The MTA's view of the recipient, when it differs from the typed one.
    mta_rcpt: Option<&'a Address>,
}

impl LogLine<'_> {
    fn emit(&self, d: &Decision) {
        let action = match d.action {
            Action::Accept => "accept",
            Action::Reject(_) => "reject",
            Action::Tempfail(_) => "tempfail",
        };
        let stage = if self.rcpt.is_some() { "rcpt" } else { "mail" };
        crate::metrics::count_decision(self.listener, stage, d.rule, action, d.monitored);
        if d.action == Action::Accept && !self.policy.log_accepted {
            tracing::debug!(listener = self.listener, rule = d.rule, "accepted");
            return;
        }
        let rendered = self.policy.render(d, self.rcpt);
        let reply = rendered.reply.unwrap_or_default();
        let queue_id = self.queue_id;
        let client = self
            .client
            .map(|c| c.to_string())
            .unwrap_or_else(|| "unknown".into());
        let sender = self.sender.map(|s| s.to_string()).unwrap_or_else(|| "<>".into());
        let rcpt = self.rcpt.map(|r| r.to_string()).unwrap_or_default();
        let mta_rcpt = self.mta_rcpt.map(|r| r.to_string()).unwrap_or_default();
        let login = self.subject.login.as_deref().unwrap_or("");
        let path = d.path().join(" > ");
        tracing::info!(
            queue_id = %queue_id,
            listener = self.listener,
            client = %client,
            login = login,
            sender = %sender,
            recipient = %rcpt,
            mta_recipient = %mta_rcpt,
            rule = d.rule,
            path = path.as_str(),
            reply = reply.as_str(),
            action = rendered.action,
            config_version = self.policy.version,
            "{}",
            match (d.action == Action::Accept, d.monitored) {
                (true, _) => "accepted",
                (false, true) => "would reject (monitor mode)",
                (false, false) => "rejected",
            }
        );
    }
}

impl Handler for Enforcer {
    type Transaction = Transaction;

    fn macro_request(&self) -> MacroRequest {
        macro_request()
    }

    async fn mail(&self, facts: &Facts<'_>) -> (Verdict, Transaction) {
        let started = std::time::Instant::now();
        let snapshot = self.current.load_full();
        let policy = &*snapshot.policy;
        let sender = facts
            .mail
            .first()
            .and_then(|s| sender_address(policy, &String::from_utf8_lossy(s)));
        let daemon_name = facts.macros.get_str("daemon_name");
        let ctx = listener_context(facts, daemon_name.as_deref());
        let listener = policy.select_listener(&ctx);
        self.check_listener_keys(
            policy,
            |key| facts.macros.get(key).is_some(),
            &LISTENER_MACROS,
            ctx.client,
            (MILTER_NO_CLIENT, MILTER_CLIENT_FIX),
        );
        let login = facts.macros.get_str("auth_authen");
        // No listener: nothing to decide, so nothing to ask the directory.
        let subject = match listener {
            // Boxed, as at RCPT: off the connection task's memory.
            Some(_) => {
                Box::pin(resolve_subject(
                    &snapshot.directory,
                    policy,
                    listener,
                    login.as_deref(),
                    ctx.client,
                    sender.as_ref(),
                ))
                .await
            }
            None => Subject::anonymous(),
        };
        let mut mail = None;
        let verdict = match listener {
            None => {
                tracing::warn!(
                    peer = facts.peer,
                    socket = facts.socket,
                    macros = ?facts.macros.names(),
                    config_version = policy.version,
                    "no listener matches this session and there is no \"default\" listener: answered 4xx"
                );
                Verdict::Reply(policy.replies.get(ReplyKind::NoListener).wire(None))
            }
            Some(id) => {
                let queue_id = facts.macros.get_str("i").unwrap_or_default();
                let d = decide_mail(policy, id, &subject, sender.as_ref(), (&queue_id, ctx.client));
                let verdict = verdict_for(policy, &d, None);
                mail = Some(d);
                verdict
            }
        };
        let tx = Transaction {
            listener,
            subject,
            sender,
            snapshot: snapshot.clone(),
            mail,
        };
        crate::metrics::observe_decision("milter", started.elapsed());
        (verdict, tx)
    }

    async fn rcpt(&self, tx: &mut Transaction, facts: &Facts<'_>, argv: &[Bytes]) -> Verdict {
        let started = std::time::Instant::now();
        let policy = &*tx.snapshot.policy;
        let (Some(id), Some(mail)) = (tx.listener, &tx.mail) else {
            return Verdict::Reply(policy.replies.get(ReplyKind::NoListener).wire(None));
        };
        let l = policy.listener_by_id(id);
        let raw = argv
            .first()
            .map(|r| String::from_utf8_lossy(r))
            .unwrap_or_default();
        let mta = mta_recipient(policy, facts.macros, &raw);
        let mail_stage = MailStage {
            subject: &tx.subject,
            sender: tx.sender.as_ref(),
            decision: mail,
        };
        // Boxed: the decision's state machine would otherwise be part of
        // every connection task's memory, idle or not.
        let j = Box::pin(judge_rcpt(&tx.snapshot, l, &mail_stage, &raw, mta)).await;
        LogLine {
            queue_id: &facts.macros.get_str("i").unwrap_or_default(),
            client: client_address(facts),
            policy,
            listener: &l.name,
            subject: &tx.subject,
            sender: tx.sender.as_ref(),
            rcpt: Some(&j.shown),
            mta_rcpt: j.mta.as_ref(),
        }
        .emit(&j.decision);
        crate::metrics::observe_decision("milter", started.elapsed());
        verdict_for(policy, &j.decision, Some(&j.shown))
    }
}

/// The decisions for a whole envelope, computed exactly as a live session does.
pub struct Explanation {
    pub subject: Subject,
    pub mail: Decision,
    pub rcpts: Vec<RcptJudgement>,
}

/// Dry run for `gatehouse explain`: `from` and `rcpts` as a client types them.
pub async fn explain(
    snapshot: &Snapshot,
    listener: ListenerId,
    env: &Envelope<'_>,
    rcpts: &[String],
) -> Explanation {
    explain_views(snapshot, listener, env, rcpts.iter().map(|r| (r.as_str(), None))).await
}

/// [`explain`] with each recipient's view of the MTA too (where it said
/// the recipient goes, when that differs from what was typed), judged as
/// a live session judges both: `gatehouse replay` passes the logged one.
pub async fn explain_views<'r>(
    snapshot: &Snapshot,
    listener: ListenerId,
    env: &Envelope<'_>,
    rcpts: impl IntoIterator<Item = (&'r str, Option<Address>)>,
) -> Explanation {
    let policy = &*snapshot.policy;
    let subject = resolve_subject(
        &snapshot.directory,
        policy,
        Some(listener),
        env.login,
        env.client,
        env.sender,
    )
    .await;
    let l = policy.listener_by_id(listener);
    let mail = evaluate_mail(policy, l, &subject, env.sender);
    let mut judged = Vec::new();
    if mail.action == Action::Accept || mail.monitored {
        let stage = MailStage {
            subject: &subject,
            sender: env.sender,
            decision: &mail,
        };
        for (r, mta) in rcpts {
            judged.push(judge_rcpt(snapshot, l, &stage, r, mta).await);
        }
    }
    Explanation {
        subject,
        mail,
        rcpts: judged,
    }
}

#[cfg(test)]
mod tests {
    //! The MTA's view of a recipient, from the macros each MTA sends.
    use bytes::Bytes;

    use super::*;
    use crate::policy::{AddressSettings, DirectoryErrorAction, DomainPattern, Mode, Replies};

    fn policy() -> Policy {
        Policy {
            version: 1,
            mode: Mode::Enforce,
            on_directory_error: DirectoryErrorAction::Tempfail,
            decision_timeout: std::time::Duration::from_secs(5),
            local_domains: vec![DomainPattern::parse(".example.com").unwrap()],
            addresses: AddressSettings {
                default_domain: Some("example.com".into()),
                ..Default::default()
            },
            listeners: vec![],
            default_listener: None,
            recipients: Default::default(),
            replies: Replies::default(),
            log_accepted: false,
        }
    }

    /// Macro name/value pairs of one RCPT.
    type Macros<'a> = &'a [(&'a str, &'a str)];

    fn view(pairs: Macros) -> Option<String> {
        let mut m = MacroStore::default();
        m.set(crate::milter::protocol::cmd::RCPT, pairs.iter().copied());
        mta_recipient(&policy(), &m, "").map(|a| a.to_string())
    }

    #[test]
    fn invalid_senders_are_read_as_sendmail_reads_them() {
        let mut p = policy();
        p.local_domains.push(DomainPattern::parse("example.com").unwrap());
        for raw in [
            "<alice@example .com>",
            "<alice@example.com(x)>",
            "<alice (x) @ example.com>",
        ] {
            let s = sender_address(&p, raw).unwrap();
            assert!(p.claims_local_domain(&s), "{raw} -> {s}");
        }
        assert!(!p.claims_local_domain(&sender_address(&p, "<x@partner .example>").unwrap()));
    }

    #[test]
    fn mta_view_table() {
        let cases: &[(Macros, Option<&str>)] = &[
            // Postfix, percent hack resolved off-site.
            (
                &[("{rcpt_addr}", "victim@external.org"), ("{rcpt_mailer}", "relay")],
                Some("victim@external.org"),
            ),
            // Local delivery agents deliver by local part: the default domain's mailbox.
            (
                &[
                    ("{rcpt_addr}", "all-staff@mx.example.com"),
                    ("{rcpt_mailer}", "local"),
                ],
                Some("all-staff@example.com"),
            ),
            (
                &[("{rcpt_addr}", "All-Staff"), ("{rcpt_mailer}", "local")],
                Some("all-staff@example.com"),
            ),
            // Sendmail: a remote mailer with a bare user goes to its host.
            (
                &[
                    ("{rcpt_addr}", "victim"),
                    ("{rcpt_mailer}", "esmtp"),
                    ("{rcpt_host}", "external.org"),
                ],
                Some("victim@external.org"),
            ),
            // Sendmail's error mailer carries text; Postfix's (virtual alias
            // domains) the address, which is judged.
            (
                &[("{rcpt_addr}", "User unknown"), ("{rcpt_mailer}", "error")],
                None,
            ),
            (
                &[
                    ("{rcpt_addr}", "all-staff@lists.example.com"),
                    ("{rcpt_mailer}", "error"),
                ],
                Some("all-staff@lists.example.com"),
            ),
            (&[("{rcpt_mailer}", "esmtp")], None),
            (&[], None),
        ];
        for (pairs, want) in cases {
            assert_eq!(view(pairs).as_deref(), *want, "{pairs:?}");
        }
        // An unparsable view is never local.
        let mut m = MacroStore::default();
        m.set(
            crate::milter::protocol::cmd::RCPT,
            vec![(Bytes::from("{rcpt_addr}"), Bytes::from("x@a;@example.com"))],
        );
        let v = mta_recipient(&policy(), &m, "").unwrap();
        assert!(!policy().is_local(&v), "{v}");
    }
}
