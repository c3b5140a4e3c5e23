//! The enforcer as Postfix's policy delegate: the same listener selection,
//! identity, rules, log line and reply texts as the milter, read from
//! policy-delegation attributes instead of milter macros.
//!
//! Postfix asks per restriction list that names the service: at MAIL
//! (`smtpd_sender_restrictions` with `smtpd_delay_reject = no`) and at
//! each RCPT. One connection carries one transaction at a time, told
//! apart by `instance` (and, defensively, by everything the MAIL decision
//! depends on): it is decided once, on its first request, and the answer
//! of a recipient asked twice (sender and recipient restrictions both name
//! the service, evaluated together at RCPT) is given again, not logged
//! again.

use std::net::IpAddr;

use super::{
    decide_mail, judge_rcpt, resolve_subject, sender_address, Enforcer, KeySource, LogLine, MailStage,
    Transaction,
};
use crate::milter::session::parse_client_address;
use crate::policy::address::requote;
use crate::policy::{Address, Decision, ListenerContext, Policy, ReplyKind, Subject};
use crate::policy_delegation::{Delegate, Request};

/// The answer that lets Postfix go on to its next restriction.
const DUNNO: &str = "DUNNO";
/// The answer to a request that is not an access-policy question: a
/// tempfail, so that a misrouted client never gets a silent pass.
const UNSUPPORTED: &str = "451 4.3.5 Unsupported policy request";
/// What Postfix itself answers when a milter tempfails, for a decision
/// that has no reply text of its own.
const TEMPFAIL: &str = "451 4.7.1 Service unavailable - try again later";

/// The policy-delegation attributes that select a listener.
const POLICY_ATTRIBUTES: [KeySource; 3] = [
    KeySource {
        key: "daemon_name",
        sent_as: "the policy attribute policy_context",
        fix: "-o smtpd_policy_service_policy_context=NAME on the smtpd service in master.cf (Postfix >= 3.1)",
    },
    KeySource {
        key: "daemon_port",
        sent_as: "the policy attribute server_port",
        fix: "Postfix >= 3.2 sends it",
    },
    KeySource {
        key: "daemon_addr",
        sent_as: "the policy attribute server_address",
        fix: "Postfix >= 3.2 sends it",
    },
];

static UNSUPPORTED_SEEN: crate::server::throttle::Throttle = crate::server::throttle::Throttle::new(10);

const NO_CLIENT: &str = "Postfix sent no usable client_address in a policy request";
const CLIENT_FIX: &str = "check that the policy client is Postfix's smtpd";

/// What one policy connection keeps between requests.
#[derive(Default)]
pub struct DelegationState {
    current: Option<Delegated>,
}

/// The transaction a connection is in.
struct Delegated {
    /// Everything that identifies it; a request with another key starts a
    /// new transaction.
    key: String,
    tx: Transaction,
    /// The MAIL decision's answer.
    mail_answer: String,
    /// The last recipient answered, as Postfix sent it, and its answer.
    last_rcpt: Option<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Mail,
    Rcpt,
}

/// The attributes a transaction's decisions depend on, one string.
fn transaction_key(request: &Request) -> String {
    const KEY: [&str; 7] = [
        "instance",
        "sender",
        "sasl_username",
        "client_address",
        "policy_context",
        "server_address",
        "server_port",
    ];
    let mut key = String::new();
    for name in KEY {
        // Length-prefixed: no value can run into the next.
        let value = request.get(name).unwrap_or("");
        key.push_str(&value.len().to_string());
        key.push(':');
        key.push_str(value);
    }
    key
}

/// An address in Postfix's internal form (unquoted: what smtpd passes to a
/// policy server) written as a client would type it, for the same parser
/// and rules as the milter's typed argument. A local part that needs
/// quoting is quoted, except one with an `@`: Postfix gives the quoted
/// `"a@b"@c` and the malformed `a@b@c` the same internal form, and the
/// second is refused as invalid syntax, so both are (fail closed).
pub fn external_form(internal: &str) -> String {
    if internal.is_empty() {
        return "<>".into();
    }
    let (local, domain) = match internal.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (internal, None),
    };
    // Quoted only when it must be; one with an `@` or none at all is left
    // as it is (and refused as invalid).
    let local = if local.contains('@') || local.is_empty() {
        local.to_string()
    } else {
        requote(local)
    };
    match domain {
        Some(d) => format!("<{local}@{d}>"),
        None => format!("<{local}>"),
    }
}

/// A decision as a policy answer.
fn action_for(policy: &Policy, d: &Decision, rcpt: Option<&Address>) -> String {
    if d.lets_through() {
        return DUNNO.into();
    }
    policy.render_action(d, rcpt).unwrap_or_else(|| TEMPFAIL.into())
}

fn ip(request: &Request, name: &str) -> Option<IpAddr> {
    request
        .non_empty(name)
        .and_then(|v| parse_client_address(v.as_bytes()))
}

impl Enforcer {
    /// Start the transaction of `request`: listener, identity, MAIL decision.
    async fn begin(&self, request: &Request, socket: &str, key: String) -> Delegated {
        let snapshot = self.snapshot();
        let policy = &*snapshot.policy;
        let sender = sender_address(policy, &external_form(request.get("sender").unwrap_or("")));
        let ctx = ListenerContext {
            daemon_name: request.non_empty("policy_context"),
            daemon_addr: ip(request, "server_address"),
            daemon_port: request
                .non_empty("server_port")
                .and_then(|p| p.trim().parse().ok()),
            socket,
            client: ip(request, "client_address"),
        };
        let listener = policy.select_listener(&ctx);
        let keys = [
            ("daemon_name", ctx.daemon_name.is_some()),
            ("daemon_port", ctx.daemon_port.is_some()),
            ("daemon_addr", ctx.daemon_addr.is_some()),
        ];
        self.check_listener_keys(
            policy,
            |key| keys.iter().any(|(k, sent)| *k == key && *sent),
            &POLICY_ATTRIBUTES,
            ctx.client,
            (NO_CLIENT, CLIENT_FIX),
        );
        let login = request.non_empty("sasl_username");
        let subject = match listener {
            Some(_) => {
                resolve_subject(
                    &snapshot.directory,
                    policy,
                    listener,
                    login,
                    ctx.client,
                    sender.as_ref(),
                )
                .await
            }
            None => Subject::anonymous(),
        };
        let (mail, mail_answer) = match listener {
            None => {
                tracing::warn!(
                    socket = socket,
                    policy_context = request.get("policy_context").unwrap_or(""),
                    server_address = request.get("server_address").unwrap_or(""),
                    server_port = request.get("server_port").unwrap_or(""),
                    config_version = policy.version,
                    "no listener matches this policy request and there is no \"default\" listener: answered 4xx"
                );
                (None, policy.replies.get(ReplyKind::NoListener).action(None))
            }
            Some(id) => {
                let logged = (request.get("queue_id").unwrap_or(""), ctx.client);
                let d = decide_mail(policy, id, &subject, sender.as_ref(), logged);
                let answer = action_for(policy, &d, None);
                (Some(d), answer)
            }
        };
        Delegated {
            key,
            tx: Transaction {
                snapshot: snapshot.clone(),
                listener,
                subject,
                sender,
                mail,
            },
            mail_answer,
            last_rcpt: None,
        }
    }
}

/// One recipient of the current transaction.
async fn recipient(delegated: &mut Delegated, request: &Request) -> String {
    let typed = request.get("recipient").unwrap_or("");
    if let Some((last, answer)) = &delegated.last_rcpt {
        if last == typed {
            return answer.clone();
        }
    }
    let tx = &delegated.tx;
    let policy = &*tx.snapshot.policy;
    let (Some(id), Some(mail)) = (tx.listener, &tx.mail) else {
        return delegated.mail_answer.clone();
    };
    // A refused MAIL holds for every recipient (the milter refuses at MAIL).
    if !mail.lets_through() {
        return delegated.mail_answer.clone();
    }
    let l = policy.listener_by_id(id);
    let stage = MailStage {
        subject: &tx.subject,
        sender: tx.sender.as_ref(),
        decision: mail,
    };
    let j = judge_rcpt(&tx.snapshot, l, &stage, &external_form(typed), None).await;
    LogLine {
        queue_id: request.get("queue_id").unwrap_or(""),
        client: ip(request, "client_address"),
        policy,
        listener: &l.name,
        subject: &tx.subject,
        sender: tx.sender.as_ref(),
        rcpt: Some(&j.shown),
        mta_rcpt: None,
    }
    .emit(&j.decision);
    let answer = action_for(policy, &j.decision, Some(&j.shown));
    delegated.last_rcpt = Some((typed.to_string(), answer.clone()));
    answer
}

impl Delegate for Enforcer {
    type State = DelegationState;

    async fn answer(&self, state: &mut DelegationState, request: &Request, socket: &str) -> String {
        if request.get("request") != Some("smtpd_access_policy") {
            if let Some(left_out) = UNSUPPORTED_SEEN.admit(std::time::Instant::now()) {
                tracing::warn!(
                    socket = socket,
                    request = request.get("request").unwrap_or(""),
                    left_out,
                    "a policy request that is not request=smtpd_access_policy: answered 4xx"
                );
            }
            return UNSUPPORTED.into();
        }
        let stage = match request.get("protocol_state") {
            Some(s) if s.eq_ignore_ascii_case("MAIL") => Stage::Mail,
            Some(s) if s.eq_ignore_ascii_case("RCPT") => Stage::Rcpt,
            // CONNECT, EHLO, DATA, END-OF-MESSAGE, VRFY, ETRN: gatehouse's
            // rules are about senders and recipients.
            _ => return DUNNO.into(),
        };
        let started = std::time::Instant::now();
        let key = transaction_key(request);
        let current = match state.current.take() {
            Some(d) if d.key == key => d,
            _ => self.begin(request, socket, key).await,
        };
        let delegated = state.current.insert(current);
        let answer = match stage {
            Stage::Mail => delegated.mail_answer.clone(),
            Stage::Rcpt => recipient(delegated, request).await,
        };
        crate::metrics::observe_decision("policy", started.elapsed());
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_forms_are_written_as_typed() {
        for (internal, typed) in [
            ("", "<>"),
            ("alice@example.com", "<alice@example.com>"),
            ("all-staff", "<all-staff>"),
            (
                "victim%external.org@example.com",
                "<victim%external.org@example.com>",
            ),
            ("external.org!victim", "<external.org!victim>"),
            ("alice smith@example.com", "<\"alice smith\"@example.com>"),
            ("a\"b@example.com", "<\"a\\\"b\"@example.com>"),
            ("x.@example.com", "<\"x.\"@example.com>"),
            // Quoted or not, Postfix sends these alike: judged as written.
            (
                "victim@external.org@example.com",
                "<victim@external.org@example.com>",
            ),
            (
                "@mx.example.com:victim@external.org",
                "<@mx.example.com:victim@external.org>",
            ),
            ("jörg@example.com", "<jörg@example.com>"),
            ("@example.com", "<@example.com>"),
        ] {
            assert_eq!(external_form(internal), typed, "{internal}");
        }
    }

    #[test]
    fn transactions_are_told_apart() {
        let a = Request::from_pairs([("instance", "1"), ("sender", "a@b")]);
        let b = Request::from_pairs([("instance", "1"), ("sender", "c@b")]);
        let c = Request::from_pairs([("instance", "2"), ("sender", "a@b")]);
        assert_ne!(transaction_key(&a), transaction_key(&b));
        assert_ne!(transaction_key(&a), transaction_key(&c));
        // A value cannot run into the next attribute.
        let d = Request::from_pairs([("instance", "11:a@b"), ("sender", "")]);
        let e = Request::from_pairs([("instance", "1"), ("sender", "a@b")]);
        assert_ne!(transaction_key(&d), transaction_key(&e));
        assert_eq!(transaction_key(&a), transaction_key(&a.clone()));
    }
}
