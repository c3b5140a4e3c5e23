//! `gatehouse replay`: gatehouse's own JSON decision log, decided again
//! with a candidate configuration and the live directory; what would
//! change, before a reload. Exit status: 0 nothing changes, 1 something
//! does, 2 errors (the log unreadable, a listener the candidate lacks).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::config::Config;
use crate::enforcer::{self, Envelope, Snapshot};
use crate::policy::{Address, ListenerId, Policy};

/// The log to replay.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// gatehouse's log with `[log] format = "json"` (and `accepted = true`
    /// for accepted decisions to be replayed too); `-` reads stdin.
    pub log: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One decision as the log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logged {
    listener: String,
    client: Option<String>,
    login: Option<String>,
    sender: String,
    /// `None`: a MAIL-stage decision.
    recipient: Option<String>,
    /// Where the MTA said the recipient goes, when it differs from what
    /// was typed: judged too, as the live session judged it.
    mta_recipient: Option<String>,
    queue_id: String,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    action: String,
    rule: String,
    reply: String,
}

impl Outcome {
    fn to_json(&self) -> Value {
        json!({"action": self.action, "rule": self.rule, "reply": self.reply})
    }
}

impl Logged {
    /// A decision line of the log; `None` for any other line.
    fn parse(line: &str) -> Option<Logged> {
        // journalctl's default output puts "date host gatehouse[pid]: "
        // before the object.
        let v: Value = serde_json::from_str(&line[line.find('{')?..]).ok()?;
        let message = v.get("message")?.as_str()?;
        if !matches!(message, "rejected" | "accepted" | "would reject (monitor mode)") {
            return None;
        }
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        // An "accepted" line at debug level (without `[log] accepted`)
        // lacks the envelope: not replayable.
        let sender = text("sender")?;
        let non_empty = |k: &str| text(k).filter(|s| !s.is_empty());
        Some(Logged {
            listener: text("listener")?,
            client: non_empty("client").filter(|c| c != "unknown"),
            login: non_empty("login"),
            sender,
            recipient: non_empty("recipient"),
            mta_recipient: non_empty("mta_recipient"),
            queue_id: text("queue_id").unwrap_or_default(),
            outcome: Outcome {
                action: text("action")?,
                rule: text("rule")?,
                reply: text("reply").unwrap_or_default(),
            },
        })
    }

    fn envelope_json(&self) -> Value {
        json!({
            "queue_id": self.queue_id,
            "listener": self.listener,
            "client": self.client,
            "login": self.login,
            "sender": self.sender,
            "recipient": self.recipient,
            "mta_recipient": self.mta_recipient,
        })
    }

    fn describe(&self) -> String {
        let mut s = format!("{} listener={}", self.queue_id, self.listener);
        if let Some(l) = &self.login {
            s.push_str(&format!(" login={l}"));
        }
        if let Some(c) = &self.client {
            s.push_str(&format!(" client={c}"));
        }
        s.push_str(&format!(" from={}", self.sender));
        match &self.recipient {
            Some(r) => s.push_str(&format!(" rcpt={r}")),
            None => s.push_str(" (MAIL)"),
        }
        if let Some(m) = &self.mta_recipient {
            s.push_str(&format!(" mta_rcpt={m}"));
        }
        s
    }
}

fn listener_id(policy: &Policy, name: &str) -> Option<ListenerId> {
    (0..policy.listeners.len())
        .map(ListenerId::Index)
        .chain(policy.default_listener.iter().map(|_| ListenerId::Default))
        .find(|id| policy.listener_by_id(*id).name.eq_ignore_ascii_case(name))
}

/// The decision the candidate makes for one logged one.
async fn decide_again(snap: &Snapshot, logged: &Logged) -> Result<Outcome, String> {
    let policy = &*snap.policy;
    let id = listener_id(policy, &logged.listener)
        .ok_or_else(|| format!("the candidate has no listener {:?}", logged.listener))?;
    let client: Option<IpAddr> = logged.client.as_deref().and_then(|c| c.parse().ok());
    let sender = enforcer::sender_address(policy, &logged.sender);
    let env = Envelope {
        listener: &logged.listener,
        client,
        login: logged.login.as_deref(),
        sender: sender.as_ref(),
    };
    // The MTA's view, read back from its display form as the session read
    // the MTA's macro. (A view the session could only keep as written, such
    // as a domain with a trailing dot after a doubled one, may read back
    // tidier than it was judged.)
    let mta = logged.mta_recipient.as_deref().map(Address::from_mta);
    let rcpts = logged.recipient.as_deref().map(|r| (r, mta));
    let x = enforcer::explain_views(snap, id, &env, rcpts).await;
    let (decision, shown) = match x.rcpts.first() {
        Some(j) => (&j.decision, Some(&j.shown)),
        None => (&x.mail, None),
    };
    let rendered = policy.render(decision, shown);
    Ok(Outcome {
        action: rendered.action.to_string(),
        rule: decision.rule.to_string(),
        reply: rendered.reply.unwrap_or_default(),
    })
}

fn open_log(args: &ReplayArgs) -> Result<Box<dyn BufRead>, String> {
    if args.log.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let f = std::fs::File::open(&args.log).map_err(|e| format!("{}: {e}", args.log.display()))?;
    Ok(Box::new(std::io::BufReader::new(f)))
}

/// What the replay found: counts, and only the decisions that change (a
/// log is read line by line, never held whole).
#[derive(Default)]
struct Findings {
    envelopes: usize,
    accepted: usize,
    changed: Vec<(Logged, Outcome)>,
    by_rule: BTreeMap<String, usize>,
    errors: Vec<String>,
}

async fn replay_log(snap: &Snapshot, log: Box<dyn BufRead>, name: &str) -> Result<Findings, String> {
    let mut found = Findings::default();
    for line in log.lines() {
        let line = line.map_err(|e| format!("{name}: {e}"))?;
        let Some(l) = Logged::parse(&line) else { continue };
        found.envelopes += 1;
        if l.outcome.action == "accept" {
            found.accepted += 1;
        }
        match decide_again(snap, &l).await {
            Ok(after) if after != l.outcome => {
                *found
                    .by_rule
                    .entry(format!(
                        "{} {} -> {} {}",
                        l.outcome.action, l.outcome.rule, after.action, after.rule
                    ))
                    .or_default() += 1;
                found.changed.push((l, after));
            }
            Ok(_) => {}
            Err(e) => found.errors.push(format!("{}: {e}", l.describe())),
        }
    }
    Ok(found)
}

pub fn replay(config: &Config, args: &ReplayArgs) -> ExitCode {
    let name = args.log.display().to_string();
    let log = match open_log(args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    let directory = match super::directory(config) {
        Ok(d) => d,
        Err(_) => return ExitCode::from(2),
    };
    let snap = Snapshot {
        policy: config.policy.clone(),
        directory,
    };
    let found = match super::block_on(replay_log(&snap, log, &name)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    // Nothing to replay is not "nothing changes": a text log, or the wrong file.
    if found.envelopes == 0 {
        eprintln!(
            "gatehouse: {name}: no decision lines (gatehouse writes them with [log] format = \"json\")"
        );
        return ExitCode::from(2);
    }
    if found.accepted == 0 {
        eprintln!(
            "gatehouse: warning: {name} has no accepted decisions ([log] accepted = true): a candidate that refuses what was accepted goes unseen"
        );
    }
    let Findings {
        envelopes,
        changed,
        by_rule,
        errors,
        ..
    } = found;
    if args.json {
        let out = json!({
            "envelopes": envelopes,
            "changed": changed.iter().map(|(l, after)| json!({
                "envelope": l.envelope_json(),
                "before": l.outcome.to_json(),
                "after": after.to_json(),
            })).collect::<Vec<_>>(),
            "by_rule": by_rule,
            "errors": errors,
        });
        println!("{out}");
    } else {
        println!(
            "{} decision(s) replayed against {}: {} would change",
            envelopes,
            config.path.display(),
            changed.len()
        );
        for (what, n) in &by_rule {
            println!("  {n:>6}  {what}");
        }
        for (l, after) in &changed {
            println!("{}", l.describe());
            println!(
                "    before: {} {} {}",
                l.outcome.action, l.outcome.rule, l.outcome.reply
            );
            println!("    after:  {} {} {}", after.action, after.rule, after.reply);
        }
        for e in &errors {
            println!("error: {e}");
        }
    }
    if !errors.is_empty() {
        ExitCode::from(2)
    } else if !changed.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
