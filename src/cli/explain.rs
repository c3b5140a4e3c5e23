//! `gatehouse explain`: the decision for each recipient of an envelope, and
//! the rule behind it, without an MTA.

use std::net::IpAddr;
use std::process::ExitCode;

use crate::config::Config;
use crate::enforcer::{self, Envelope, Snapshot};
use crate::policy::{Action, Address, Decision, ListenerId, SubjectKind};

/// The envelope to judge, as a client would send it.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Listener whose rules apply, by name (`[[listener]] name`, or "default").
    #[arg(long)]
    pub listener: String,
    /// SASL login; omit for an anonymous session.
    #[arg(long)]
    pub login: Option<String>,
    /// Client IP address (matters for trusted networks and client ranges).
    #[arg(long)]
    pub client: Option<IpAddr>,
    /// Envelope sender as typed at MAIL FROM; '<>' is the null sender.
    #[arg(long)]
    pub from: String,
    /// Recipients as typed at RCPT TO (one or more).
    #[arg(long, num_args = 1.., required = true)]
    pub rcpt: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn explain(config: &Config, args: &ExplainArgs) -> ExitCode {
    let directory = match super::directory(config) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let snap = Snapshot {
        policy: config.policy.clone(),
        directory,
    };
    let policy = &*snap.policy;
    let ids = (0..policy.listeners.len())
        .map(ListenerId::Index)
        .chain(policy.default_listener.iter().map(|_| ListenerId::Default));
    let Some(id) = ids.clone().find(|id| {
        policy
            .listener_by_id(*id)
            .name
            .eq_ignore_ascii_case(&args.listener)
    }) else {
        let names: Vec<String> = ids
            .map(|id| format!("{:?}", policy.listener_by_id(id).name))
            .collect();
        eprintln!(
            "gatehouse: no listener named {:?} in {}; the listeners are {}",
            args.listener,
            config.path.display(),
            names.join(", ")
        );
        return ExitCode::FAILURE;
    };
    let sender = enforcer::sender_address(policy, &args.from);
    let env = Envelope {
        listener: &args.listener,
        client: args.client,
        login: args.login.as_deref(),
        sender: sender.as_ref(),
    };
    let x = super::block_on(enforcer::explain(&snap, id, &env, &args.rcpt));
    // What the MTA would be told: "continue", the reply, or for a monitored
    // refusal the reply it would have had.
    let render = |d: &Decision, rcpt: Option<&Address>| -> (&'static str, String) {
        let r = policy.render(d, rcpt);
        let reply = match (r.reply, r.sent) {
            (Some(reply), true) => reply,
            (Some(reply), false) => format!("(not sent, monitor mode) {reply}"),
            (None, _) => "continue".into(),
        };
        (r.action, reply)
    };
    let kind = match x.subject.kind {
        SubjectKind::Anonymous => "anonymous",
        SubjectKind::Authenticated => "authenticated",
        SubjectKind::Trusted => "trusted",
    };
    let user = x.subject.user.as_ref().ok().and_then(|u| u.as_ref());
    // A login the directory does not know is still authenticated (the MTA
    // vouched for it) but is in no group: say so, it explains refusals.
    let unknown_login = x.subject.kind == SubjectKind::Authenticated && matches!(x.subject.user, Ok(None));
    if args.json {
        let decision_json = |d: &Decision, rcpt: Option<&Address>| {
            let (action, reply) = render(d, rcpt);
            serde_json::json!({"action": action, "reply": reply, "rule": d.rule, "monitored": d.monitored, "path": d.path()})
        };
        let recipients: Vec<_> = x
            .rcpts
            .iter()
            .map(|j| {
                let mut v = decision_json(&j.decision, Some(&j.shown));
                v["address"] = serde_json::Value::String(j.shown.to_string());
                v
            })
            .collect();
        let out = serde_json::json!({
            "listener": policy.listener_by_id(id).name,
            "config_version": policy.version,
            "identity": {
                "kind": kind,
                "login": x.subject.login,
                "client": args.client.map(|c| c.to_string()),
                "sender": sender.as_ref().map(|s| s.to_string()).unwrap_or_else(|| "<>".into()),
                "user": user.map(|u| u.entry.dn.clone()),
                "in_directory": x.subject.login.as_ref().map(|_| !unknown_login),
                "directory_error": x.subject.user.as_ref().err().map(|e| e.to_string()),
            },
            "mail": decision_json(&x.mail, None),
            "recipients": recipients,
        });
        println!("{out}");
        return ExitCode::SUCCESS;
    }
    println!("listener: {}", policy.listener_by_id(id).name);
    let about_user = match (&x.subject.user, user) {
        (Err(e), _) => format!(" (directory: {e})"),
        (_, Some(u)) => format!(" ({})", u.entry.dn),
        _ if unknown_login => " (not in the directory: member of no group)".into(),
        _ => String::new(),
    };
    println!(
        "identity: {kind}{}{about_user}",
        x.subject
            .login
            .as_deref()
            .map(|l| format!(" as {l}"))
            .unwrap_or_default(),
    );
    let (action, reply) = render(&x.mail, None);
    println!(
        "MAIL FROM:<{}>  {action}  rule={}  reply: {reply}",
        sender.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        x.mail.rule
    );
    if x.mail.action != Action::Accept && !x.mail.monitored {
        println!("  (no recipient is judged after a refused MAIL)");
    }
    for j in &x.rcpts {
        let (a, d) = (&j.shown, &j.decision);
        let (action, reply) = render(d, Some(a));
        println!("RCPT TO:<{a}>  {action}  rule={}  reply: {reply}", d.rule);
        if !d.path().is_empty() {
            println!("  path: {}", d.path().join(" > "));
        }
    }
    ExitCode::SUCCESS
}
