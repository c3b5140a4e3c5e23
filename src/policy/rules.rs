//! Each restriction is one small function with one job, like Postfix's
//! restriction lists; `evaluate_mail` and `evaluate_rcpt` run them in order
//! and stop at the first that does not pass.

use std::sync::Arc;

use super::{
    Action, Address, Decision, DirectoryErrorAction, GroupRule, Listener, Mode, Policy, RecipientRule,
};
use super::{MembershipPath, ReplyKind, SenderRef, StoredRule, Subject, SubjectKind};
use crate::directory::{Fault, ResolvedUser};

/// Outcome of one rule: pass (go on), or a decision.
type RuleResult = Result<(), Decision>;

fn decision(action: Action, rule: &'static str, path: Option<MembershipPath>) -> Decision {
    Decision {
        action,
        rule,
        monitored: false,
        path,
    }
}

fn reject(kind: ReplyKind, rule: &'static str) -> Decision {
    decision(Action::Reject(kind), rule, None)
}

/// The directory could not answer for a rule that needs it. An outage
/// follows `on_directory_error`; an unusable answer (`Fault::Permanent`) is
/// always a tempfail: never a guess in either direction.
fn directory_error(policy: &Policy, fault: Fault, kind: ReplyKind, rule: &'static str) -> RuleResult {
    let action = match fault {
        Fault::Permanent => DirectoryErrorAction::Tempfail,
        Fault::Outage => policy.on_directory_error,
    };
    match action {
        DirectoryErrorAction::Tempfail => Err(decision(
            Action::Tempfail(ReplyKind::DirectoryUnavailable),
            rule,
            None,
        )),
        DirectoryErrorAction::Accept => Ok(()),
        DirectoryErrorAction::Reject => Err(reject(kind, rule)),
    }
}

fn with_mode(mut d: Decision, mode: Mode) -> Decision {
    if d.action != Action::Accept && mode == Mode::Monitor {
        d.monitored = true;
    }
    d
}

/// Decide MAIL FROM.
pub fn evaluate_mail(
    policy: &Policy,
    listener: &Listener,
    subject: &Subject,
    sender: Option<&Address>,
) -> Decision {
    let mode = listener.mode.unwrap_or(policy.mode);
    let checks = || -> RuleResult {
        anonymous_access(listener, subject)?;
        disabled_account(subject)?;
        submit_permission(policy, listener, subject)?;
        send_as(policy, listener, subject, sender)?;
        anonymous_local_sender(policy, listener, subject, sender)?;
        Ok(())
    };
    match checks() {
        Ok(()) => decision(Action::Accept, "mail_accepted", None),
        Err(d) => with_mode(d, mode),
    }
}

/// Decide one RCPT TO, with the restrictions of the configuration only.
pub fn evaluate_rcpt(
    policy: &Policy,
    listener: &Listener,
    subject: &Subject,
    sender: Option<&Address>,
    rcpt: &Address,
) -> Decision {
    evaluate_rcpt_with(policy, listener, subject, sender, rcpt, StoredRule::None)
}

/// Decide one RCPT TO; `stored` are the restrictions found on the
/// recipient's directory entry. A `[[recipient]]` of the configuration for
/// the same address takes precedence over them.
pub fn evaluate_rcpt_with(
    policy: &Policy,
    listener: &Listener,
    subject: &Subject,
    sender: Option<&Address>,
    rcpt: &Address,
    stored: StoredRule<'_>,
) -> Decision {
    let mail = evaluate_mail(policy, listener, subject, sender);
    evaluate_rcpt_after_mail(policy, listener, subject, sender, &mail, rcpt, stored)
}

/// As [`evaluate_rcpt_with`], with the transaction's MAIL decision already
/// taken (it depends on nothing a recipient changes).
pub fn evaluate_rcpt_after_mail(
    policy: &Policy,
    listener: &Listener,
    subject: &Subject,
    sender: Option<&Address>,
    mail: &Decision,
    rcpt: &Address,
    stored: StoredRule<'_>,
) -> Decision {
    let listener_mode = listener.mode.unwrap_or(policy.mode);
    // The MAIL-stage rules hold for every recipient too: a session refused at
    // MAIL in monitor mode must not look clean at RCPT.
    if mail.action != Action::Accept {
        return mail.clone();
    }
    if let Err(d) = relay(policy, listener, subject, rcpt) {
        return with_mode(d, listener_mode);
    }
    if policy.is_local(rcpt) && rcpt.is_postmaster() {
        return decision(Action::Accept, "postmaster", None);
    }
    // Every spelling that reaches a restricted recipient is restricted; when
    // several rules apply (a routed form naming two), the strictest decides.
    let configured = policy.configured_restrictions(rcpt);
    if !configured.is_empty() {
        return configured
            .into_iter()
            .map(|r| restricted(policy, r, listener_mode, subject, sender))
            .reduce(stricter)
            .expect("not empty");
    }
    let restrictions = match stored {
        StoredRule::Rules(r) if !r.is_empty() => r,
        StoredRule::Unavailable(fault) => {
            let d = match directory_error(
                policy,
                fault,
                ReplyKind::RecipientNotAuthorized,
                "recipient_directory",
            ) {
                Ok(()) => decision(Action::Accept, "recipient_directory", None),
                Err(d) => d,
            };
            return with_mode(d, listener_mode);
        }
        StoredRule::None | StoredRule::Rules(_) => {
            let rule = if policy.is_local(rcpt) {
                "local_recipient"
            } else {
                "relay_allowed"
            };
            return decision(Action::Accept, rule, None);
        }
    };
    restrictions
        .iter()
        .map(|r| restricted(policy, r, listener_mode, subject, sender))
        .reduce(stricter)
        .expect("not empty")
}

/// Decide a RCPT whose argument is not an address: refused, never guessed
/// at (the MTA could read it as another destination than we would).
pub fn evaluate_invalid_rcpt(
    policy: &Policy,
    listener: &Listener,
    subject: &Subject,
    sender: Option<&Address>,
) -> Decision {
    let mail = evaluate_mail(policy, listener, subject, sender);
    if mail.action != Action::Accept {
        return mail;
    }
    with_mode(
        reject(ReplyKind::InvalidRecipient, "recipient_syntax"),
        listener.mode.unwrap_or(policy.mode),
    )
}

/// The stricter of two decisions on one recipient (two views of it, or two
/// restrictions that both apply): an enforced refusal beats a temporary
/// one, which beats a monitored one, which beats an accept. On a tie the
/// first wins.
pub fn stricter(a: Decision, b: Decision) -> Decision {
    fn rank(d: &Decision) -> u8 {
        match (&d.action, d.monitored) {
            (Action::Accept, _) => 0,
            (_, true) => 1,
            (Action::Tempfail(_), false) => 2,
            (Action::Reject(_), false) => 3,
        }
    }
    if rank(&b) > rank(&a) {
        b
    } else {
        a
    }
}

fn restricted(
    policy: &Policy,
    restriction: &RecipientRule,
    listener_mode: Mode,
    subject: &Subject,
    sender: Option<&Address>,
) -> Decision {
    let mode = restriction.mode.unwrap_or(listener_mode);
    match restricted_recipient(policy, restriction, subject, sender) {
        Ok(d) | Err(d) => with_mode(d, mode),
    }
}

// --- MAIL-stage rules -----------------------------------------------------

fn anonymous_access(listener: &Listener, subject: &Subject) -> RuleResult {
    if subject.kind == SubjectKind::Anonymous && !listener.allow_anonymous {
        return Err(reject(ReplyKind::AnonymousForbidden, "anonymous_access"));
    }
    Ok(())
}

/// Only members of submit.allow_groups (and none of deny_groups) may submit.
/// A disabled account (Active Directory) submits nothing, on any listener:
/// its password may still work where the login layer does not ask the
/// directory (application passwords, cached credentials), and being a
/// member of no group must not lift a group's ban on it either.
fn disabled_account(subject: &Subject) -> RuleResult {
    let disabled = subject.kind == SubjectKind::Authenticated
        && matches!(&subject.user, Ok(Some(u)) if u.entry.disabled);
    if disabled {
        return Err(reject(ReplyKind::SubmitDenied, "account_disabled"));
    }
    Ok(())
}

/// Applies to authenticated clients; anonymous access is `allow_anonymous`'s
/// job and trusted networks are trusted by address.
fn submit_permission(policy: &Policy, listener: &Listener, subject: &Subject) -> RuleResult {
    if subject.kind != SubjectKind::Authenticated || listener.submit.is_open() {
        return Ok(());
    }
    group_permission(
        policy,
        &listener.submit,
        subject,
        ReplyKind::SubmitDenied,
        "submit",
    )
}

/// An authenticated user may use only their own addresses as envelope sender.
fn send_as(policy: &Policy, listener: &Listener, subject: &Subject, sender: Option<&Address>) -> RuleResult {
    if subject.kind != SubjectKind::Authenticated || !listener.require_sender_match {
        return Ok(());
    }
    // The null sender is never refused for being null.
    let Some(sender) = sender else { return Ok(()) };
    if subject
        .login
        .as_deref()
        .is_some_and(|l| sender.is_written_ignoring_ascii_case(l))
    {
        return Ok(());
    }
    let owns = |user: &ResolvedUser, a: &Address| user.entry.addresses.iter().any(|own| a.is_written(own));
    match &subject.user {
        Err(e) => directory_error(policy, e.1, ReplyKind::SendAsDenied, "send_as"),
        Ok(Some(user)) if owns(user, sender) => Ok(()),
        // Plus-addressing of one's own address (Postfix smtpd_sender_login_maps does the same).
        Ok(Some(user))
            if sender
                .without_extension(&policy.addresses.recipient_delimiter)
                .is_some_and(|base| owns(user, &base)) =>
        {
            Ok(())
        }
        Ok(_) => Err(reject(ReplyKind::SendAsDenied, "send_as")),
    }
}

/// An anonymous client claiming one of our domains as sender is the spoofing case.
fn anonymous_local_sender(
    policy: &Policy,
    listener: &Listener,
    subject: &Subject,
    sender: Option<&Address>,
) -> RuleResult {
    if subject.kind == SubjectKind::Anonymous
        && listener.reject_anonymous_local_sender
        && sender.is_some_and(|s| policy.claims_local_domain(s))
    {
        return Err(reject(ReplyKind::AnonymousLocalSender, "anonymous_local_sender"));
    }
    Ok(())
}

// --- RCPT-stage rules -----------------------------------------------------

/// No open relay: a non-local recipient needs an authenticated or trusted
/// client, and the listener's relay groups.
fn relay(policy: &Policy, listener: &Listener, subject: &Subject, rcpt: &Address) -> RuleResult {
    if policy.is_local(rcpt) {
        return Ok(());
    }
    match subject.kind {
        SubjectKind::Anonymous => Err(reject(ReplyKind::RelayAnonymous, "relay")),
        SubjectKind::Trusted => Ok(()),
        SubjectKind::Authenticated if listener.relay.is_open() => Ok(()),
        SubjectKind::Authenticated => group_permission(
            policy,
            &listener.relay,
            subject,
            ReplyKind::RelayDenied,
            "relay_group",
        ),
    }
}

/// Deny beats allow; an empty allow list allows everyone not denied.
fn group_permission(
    policy: &Policy,
    rule: &GroupRule,
    subject: &Subject,
    kind: ReplyKind,
    name: &'static str,
) -> RuleResult {
    let user = match &subject.user {
        Err(e) => return directory_error(policy, e.1, kind, name),
        Ok(u) => u.as_ref(),
    };
    // Deny beats allow; a deny group that cannot be decided is no pass.
    let mut undecided = false;
    for g in &rule.deny_groups {
        match member_of(user, g) {
            Match::Yes(path) => return Err(decision(Action::Reject(kind), name, Some(path))),
            Match::Undecidable => undecided = true,
            Match::No => {}
        }
    }
    if undecided {
        return directory_error(policy, Fault::Permanent, kind, name);
    }
    if rule.allow_groups.is_empty() {
        return Ok(());
    }
    for g in &rule.allow_groups {
        match member_of(user, g) {
            Match::Yes(_) => return Ok(()),
            Match::Undecidable => undecided = true,
            Match::No => {}
        }
    }
    if undecided {
        return directory_error(policy, Fault::Permanent, kind, name);
    }
    Err(reject(kind, name))
}

/// Whether a rule's reference covers the session, with the evidence path.
enum Match {
    Yes(MembershipPath),
    No,
    /// The directory has no single entry for the group's name that this
    /// user's membership can be matched against: answered tempfail.
    Undecidable,
}

fn member_of(user: Option<&Arc<ResolvedUser>>, group: &str) -> Match {
    let Some(u) = user else { return Match::No };
    if let Some(path) = u.groups.path_to(group) {
        return Match::Yes(path.clone());
    }
    if u.groups.undecidable(group).is_some() {
        return Match::Undecidable;
    }
    Match::No
}

/// A restricted recipient: require-auth, then reject_from, then accept_from.
/// `Ok` carries the accepting decision, `Err` the refusing one.
fn restricted_recipient(
    policy: &Policy,
    r: &RecipientRule,
    subject: &Subject,
    sender: Option<&Address>,
) -> Result<Decision, Decision> {
    if r.require_authenticated && subject.kind == SubjectKind::Anonymous {
        return Err(reject(
            ReplyKind::RecipientRequiresAuth,
            "recipient_require_authenticated",
        ));
    }
    let user = match &subject.user {
        Ok(u) => u.as_ref(),
        Err(e) => {
            let needs_directory = r
                .accept_from
                .iter()
                .chain(&r.reject_from)
                .any(|s| !matches!(s, SenderRef::Sender(_)));
            if needs_directory {
                return directory_error(
                    policy,
                    e.1,
                    ReplyKind::RecipientNotAuthorized,
                    "recipient_restriction",
                )
                .map(|()| decision(Action::Accept, "recipient_restriction", None));
            }
            None
        }
    };
    let undecidable = |rule: &'static str| {
        Err(decision(
            Action::Tempfail(ReplyKind::DirectoryUnavailable),
            rule,
            None,
        ))
    };
    let mut undecided = false;
    for s in &r.reject_from {
        match matches_sender(policy, s, subject, user, sender, Claim::Honoured) {
            Match::Yes(path) => {
                return Err(decision(
                    Action::Reject(ReplyKind::RecipientNotAuthorized),
                    "recipient_reject_from",
                    Some(path),
                ))
            }
            Match::Undecidable => undecided = true,
            Match::No => {}
        }
    }
    if undecided {
        return undecidable("recipient_reject_from");
    }
    if r.accept_from.is_empty() {
        return Ok(decision(Action::Accept, "recipient_open", None));
    }
    for s in &r.accept_from {
        match matches_sender(policy, s, subject, user, sender, Claim::ExternalOnly) {
            Match::Yes(path) => return Ok(decision(Action::Accept, "recipient_accept_from", Some(path))),
            Match::Undecidable => undecided = true,
            Match::No => {}
        }
    }
    if undecided {
        return undecidable("recipient_accept_from");
    }
    Err(reject(ReplyKind::RecipientNotAuthorized, "recipient_accept_from"))
}

/// How far an envelope sender that is not backed by the session's identity counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Deny lists: a claim is enough to refuse.
    Honoured,
    /// Allow lists: only a claim of an external address (a contact), never one of ours.
    ExternalOnly,
}

/// Whether sender reference `s` covers this session; returns the evidence path.
fn matches_sender(
    policy: &Policy,
    s: &SenderRef,
    subject: &Subject,
    user: Option<&Arc<ResolvedUser>>,
    sender: Option<&Address>,
    claim: Claim,
) -> Match {
    // Anonymous sessions are never resolved: group and user entries can't match.
    let verified = if subject.kind == SubjectKind::Anonymous {
        None
    } else {
        user
    };
    let found = match s {
        SenderRef::Group(g) => return member_of(verified, g),
        SenderRef::User(login) => {
            let by_entry = verified.is_some_and(|u| {
                u.entry.login.eq_ignore_ascii_case(login)
                    || u.entry.other_logins.iter().any(|o| o.eq_ignore_ascii_case(login))
            });
            let by_login = subject.kind == SubjectKind::Authenticated
                && subject
                    .login
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(login));
            (by_entry || by_login).then(|| Arc::from([login.clone()]))
        }
        SenderRef::Dn(dn) => verified
            .filter(|u| u.entry.dn.eq_ignore_ascii_case(dn))
            .map(|u| Arc::from([u.entry.login.clone()])),
        SenderRef::Sender(addr) => {
            let claimed = sender.is_some_and(|snd| snd == addr);
            let claim_counts = match claim {
                Claim::Honoured => true,
                Claim::ExternalOnly => !policy.is_local(addr),
            };
            let own = verified.is_some_and(|u| u.entry.addresses.iter().any(|a| addr.is_written(a)));
            (own || (claimed && claim_counts)).then(|| Arc::from([addr.to_string()]))
        }
    };
    found.map_or(Match::No, Match::Yes)
}

#[cfg(test)]
mod tests {
    //! Each rule on its own, with hand-made subjects (no directory): the
    //! table-driven contract of the rules and their interactions.
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::directory::{DirectoryUnavailable, Memberships, ResolvedUser, UserEntry};
    use crate::policy::{DomainPattern, ListenerMatch, Replies};

    fn user(login: &str, addresses: &[&str], groups: &[&str]) -> Arc<ResolvedUser> {
        ResolvedUser::for_test(login, &format!("uid={login}"), addresses, groups)
    }

    fn authenticated(u: Arc<ResolvedUser>) -> Subject {
        Subject {
            kind: SubjectKind::Authenticated,
            login: Some(u.entry.login.clone()),
            user: Ok(Some(u)),
        }
    }

    fn unavailable(kind: SubjectKind) -> Subject {
        Subject {
            kind,
            login: Some("x".into()),
            user: Err(DirectoryUnavailable::outage("down")),
        }
    }

    fn listener() -> Listener {
        Listener {
            name: "l".into(),
            matcher: ListenerMatch::default(),
            allow_anonymous: true,
            trusted_networks: vec![],
            reject_anonymous_local_sender: false,
            require_sender_match: false,
            submit: GroupRule::default(),
            relay: GroupRule::default(),
            mode: None,
        }
    }

    fn policy(recipients: Vec<RecipientRule>) -> Policy {
        Policy {
            version: 1,
            mode: Mode::Enforce,
            on_directory_error: DirectoryErrorAction::Tempfail,
            decision_timeout: std::time::Duration::from_secs(5),
            local_domains: vec![DomainPattern::parse("example.com").unwrap()],
            addresses: crate::policy::AddressSettings {
                default_domain: Some("example.com".into()),
                recipient_delimiter: "+".into(),
                ..Default::default()
            },
            listeners: vec![],
            default_listener: None,
            recipients: recipients
                .into_iter()
                .map(|r| (r.address.clone(), r))
                .collect::<HashMap<_, _>>(),
            replies: Replies::default(),
            log_accepted: false,
        }
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap().unwrap()
    }

    fn groups(allow: &[&str], deny: &[&str]) -> GroupRule {
        GroupRule {
            allow_groups: allow.iter().map(|s| s.to_string()).collect(),
            deny_groups: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_disabled_account_submits_nothing_on_any_listener() {
        let p = policy(vec![]);
        let open = listener();
        let mut entry = (*user("dave", &["dave@example.com"], &[])).clone();
        entry.entry.disabled = true;
        let dave = authenticated(Arc::new(entry));
        let d = evaluate_mail(&p, &open, &dave, Some(&addr("dave@example.com")));
        assert_eq!(
            (d.action.clone(), d.rule),
            (Action::Reject(ReplyKind::SubmitDenied), "account_disabled")
        );
        let rcpt = evaluate_rcpt(&p, &open, &dave, None, &addr("x@elsewhere.example"));
        assert_ne!(rcpt.action, Action::Accept);
        // Anonymous sessions are never resolved, so never "disabled".
        let anon = evaluate_mail(&p, &open, &Subject::anonymous(), Some(&addr("dave@example.com")));
        assert_eq!(anon.action, Action::Accept);
    }

    #[test]
    fn a_user_rule_matches_any_of_the_users_logins() {
        let rule = RecipientRule {
            address: addr("ceo@example.com"),
            require_authenticated: false,
            accept_from: vec![],
            reject_from: vec![SenderRef::User("alice@corp.example.com".into())],
            mode: None,
        };
        let p = policy(vec![rule]);
        let mut entry = (*user("alice", &["alice@example.com"], &[])).clone();
        entry.entry.other_logins = vec!["alice@corp.example.com".into(), "EXAMPLE\\alice".into()];
        // Logged in by account name: still the UPN the rule names.
        let alice = authenticated(Arc::new(entry));
        let d = evaluate_rcpt(&p, &listener(), &alice, None, &addr("ceo@example.com"));
        assert_eq!(
            d.action,
            Action::Reject(ReplyKind::RecipientNotAuthorized),
            "{d:?}"
        );
    }

    #[test]
    fn relay_rule_table() {
        let p = policy(vec![]);
        let mut l = listener();
        l.relay = groups(&["Relayers"], &["Blocked"]);
        let anon = Subject::anonymous();
        let trusted = Subject {
            kind: SubjectKind::Trusted,
            login: None,
            user: Ok(None),
        };
        let member = authenticated(user("a", &[], &["Relayers"]));
        let both = authenticated(user("b", &[], &["Relayers", "Blocked"]));
        let outsider = authenticated(user("c", &[], &[]));
        let down = unavailable(SubjectKind::Authenticated);
        let ext = addr("x@elsewhere.example");
        let cases: Vec<(&Subject, Action, &str)> = vec![
            (&anon, Action::Reject(ReplyKind::RelayAnonymous), "relay"),
            (&trusted, Action::Accept, "relay_allowed"),
            (&member, Action::Accept, "relay_allowed"),
            (&both, Action::Reject(ReplyKind::RelayDenied), "relay_group"),
            (&outsider, Action::Reject(ReplyKind::RelayDenied), "relay_group"),
            (
                &down,
                Action::Tempfail(ReplyKind::DirectoryUnavailable),
                "relay_group",
            ),
        ];
        for (i, (s, action, rule)) in cases.into_iter().enumerate() {
            let d = evaluate_rcpt(&p, &l, s, None, &ext);
            assert_eq!((d.action, d.rule), (action, rule), "case {i}");
        }
        // Local recipients are never relaying, whoever sends.
        assert_eq!(
            evaluate_rcpt(&p, &l, &anon, None, &addr("bob@example.com")).action,
            Action::Accept
        );
        // Deny evidence carries the path.
        assert_eq!(evaluate_rcpt(&p, &l, &both, None, &ext).path(), ["b", "Blocked"]);
    }

    /// A group whose name the directory cannot pin to one entry for this
    /// user: no rule naming it passes or refuses on a guess.
    #[test]
    fn an_undecidable_group_is_a_tempfail_never_a_guess() {
        let p = policy(vec![]);
        let mut l = listener();
        l.relay = groups(&["Relayers", "Partners"], &["Blocked"]);
        let ext = addr("x@elsewhere.example");
        let tempfail = || Action::Tempfail(ReplyKind::DirectoryUnavailable);
        let cases: Vec<(&[&str], Action)> = vec![
            // Undecidable deny group: not a pass, even with an allow group.
            (&["?Blocked", "Relayers"], tempfail()),
            // Undecidable allow group and no other: not a refusal either.
            (&["?Relayers"], tempfail()),
            // Another allow group decides.
            (&["?Relayers", "Partners"], Action::Accept),
            // A certain deny group decides: deny beats allow.
            (&["?Relayers", "Blocked"], Action::Reject(ReplyKind::RelayDenied)),
            (&[], Action::Reject(ReplyKind::RelayDenied)),
        ];
        for (groups_of_user, want) in cases {
            let s = authenticated(user("u", &[], groups_of_user));
            let d = evaluate_rcpt(&p, &l, &s, None, &ext);
            assert_eq!(d.action, want, "{groups_of_user:?}");
        }
        // Restricted recipients, both lists.
        let list = RecipientRule {
            address: addr("all@example.com"),
            require_authenticated: true,
            accept_from: vec![SenderRef::Group("Staff".into())],
            reject_from: vec![SenderRef::Group("Contractors".into())],
            mode: None,
        };
        let p = policy(vec![list]);
        let rcpt = addr("all@example.com");
        for (groups_of_user, want) in [
            (&["?Staff"][..], tempfail()),
            (&["Staff", "?Contractors"][..], tempfail()),
            (&["Staff"][..], Action::Accept),
            (
                &["?Staff", "Contractors"][..],
                Action::Reject(ReplyKind::RecipientNotAuthorized),
            ),
        ] {
            let s = authenticated(user("u", &[], groups_of_user));
            let d = evaluate_rcpt(&p, &listener(), &s, None, &rcpt);
            assert_eq!(d.action, want, "{groups_of_user:?}");
        }
    }

    /// Routed recipients are never local: they need relay permission,
    /// whichever local domain they end in.
    #[test]
    fn routed_recipients_are_relaying() {
        let mut p = policy(vec![]);
        p.local_domains
            .push(DomainPattern::parse(".example.com").unwrap());
        let mut l = listener();
        l.relay = groups(&[], &["Blocked"]);
        let anon = Subject::anonymous();
        let blocked = authenticated(user("b", &[], &["Blocked"]));
        let relayer = authenticated(user("r", &[], &[]));
        for rcpt in [
            "victim%external.org@mx.example.com",
            "external.org!victim@mx.example.com",
            "\"victim@external.org\"@mx.example.com",
            "\"victim%external.org\"@example.com",
            "victim%external.org%mx.example.com@example.com",
            "external.org!victim",
            "victim%external.org",
        ] {
            let a = addr(rcpt).completed(Some("example.com"));
            assert!(!p.is_local(&a), "{rcpt}");
            let d = evaluate_rcpt(&p, &l, &anon, None, &a);
            assert_eq!(d.action, Action::Reject(ReplyKind::RelayAnonymous), "{rcpt}");
            let d = evaluate_rcpt(&p, &l, &blocked, None, &a);
            assert_eq!(d.action, Action::Reject(ReplyKind::RelayDenied), "{rcpt}");
            // A user allowed to relay still may (Postfix: permit_sasl_authenticated first).
            let d = evaluate_rcpt(&p, &l, &relayer, None, &a);
            assert_eq!((d.action, d.rule), (Action::Accept, "relay_allowed"), "{rcpt}");
        }
        // Controls: quoted local parts without routing characters stay local.
        for rcpt in [
            "\"john doe\"@example.com",
            "o'brien@sub.example.com",
            "alice@mx.example.com",
        ] {
            let d = evaluate_rcpt(&p, &l, &anon, None, &addr(rcpt));
            assert_eq!((d.action, d.rule), (Action::Accept, "local_recipient"), "{rcpt}");
        }
    }

    /// A restricted list is restricted under every spelling that reaches it.
    #[test]
    fn restricted_list_under_every_spelling() {
        let list = RecipientRule {
            address: addr("all-staff@example.com"),
            require_authenticated: true,
            accept_from: vec![],
            reject_from: vec![SenderRef::Group("Banned".into())],
            mode: None,
        };
        let p = policy(vec![list]);
        let l = listener();
        let anon = Subject::anonymous();
        let banned = authenticated(user("b", &[], &["Banned"]));
        let member = authenticated(user("m", &[], &[]));
        for rcpt in [
            "all-staff@example.com",
            "ALL-Staff@Example.COM.",
            "all-staff",
            "<all-staff>",
            "all-staff@",
            "all-staff+tag@example.com",
            "all-staff+@example.com",
            "\"all-staff\"@example.com",
            "\"all\\-staff\"@example.com",
            "all-staff%example.com@example.com",
            "example.com!all-staff",
            "example.com!all-staff@example.com",
            "\"all-staff@example.com\"@example.com",
            "all-staff+x%example.com@example.com",
        ] {
            let a = addr(rcpt).completed(Some("example.com"));
            let d = evaluate_rcpt(&p, &l, &anon, None, &a);
            assert!(!d.lets_through(), "anonymous to {rcpt}: {d:?}");
            let d = evaluate_rcpt(&p, &l, &banned, None, &a);
            assert!(!d.lets_through(), "banned to {rcpt}: {d:?}");
            let d = evaluate_rcpt(&p, &l, &member, None, &a);
            assert!(d.lets_through(), "member to {rcpt}: {d:?}");
        }
        // Another mailbox that only looks alike is not restricted.
        for rcpt in [
            "all-staffs@example.com",
            "all@example.com",
            "all-staff@elsewhere.example",
        ] {
            let a = addr(rcpt);
            let d = evaluate_rcpt(&p, &l, &member, None, &a);
            assert!(d.lets_through(), "{rcpt}");
            let d = evaluate_rcpt(&p, &l, &anon, None, &a);
            assert_ne!(d.rule, "recipient_require_authenticated", "{rcpt}");
        }
    }

    #[test]
    fn stricter_of_two_decisions() {
        let acc = decision(Action::Accept, "a", None);
        let tmp = decision(Action::Tempfail(ReplyKind::DirectoryUnavailable), "t", None);
        let rej = reject(ReplyKind::RelayAnonymous, "r");
        let mut mon = reject(ReplyKind::RelayAnonymous, "m");
        mon.monitored = true;
        assert_eq!(stricter(acc.clone(), rej.clone()).rule, "r");
        assert_eq!(stricter(rej.clone(), tmp.clone()).rule, "r");
        assert_eq!(stricter(tmp.clone(), mon.clone()).rule, "t");
        assert_eq!(stricter(mon.clone(), acc.clone()).rule, "m");
        assert_eq!(stricter(acc.clone(), acc).rule, "a");
    }

    /// Anonymous senders naming one of our domains in any spelling the MTA
    /// completes or routes are the spoofing case.
    #[test]
    fn anonymous_local_sender_spellings() {
        let p = policy(vec![]);
        let mut l = listener();
        l.reject_anonymous_local_sender = true;
        let anon = Subject::anonymous();
        let sender = |s: &str| match Address::parse(s) {
            Ok(a) => a.map(|a| a.completed(Some("example.com"))),
            Err(_) => Some(Address::from_mta(s)),
        };
        for from in [
            "alice",
            "<alice@>",
            "alice@example.com",
            "Alice@EXAMPLE.com.",
            "alice%example.com@partner.example",
            "example.com!alice",
            "x@partner.example;@example.com",
        ] {
            let d = evaluate_mail(&p, &l, &anon, sender(from).as_ref());
            assert_eq!(d.rule, "anonymous_local_sender", "{from}");
        }
        for from in ["x@partner.example", "<>", "x@sub.example.com"] {
            let d = evaluate_mail(&p, &l, &anon, sender(from).as_ref());
            assert_eq!(d.rule, "mail_accepted", "{from}");
        }
    }

    #[test]
    fn mail_stage_rules_table() {
        let p = policy(vec![]);
        let mut closed = listener();
        closed.allow_anonymous = false;
        closed.submit = groups(&["Senders"], &[]);
        closed.require_sender_match = true;
        let mut open = listener();
        open.reject_anonymous_local_sender = true;
        let alice = authenticated(user("alice", &["alice@example.com"], &["Senders"]));
        let carol = authenticated(user("carol", &["carol@example.com"], &[]));
        let unknown = Subject {
            kind: SubjectKind::Authenticated,
            login: Some("u@example.com".into()),
            user: Ok(None),
        };
        let anon = Subject::anonymous();
        let cases: Vec<(&Listener, &Subject, Option<&str>, &str)> = vec![
            (&closed, &anon, Some("x@partner.example"), "anonymous_access"),
            (&closed, &carol, Some("carol@example.com"), "submit"),
            (&closed, &alice, Some("bob@example.com"), "send_as"),
            (&closed, &alice, Some("Alice@Example.com"), "mail_accepted"),
            (&closed, &alice, Some("alice+news@example.com"), "mail_accepted"),
            (&closed, &alice, Some("alicex+news@example.com"), "send_as"),
            (&closed, &alice, None, "mail_accepted"),
            (&open, &anon, Some("carol@example.com"), "anonymous_local_sender"),
            (&open, &anon, Some("x@partner.example"), "mail_accepted"),
            (&open, &anon, None, "mail_accepted"),
            (&open, &unknown, Some("u@example.com"), "mail_accepted"),
        ];
        for (i, (l, s, from, rule)) in cases.into_iter().enumerate() {
            let from = from.map(addr);
            assert_eq!(evaluate_mail(&p, l, s, from.as_ref()).rule, rule, "case {i}");
        }
        // send_as: the login itself is an address the user may use.
        let mut l = listener();
        l.require_sender_match = true;
        assert_eq!(
            evaluate_mail(&p, &l, &unknown, Some(&addr("u@example.com"))).action,
            Action::Accept
        );
        assert_eq!(
            evaluate_mail(&p, &l, &unknown, Some(&addr("v@example.com"))).action,
            Action::Reject(ReplyKind::SendAsDenied)
        );
    }

    #[test]
    fn restricted_recipient_table() {
        let list = RecipientRule {
            address: addr("list@example.com"),
            require_authenticated: false,
            accept_from: vec![
                SenderRef::Group("Staff".into()),
                SenderRef::User("boss".into()),
                SenderRef::Sender(addr("partner@partner.example")),
                SenderRef::Sender(addr("insider@example.com")),
            ],
            reject_from: vec![
                SenderRef::Group("Banned".into()),
                SenderRef::Sender(addr("spam@bad.example")),
            ],
            mode: None,
        };
        let p = policy(vec![list]);
        let l = listener();
        let rcpt = addr("LIST@example.com");
        let staff = authenticated(user("s", &["s@example.com"], &["Staff"]));
        let banned_staff = authenticated(user("b", &[], &["Staff", "Banned"]));
        let boss = authenticated(user("boss", &[], &[]));
        let insider = authenticated(user("i", &["insider@example.com"], &[]));
        let anon = Subject::anonymous();
        let trusted_staff = Subject {
            kind: SubjectKind::Trusted,
            login: None,
            user: Ok(Some(user("t", &["t@example.com"], &["Staff"]))),
        };
        let cases: Vec<(&Subject, &str, Action, &str)> = vec![
            (&staff, "s@example.com", Action::Accept, "recipient_accept_from"),
            (
                &banned_staff,
                "b@example.com",
                Action::Reject(ReplyKind::RecipientNotAuthorized),
                "recipient_reject_from",
            ),
            (&boss, "boss@example.com", Action::Accept, "recipient_accept_from"),
            (
                &insider,
                "other@example.com",
                Action::Accept,
                "recipient_accept_from",
            ),
            (
                &trusted_staff,
                "t@example.com",
                Action::Accept,
                "recipient_accept_from",
            ),
            // An anonymous claim of an external contact counts; of one of ours, never.
            (
                &anon,
                "partner@partner.example",
                Action::Accept,
                "recipient_accept_from",
            ),
            (
                &anon,
                "insider@example.com",
                Action::Reject(ReplyKind::RecipientNotAuthorized),
                "recipient_accept_from",
            ),
            // A claim is enough to be refused.
            (
                &anon,
                "spam@bad.example",
                Action::Reject(ReplyKind::RecipientNotAuthorized),
                "recipient_reject_from",
            ),
            (
                &staff,
                "spam@bad.example",
                Action::Reject(ReplyKind::RecipientNotAuthorized),
                "recipient_reject_from",
            ),
            (
                &anon,
                "",
                Action::Reject(ReplyKind::RecipientNotAuthorized),
                "recipient_accept_from",
            ),
        ];
        for (i, (s, from, action, rule)) in cases.into_iter().enumerate() {
            let from = Address::parse(from).unwrap();
            let d = evaluate_rcpt(&p, &l, s, from.as_ref(), &rcpt);
            assert_eq!((d.action, d.rule), (action, rule), "case {i}");
        }
        // postmaster is exempt; a non-restricted local recipient is open.
        assert_eq!(
            evaluate_rcpt(&p, &l, &anon, None, &addr("postmaster@example.com")).rule,
            "postmaster"
        );
        assert_eq!(
            evaluate_rcpt(&p, &l, &anon, None, &addr("other@example.com")).rule,
            "local_recipient"
        );
    }

    #[test]
    fn require_authenticated_comes_first_and_trusted_counts() {
        let list = RecipientRule {
            address: addr("all@example.com"),
            require_authenticated: true,
            accept_from: vec![SenderRef::Sender(addr("partner@partner.example"))],
            reject_from: vec![],
            mode: None,
        };
        let p = policy(vec![list]);
        let l = listener();
        let rcpt = addr("all@example.com");
        let from = addr("partner@partner.example");
        let d = evaluate_rcpt(&p, &l, &Subject::anonymous(), Some(&from), &rcpt);
        assert_eq!(d.action, Action::Reject(ReplyKind::RecipientRequiresAuth));
        let trusted = Subject {
            kind: SubjectKind::Trusted,
            login: None,
            user: Ok(None),
        };
        assert_eq!(
            evaluate_rcpt(&p, &l, &trusted, Some(&from), &rcpt).action,
            Action::Accept
        );
    }

    /// all@example.com, writable by group Staff only.
    fn staff_only_list() -> RecipientRule {
        RecipientRule {
            address: addr("all@example.com"),
            require_authenticated: false,
            accept_from: vec![SenderRef::Group("Staff".into())],
            reject_from: vec![],
            mode: None,
        }
    }

    /// The MTA's own names deliver by local part: all@mx.example.com is
    /// the list when mx.example.com is a local-delivery domain, and only
    /// then (another subdomain may have its own all@).
    #[test]
    fn local_delivery_domains_reach_the_default_domains_lists() {
        let mut p = policy(vec![staff_only_list()]);
        p.local_domains
            .push(DomainPattern::parse(".example.com").unwrap());
        let restricted = |p: &Policy, r: &str| !p.configured_restrictions(&addr(r)).is_empty();
        assert!(!restricted(&p, "all@mx.example.com"));
        p.addresses.local_delivery_domains = vec![DomainPattern::parse("mx.example.com").unwrap()];
        for r in ["all@mx.example.com", "ALL+tag@MX.example.com.", "all@example.com"] {
            assert!(restricted(&p, r), "{r}");
        }
        for r in ["all@lists.example.com", "other@mx.example.com"] {
            assert!(!restricted(&p, r), "{r}");
        }
        let anonymous = Subject::anonymous();
        let d = evaluate_rcpt(&p, &listener(), &anonymous, None, &addr("all@mx.example.com"));
        assert_ne!(d.action, Action::Accept);
    }

    /// An unusable directory answer (two entries for one login, a refused
    /// search) is a tempfail whatever on_directory_error says.
    #[test]
    fn permanent_directory_faults_never_accept() {
        let list = staff_only_list();
        let broken = Subject {
            kind: SubjectKind::Authenticated,
            login: Some("x".into()),
            user: Err(DirectoryUnavailable::permanent("2 entries match")),
        };
        let mut l = listener();
        l.relay = groups(&["Relayers"], &[]);
        l.submit = groups(&["Senders"], &[]);
        let tempfail = Action::Tempfail(ReplyKind::DirectoryUnavailable);
        for action in [
            DirectoryErrorAction::Tempfail,
            DirectoryErrorAction::Accept,
            DirectoryErrorAction::Reject,
        ] {
            let mut p = policy(vec![list.clone()]);
            p.on_directory_error = action;
            assert_eq!(
                evaluate_mail(&p, &l, &broken, None).action,
                tempfail,
                "{action:?}"
            );
            let open = listener();
            let d = evaluate_rcpt(&p, &open, &broken, None, &addr("all@example.com"));
            assert_eq!(d.action, tempfail, "{action:?}");
            let d = evaluate_rcpt_with(
                &p,
                &open,
                &Subject::anonymous(),
                None,
                &addr("bob@example.com"),
                StoredRule::Unavailable(Fault::Permanent),
            );
            assert_eq!(d.action, tempfail, "{action:?}");
        }
    }

    #[test]
    fn directory_errors_follow_on_directory_error() {
        let list = staff_only_list();
        let rcpt = addr("all@example.com");
        let down = unavailable(SubjectKind::Authenticated);
        for (action, want) in [
            (
                DirectoryErrorAction::Tempfail,
                Action::Tempfail(ReplyKind::DirectoryUnavailable),
            ),
            (DirectoryErrorAction::Accept, Action::Accept),
            (
                DirectoryErrorAction::Reject,
                Action::Reject(ReplyKind::RecipientNotAuthorized),
            ),
        ] {
            let mut p = policy(vec![list.clone()]);
            p.on_directory_error = action;
            assert_eq!(
                evaluate_rcpt(&p, &listener(), &down, None, &rcpt).action,
                want,
                "{action:?}"
            );
        }
        // A list with only sender: entries needs no directory.
        let senders_only = RecipientRule {
            accept_from: vec![SenderRef::Sender(addr("x@partner.example"))],
            ..list
        };
        let p = policy(vec![senders_only]);
        let d = evaluate_rcpt(&p, &listener(), &down, Some(&addr("x@partner.example")), &rcpt);
        assert_eq!(d.action, Action::Accept);
    }

    #[test]
    fn monitor_mode_precedence() {
        let mut list = RecipientRule {
            address: addr("all@example.com"),
            require_authenticated: true,
            accept_from: vec![],
            reject_from: vec![],
            mode: None,
        };
        let rcpt = addr("all@example.com");
        let anon = Subject::anonymous();
        let mut l = listener();
        // (global, listener, recipient) → monitored?
        for (global, lmode, rmode, monitored) in [
            (Mode::Enforce, None, None, false),
            (Mode::Monitor, None, None, true),
            (Mode::Monitor, Some(Mode::Enforce), None, false),
            (Mode::Enforce, Some(Mode::Monitor), None, true),
            (Mode::Enforce, Some(Mode::Monitor), Some(Mode::Enforce), false),
            (Mode::Enforce, None, Some(Mode::Monitor), true),
        ] {
            list.mode = rmode;
            l.mode = lmode;
            let mut p = policy(vec![list.clone()]);
            p.mode = global;
            let d = evaluate_rcpt(&p, &l, &anon, None, &rcpt);
            assert_eq!(d.action, Action::Reject(ReplyKind::RecipientRequiresAuth));
            assert_eq!(
                (d.monitored, d.lets_through()),
                (monitored, monitored),
                "{global:?} {lmode:?} {rmode:?}"
            );
        }
        // A recipient in monitor mode does not soften the relay rule.
        let mut p = policy(vec![]);
        p.mode = Mode::Enforce;
        let d = evaluate_rcpt(&p, &listener(), &anon, None, &addr("x@elsewhere.example"));
        assert!(!d.monitored);
    }

    #[test]
    fn a_mail_refusal_carries_over_to_every_recipient() {
        let p = policy(vec![]);
        let mut l = listener();
        l.allow_anonymous = false;
        l.mode = Some(Mode::Monitor);
        let d = evaluate_rcpt(&p, &l, &Subject::anonymous(), None, &addr("bob@example.com"));
        assert_eq!((d.rule, d.monitored), ("anonymous_access", true));
    }

    #[test]
    fn stored_restrictions_and_their_precedence() {
        let rcpt = addr("board@example.com");
        let stored = RecipientRule {
            address: rcpt.clone(),
            require_authenticated: false,
            accept_from: vec![SenderRef::Dn("UID=dave,ou=people".into())],
            reject_from: vec![],
            mode: None,
        };
        let dave = authenticated(Arc::new(ResolvedUser {
            entry: UserEntry {
                login: "dave".into(),
                dn: "uid=dave,ou=people".into(),
                addresses: vec![],
                member_of: vec![],
                ..Default::default()
            },
            groups: Memberships::default(),
        }));
        let eve = authenticated(user("eve", &[], &[]));
        let p = policy(vec![]);
        let l = listener();
        let with = |s: &Subject, st: StoredRule<'_>| evaluate_rcpt_with(&p, &l, s, None, &rcpt, st).action;
        assert_eq!(
            with(&dave, StoredRule::Rules(std::slice::from_ref(&stored))),
            Action::Accept,
            "DN, any case"
        );
        assert_eq!(
            with(&eve, StoredRule::Rules(std::slice::from_ref(&stored))),
            Action::Reject(ReplyKind::RecipientNotAuthorized)
        );
        assert_eq!(with(&eve, StoredRule::None), Action::Accept);
        assert_eq!(
            with(&eve, StoredRule::Unavailable(Fault::Outage)),
            Action::Tempfail(ReplyKind::DirectoryUnavailable)
        );
        // A [[recipient]] of the configuration wins over what is stored.
        let configured = RecipientRule {
            accept_from: vec![],
            ..stored.clone()
        };
        let p = policy(vec![configured]);
        let d = evaluate_rcpt_with(
            &p,
            &l,
            &eve,
            None,
            &rcpt,
            StoredRule::Rules(std::slice::from_ref(&stored)),
        );
        assert_eq!((d.action, d.rule), (Action::Accept, "recipient_open"));
        let d = evaluate_rcpt_with(&p, &l, &eve, None, &rcpt, StoredRule::Unavailable(Fault::Outage));
        assert_eq!(
            d.action,
            Action::Accept,
            "the configuration needs no directory here"
        );
    }
}
