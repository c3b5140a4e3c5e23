//! One milter connection's state machine: negotiation, connect info, macros,
//! and any number of transactions. It knows nothing of policy or LDAP: at
//! MAIL and RCPT it hands a [`Handler`] an immutable view of the facts and
//! turns the [`Verdict`] into the reply the negotiated options call for.
//!
//! Order is handled as leniently as libmilter: commands the MTA was asked not
//! to send are answered `continue` (if it waits for a reply) and otherwise
//! ignored. Only what would make a decision unsafe is refused: a command
//! before OPTNEG or a second OPTNEG ends the session; RCPT or DATA outside a
//! transaction is answered tempfail.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::codec::{Command, ConnectAddress, Reply};
use super::macros::MacroStore;
use super::negotiate::{negotiate, MacroRequest, Negotiated};
use super::protocol::cmd;

/// The SMTP client as the MTA described it in CONNECT.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub hostname: String,
    /// Parsed client address; `None` for unknown family or unparsable text.
    pub address: Option<IpAddr>,
    pub port: u16,
}

impl ClientInfo {
    fn from_connect(hostname: &Bytes, address: &ConnectAddress) -> ClientInfo {
        let (port, text) = match address {
            ConnectAddress::Unknown => (0, None),
            ConnectAddress::Unix { port, path } => (*port, Some(path)),
            ConnectAddress::Inet { port, address } => (*port, Some(address)),
            ConnectAddress::Inet6 { port, address } => (*port, Some(address)),
        };
        ClientInfo {
            hostname: String::from_utf8_lossy(hostname).into_owned(),
            address: text.and_then(|t| parse_client_address(t)),
            port,
        }
    }
}

/// Parse a client address as either MTA writes it: Sendmail prefixes IPv6
/// with `IPv6:` (any case) and may write it uncompressed; Postfix may put it in
/// brackets.
pub fn parse_client_address(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let text = match text.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ipv6:") => &text[5..],
        _ => text,
    };
    text.parse().ok()
}

/// What the policy decided for one MAIL or RCPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// 4xx with the MTA's default text.
    Tempfail,
    /// A complete, validated SMTP reply (`550 5.7.1 text`), without NUL or CRLF at the end.
    Reply(Bytes),
}

impl Verdict {
    fn into_reply(self) -> Reply {
        match self {
            Verdict::Continue => Reply::Continue,
            Verdict::Tempfail => Reply::Tempfail,
            Verdict::Reply(text) => Reply::ReplyCode(text),
        }
    }
}

/// Immutable view of everything known when a decision is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The gatehouse endpoint the MTA connected to (as written in the config).
    pub socket: &'a str,
    /// Peer of the milter connection (the MTA), for log lines.
    pub peer: &'a str,
    /// `None` when the MTA sent MAIL without CONNECT.
    pub client: Option<&'a ClientInfo>,
    pub macros: &'a MacroStore,
    /// MAIL argv: sender as sent (normally in angle brackets), then ESMTP parameters.
    pub mail: &'a [Bytes],
}

/// The decision maker behind a session. `Transaction` is whatever it wants to
/// keep from MAIL for the RCPTs of the same transaction (e.g. the resolved
/// identity), so RCPT never repeats MAIL's work.
pub trait Handler: Send + Sync + 'static {
    type Transaction: Send;

    /// Macro lists to request in negotiation (v6).
    fn macro_request(&self) -> MacroRequest;

    fn mail(&self, facts: &Facts<'_>) -> impl Future<Output = (Verdict, Self::Transaction)> + Send;

    fn rcpt(
        &self,
        tx: &mut Self::Transaction,
        facts: &Facts<'_>,
        rcpt: &[Bytes],
    ) -> impl Future<Output = Verdict> + Send;
}

/// What the connection should do after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reply(Reply),
    /// The MTA expects no reply.
    Silent,
    /// QUIT: close the connection.
    Close,
}

/// A protocol violation that ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("first command must be OPTNEG, got '{}'", char::from(*.0))]
    NotNegotiated(u8),
    #[error("second OPTNEG on one connection")]
    SecondNegotiation,
    #[error(transparent)]
    Negotiation(#[from] super::negotiate::NegotiationError),
    #[error("the MTA's macros and sender on this connection exceed {0} bytes")]
    MacroBudget(usize),
}

/// Default for the bytes of macros (and the MAIL sender) one connection may
/// keep: real MTAs send a few hundred.
pub const DEFAULT_MACRO_BUDGET: usize = 64 * 1024;

struct Transaction<T> {
    mail: Vec<Bytes>,
    state: T,
}

pub struct Session<H: Handler> {
    handler: Arc<H>,
    socket: Arc<str>,
    peer: String,
    negotiated: Option<Negotiated>,
    macros: MacroStore,
    /// Names of the macros the handler reads (bare, without braces): the
    /// only ones kept, so memory and lookup cost do not grow with what the
    /// MTA sends.
    wanted: Arc<[Bytes]>,
    macro_budget: usize,
    client: Option<ClientInfo>,
    transaction: Option<Transaction<H::Transaction>>,
}

/// The bare macro names of a request (`{auth_authen}` → `auth_authen`).
/// Computed once per listener and shared by its sessions.
pub fn wanted_names(request: &MacroRequest) -> Arc<[Bytes]> {
    let mut names: Vec<Bytes> = request
        .lists
        .iter()
        .flat_map(|(_, list)| list.split([' ', ',']))
        .filter(|n| !n.is_empty())
        .map(|n| Bytes::copy_from_slice(super::macros::bare(n.as_bytes())))
        .collect();
    names.sort();
    names.dedup();
    names.into()
}

impl<H: Handler> Session<H> {
    pub fn new(handler: Arc<H>, socket: Arc<str>, peer: String) -> Self {
        let wanted = wanted_names(&handler.macro_request());
        Self::with_wanted(handler, socket, peer, wanted)
    }

    /// As [`Session::new`], with the handler's [`wanted_names`] computed by the caller.
    pub fn with_wanted(handler: Arc<H>, socket: Arc<str>, peer: String, wanted: Arc<[Bytes]>) -> Self {
        Session {
            handler,
            socket,
            peer,
            negotiated: None,
            macros: MacroStore::default(),
            wanted,
            macro_budget: DEFAULT_MACRO_BUDGET,
            client: None,
            transaction: None,
        }
    }

    /// Bytes of macros and sender this connection may keep at once.
    pub fn with_macro_budget(mut self, bytes: usize) -> Self {
        self.macro_budget = bytes;
        self
    }

    /// Keep the wanted macros of one `D` packet, each once (the last value
    /// wins), copied into the stage's own buffer so the read buffer is not
    /// pinned.
    fn store_macros(&mut self, stage: u8, macros: Vec<(Bytes, Bytes)>) -> Result<(), SessionError> {
        use super::macros::bare;
        let wanted = &self.wanted;
        let kept = macros.iter().enumerate().filter(|(i, (n, _))| {
            // A name sent twice: the last value wins (lookups take the
            // first). Only wanted names are compared with the rest.
            wanted.iter().any(|w| w[..] == *bare(n))
                && !macros[i + 1..].iter().any(|(m, _)| bare(m) == bare(n))
        });
        self.macros.set(stage, kept.map(|(_, (n, v))| (n, v)));
        self.check_budget()
    }

    fn check_budget(&self) -> Result<(), SessionError> {
        let sender = self
            .transaction
            .as_ref()
            .map_or(0, |t| t.mail.iter().map(|a| a.len()).sum());
        if self.macros.bytes() + sender > self.macro_budget {
            return Err(SessionError::MacroBudget(self.macro_budget));
        }
        Ok(())
    }

    pub fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Handle one command and say what to answer.
    pub async fn handle(&mut self, command: Command) -> Result<Step, SessionError> {
        let letter = command.letter();
        let negotiated = match (self.negotiated, command) {
            (None, Command::OptNeg(offer)) => {
                let (negotiated, reply) = negotiate(offer, &self.handler.macro_request())?;
                self.negotiated = Some(negotiated);
                return Ok(Step::Reply(reply));
            }
            (None, _) => return Err(SessionError::NotNegotiated(letter)),
            (Some(_), Command::OptNeg(_)) => return Err(SessionError::SecondNegotiation),
            (Some(n), command) => (n, command),
        };
        let (negotiated, command) = negotiated;
        let verdict = match command {
            Command::OptNeg(_) => unreachable!("handled above"),
            Command::Macro { stage, macros } => {
                self.store_macros(stage, macros)?;
                return Ok(Step::Silent);
            }
            Command::Connect { hostname, address } => {
                self.macros.clear_after(cmd::CONNECT);
                self.transaction = None;
                self.client = Some(ClientInfo::from_connect(&hostname, &address));
                Verdict::Continue
            }
            Command::Helo(_) => {
                self.macros.clear_after(cmd::HELO);
                self.transaction = None;
                Verdict::Continue
            }
            Command::Mail(argv) => {
                self.macros.clear_after(cmd::MAIL);
                self.transaction = None;
                let (verdict, state) = {
                    let facts = Facts {
                        socket: &self.socket,
                        peer: &self.peer,
                        client: self.client.as_ref(),
                        macros: &self.macros,
                        mail: &argv,
                    };
                    self.handler.mail(&facts).await
                };
                if verdict == Verdict::Continue {
                    // Only the sender is read later: keep it alone, out of the read buffer.
                    let mail = argv
                        .first()
                        .map(|a| Bytes::copy_from_slice(a))
                        .into_iter()
                        .collect();
                    self.transaction = Some(Transaction { mail, state });
                    self.check_budget()?;
                }
                verdict
            }
            Command::Rcpt(argv) => {
                self.macros.clear_after(cmd::RCPT);
                match self.transaction.as_mut() {
                    Some(tx) => {
                        let facts = Facts {
                            socket: &self.socket,
                            peer: &self.peer,
                            client: self.client.as_ref(),
                            macros: &self.macros,
                            mail: &tx.mail,
                        };
                        let verdict = self.handler.rcpt(&mut tx.state, &facts, &argv).await;
                        self.macros.clear_stage(cmd::RCPT);
                        verdict
                    }
                    None => {
                        tracing::warn!(peer = %self.peer, "RCPT outside a transaction: answered tempfail");
                        Verdict::Tempfail
                    }
                }
            }
            Command::Data => {
                self.macros.clear_after(cmd::DATA);
                if self.transaction.take().is_some() {
                    // Every recipient was judged at RCPT: accept the message here
                    // so headers and body never cross the socket.
                    return Ok(self.answer(negotiated, letter, Reply::Accept));
                }
                tracing::warn!(peer = %self.peer, "DATA outside a transaction: answered tempfail");
                Verdict::Tempfail
            }
            Command::EndOfMessage(_) => {
                self.transaction = None;
                Verdict::Continue
            }
            Command::Header { .. } | Command::EndOfHeaders | Command::Body(_) | Command::Unknown(_) => {
                Verdict::Continue
            }
            Command::Abort => {
                self.transaction = None;
                return Ok(Step::Silent);
            }
            Command::Quit => return Ok(Step::Close),
            Command::QuitNewConnection => {
                self.transaction = None;
                self.client = None;
                self.macros.clear();
                return Ok(Step::Silent);
            }
        };
        Ok(self.answer(negotiated, letter, verdict.into_reply()))
    }

    fn answer(&self, negotiated: Negotiated, letter: u8, reply: Reply) -> Step {
        if negotiated.expects_reply(letter) {
            Step::Reply(reply)
        } else {
            Step::Silent
        }
    }
}
