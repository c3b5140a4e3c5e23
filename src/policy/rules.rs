//! Each restriction is one small function with one job, like Postfix's
//! restriction lists; `evaluate_mail` and `evaluate_rcpt` run them in order
//! and stop at the first that does not pass.

use std::sync::Arc;

use super::{
    Action, Address, Decision, DirectoryErrorAction, GroupRule, Listener, Mode, Policy, RecipientRule,
};
use super::{ReplyKind, SenderRef, Subject, SubjectKind};
use crate::directory::ResolvedUser;

/// Outcome of one rule: pass (go on), or a decision.
type RuleResult = Result<(), Decision>;

fn decision(action: Action, rule: &'static str, path: Vec<String>) -> Decision {
    Decision {
        action,
        rule,
        monitored: false,
        path,
    }
}

fn reject(kind: ReplyKind, rule: &'static str) -> Decision {
    decision(Action::Reject(kind), rule, Vec::new())
}

/// The directory could not answer for a rule that needs it.
fn directory_error(policy: &Policy, kind: ReplyKind, rule: &'static str) -> RuleResult {
    match policy.on_directory_error {
        DirectoryErrorAction::Tempfail => Err(decision(
            Action::Tempfail(ReplyKind::DirectoryUnavailable),
            rule,
            Vec::new(),
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
        submit_permission(policy, listener, subject)?;
        send_as(policy, listener, subject, sender)?;
        anonymous_local_sender(policy, listener, subject, sender)?;
        Ok(())
    };
    match checks() {
        Ok(()) => decision(Action::Accept, "mail_accepted", Vec::new()),
        Err(d) => with_mode(d, mode),
    }
}

/// Decide one RCPT TO.
pub fn evaluate_rcpt(
    policy: &Policy,
    listener: &Listener,
    subject: &Subject,
    sender: Option<&Address>,
    rcpt: &Address,
) -> Decision {
    let listener_mode = listener.mode.unwrap_or(policy.mode);
    // The MAIL-stage rules hold for every recipient too: a session refused at
    // MAIL in monitor mode must not look clean at RCPT.
    let mail = evaluate_mail(policy, listener, subject, sender);
    if mail.action != Action::Accept {
        return mail;
    }
    if let Err(d) = relay(policy, listener, subject, rcpt) {
        return with_mode(d, listener_mode);
    }
    if policy.is_local(rcpt) && rcpt.is_postmaster() {
        return decision(Action::Accept, "postmaster", Vec::new());
    }
    let Some(restriction) = policy.recipients.get(&rcpt.to_string()) else {
        let rule = if policy.is_local(rcpt) {
            "local_recipient"
        } else {
            "relay_allowed"
        };
        return decision(Action::Accept, rule, Vec::new());
    };
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
    let wanted = sender.to_string();
    if subject
        .login
        .as_deref()
        .is_some_and(|l| l.eq_ignore_ascii_case(&wanted))
    {
        return Ok(());
    }
    match &subject.user {
        Err(_) => directory_error(policy, ReplyKind::SendAsDenied, "send_as"),
        Ok(Some(user)) if user.entry.addresses.contains(&wanted) => Ok(()),
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
        && sender.is_some_and(|s| !s.domain.is_empty() && policy.is_local(s))
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
        Err(_) => return directory_error(policy, kind, name),
        Ok(u) => u.as_ref(),
    };
    let member_path = |group: &String| user.and_then(|u| u.groups.path_to(group)).map(|p| p.to_vec());
    if let Some(path) = rule.deny_groups.iter().find_map(member_path) {
        return Err(decision(Action::Reject(kind), name, path));
    }
    if rule.allow_groups.is_empty() || rule.allow_groups.iter().any(|g| member_path(g).is_some()) {
        return Ok(());
    }
    Err(reject(kind, name))
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
        Err(_) => {
            let needs_directory = r
                .accept_from
                .iter()
                .chain(&r.reject_from)
                .any(|s| !matches!(s, SenderRef::Sender(_)));
            if needs_directory {
                return directory_error(policy, ReplyKind::RecipientNotAuthorized, "recipient_restriction")
                    .map(|()| decision(Action::Accept, "recipient_restriction", Vec::new()));
            }
            None
        }
    };
    for s in &r.reject_from {
        if let Some(path) = matches_sender(policy, s, subject, user, sender, Claim::Honoured) {
            return Err(decision(
                Action::Reject(ReplyKind::RecipientNotAuthorized),
                "recipient_reject_from",
                path,
            ));
        }
    }
    if r.accept_from.is_empty() {
        return Ok(decision(Action::Accept, "recipient_open", Vec::new()));
    }
    for s in &r.accept_from {
        if let Some(path) = matches_sender(policy, s, subject, user, sender, Claim::ExternalOnly) {
            return Ok(decision(Action::Accept, "recipient_accept_from", path));
        }
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
) -> Option<Vec<String>> {
    // Anonymous sessions are never resolved: group and user entries can't match.
    let verified = if subject.kind == SubjectKind::Anonymous {
        None
    } else {
        user
    };
    match s {
        SenderRef::Group(g) => verified.and_then(|u| u.groups.path_to(g)).map(|p| p.to_vec()),
        SenderRef::User(login) => {
            let by_entry = verified.is_some_and(|u| u.entry.login.eq_ignore_ascii_case(login));
            let by_login = subject.kind == SubjectKind::Authenticated
                && subject
                    .login
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(login));
            (by_entry || by_login).then(|| vec![login.clone()])
        }
        SenderRef::Sender(addr) => {
            let wanted = addr.to_string();
            if verified.is_some_and(|u| u.entry.addresses.contains(&wanted)) {
                return Some(vec![wanted]);
            }
            let claimed = sender.is_some_and(|snd| snd == addr);
            let claim_counts = match claim {
                Claim::Honoured => true,
                Claim::ExternalOnly => !policy.is_local(addr),
            };
            (claimed && claim_counts).then(|| vec![wanted])
        }
    }
}
