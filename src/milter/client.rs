//! The MTA side of the protocol, for tests and the load generator.
//!
//! It behaves like Postfix: a `D` packet before each event, commands the milter
//! switched off are not sent, no reply is read for no-reply stages, and after
//! ACCEPT at DATA no content is sent.

use std::time::Duration;

use bytes::Bytes;

use super::codec::{Command, ConnectAddress, OptNeg, Reply};
use super::connection::{Connection, ConnectionError};
use super::endpoint::{Endpoint, MilterStream};
use super::negotiate::Negotiated;
use super::protocol::{cmd, proto};

/// What Postfix 3.x offers with `milter_protocol = 6`.
pub const POSTFIX_V6_OFFER: OptNeg = OptNeg {
    version: 6,
    actions: 0x1FF,
    protocol: 0x1F_FFFF,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("milter closed the connection")]
    Closed,
    #[error("unexpected reply {0:?}")]
    Unexpected(Reply),
}

/// A message for [`MilterClient::transaction`].
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// MAIL-stage macros, e.g. `{auth_authen}`.
    pub mail_macros: Vec<(String, String)>,
    pub sender: String,
    pub recipients: Vec<String>,
}

/// Replies of one transaction: MAIL, each RCPT (None = not sent), DATA/EOM.
#[derive(Debug, Clone)]
pub struct TransactionReplies {
    pub mail: Option<Reply>,
    pub rcpts: Vec<Option<Reply>>,
    pub end: Option<Reply>,
}

pub struct MilterClient<S = MilterStream> {
    conn: Connection<S>,
    /// The milter's answer to OPTNEG.
    pub negotiated: Option<OptNeg>,
    pub macro_lists: Vec<(u32, Bytes)>,
}

impl MilterClient<MilterStream> {
    pub async fn connect(endpoint: &Endpoint) -> std::io::Result<Self> {
        Ok(MilterClient::new(endpoint.connect().await?))
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + super::connection::WaitReadable + Unpin>
    MilterClient<S>
{
    pub fn new(stream: S) -> Self {
        MilterClient {
            conn: Connection::new(stream, 1 << 24, Some(Duration::from_secs(30))),
            negotiated: None,
            macro_lists: Vec::new(),
        }
    }

    pub fn connection(&mut self) -> &mut Connection<S> {
        &mut self.conn
    }

    pub async fn negotiate(&mut self, offer: OptNeg) -> Result<OptNeg, ClientError> {
        self.conn.queue_command(&Command::OptNeg(offer));
        match self.read().await? {
            Reply::OptNeg { negotiated, macros } => {
                self.negotiated = Some(negotiated);
                self.macro_lists = macros;
                Ok(negotiated)
            }
            other => Err(ClientError::Unexpected(other)),
        }
    }

    async fn read(&mut self) -> Result<Reply, ClientError> {
        loop {
            match self.conn.read_reply().await? {
                None => return Err(ClientError::Closed),
                Some(Reply::Progress) => continue,
                Some(r) => return Ok(r),
            }
        }
    }

    fn protocol(&self) -> u32 {
        self.negotiated.map(|n| n.protocol).unwrap_or(0)
    }

    fn version(&self) -> u32 {
        self.negotiated.map(|n| n.version).unwrap_or(2)
    }

    /// Whether the milter asked not to receive `letter` at all.
    pub fn skips(&self, letter: u8) -> bool {
        let bit = match letter {
            cmd::CONNECT => proto::NOCONNECT,
            cmd::HELO => proto::NOHELO,
            cmd::MAIL => proto::NOMAIL,
            cmd::RCPT => proto::NORCPT,
            cmd::BODY => proto::NOBODY,
            cmd::HEADER => proto::NOHDRS,
            cmd::EOH => proto::NOEOH,
            cmd::UNKNOWN => proto::NOUNKNOWN,
            cmd::DATA => {
                if self.version() < 4 {
                    return true;
                }
                proto::NODATA
            }
            _ => return false,
        };
        self.protocol() & bit != 0
    }

    /// Whether the milter will answer `letter`: the same rule the server side
    /// applies ([`Negotiated::expects_reply`]).
    fn wants_reply(&self, letter: u8) -> bool {
        let offer = self.negotiated.unwrap_or(OptNeg {
            version: 2,
            actions: 0,
            protocol: 0,
        });
        Negotiated {
            version: offer.version,
            actions: offer.actions,
            protocol: offer.protocol,
        }
        .expects_reply(letter)
    }

    /// Queue a macro packet for the stage of `letter` (sent with the next command).
    pub fn macros(&mut self, letter: u8, macros: &[(&str, &str)]) {
        self.conn.queue_command(&Command::Macro {
            stage: letter,
            macros: macros
                .iter()
                .map(|(n, v)| {
                    (
                        Bytes::copy_from_slice(n.as_bytes()),
                        Bytes::copy_from_slice(v.as_bytes()),
                    )
                })
                .collect(),
        });
    }

    /// Send a command as an MTA would under the negotiated options; returns the
    /// reply, or `None` if the command was not sent or gets no reply.
    pub async fn send(&mut self, command: Command) -> Result<Option<Reply>, ClientError> {
        let letter = command.letter();
        if self.skips(letter) {
            return Ok(None);
        }
        self.conn.queue_command(&command);
        if !self.wants_reply(letter) {
            if matches!(letter, cmd::ABORT | cmd::QUIT | cmd::QUIT_NC | cmd::MACRO) {
                self.conn.flush().await.map_err(ConnectionError::from)?;
            }
            return Ok(None);
        }
        if letter == cmd::BODYEOB {
            // Modifications may precede the final decision.
            loop {
                let r = self.read().await?;
                if r.is_decision() {
                    return Ok(Some(r));
                }
            }
        }
        Ok(Some(self.read().await?))
    }

    pub async fn connect_event(
        &mut self,
        hostname: &str,
        client: std::net::IpAddr,
        port: u16,
        macros: &[(&str, &str)],
    ) -> Result<Option<Reply>, ClientError> {
        self.macros(cmd::CONNECT, macros);
        let address = Bytes::from(client.to_string());
        let address = if client.is_ipv4() {
            ConnectAddress::Inet { port, address }
        } else {
            ConnectAddress::Inet6 { port, address }
        };
        self.send(Command::Connect {
            hostname: Bytes::copy_from_slice(hostname.as_bytes()),
            address,
        })
        .await
    }

    pub async fn helo(&mut self, name: &str) -> Result<Option<Reply>, ClientError> {
        self.macros(cmd::HELO, &[]);
        self.send(Command::Helo(Bytes::copy_from_slice(name.as_bytes())))
            .await
    }

    /// One whole transaction the way Postfix runs it, ending with ABORT.
    /// Stops after a rejected MAIL; skips content when DATA is answered ACCEPT.
    pub async fn transaction(&mut self, env: &Envelope) -> Result<TransactionReplies, ClientError> {
        let mail_macros: Vec<(&str, &str)> = env
            .mail_macros
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.macros(cmd::MAIL, &mail_macros);
        let mail = self
            .send(Command::Mail(vec![Bytes::from(format!("<{}>", env.sender))]))
            .await?;
        let mut out = TransactionReplies {
            mail: mail.clone(),
            rcpts: Vec::new(),
            end: None,
        };
        if !matches!(mail, None | Some(Reply::Continue)) {
            self.send(Command::Abort).await?;
            return Ok(out);
        }
        let mut accepted = 0;
        for rcpt in &env.recipients {
            let rcpt_macro = format!("<{rcpt}>");
            self.macros(cmd::RCPT, &[("{rcpt_addr}", rcpt.as_str())]);
            let r = self.send(Command::Rcpt(vec![Bytes::from(rcpt_macro)])).await?;
            if matches!(r, None | Some(Reply::Continue)) {
                accepted += 1;
            }
            out.rcpts.push(r);
        }
        if accepted > 0 {
            self.macros(cmd::DATA, &[]);
            let data = self.send(Command::Data).await?;
            out.end = data.clone();
            if !matches!(
                data,
                Some(Reply::Accept) | Some(Reply::Reject) | Some(Reply::Tempfail) | Some(Reply::ReplyCode(_))
            ) {
                out.end = self.send_content().await?;
            }
        }
        self.send(Command::Abort).await?;
        Ok(out)
    }

    async fn send_content(&mut self) -> Result<Option<Reply>, ClientError> {
        for (name, value) in [("From", "<sender@example.net>"), ("Subject", "load test")] {
            let r = self
                .send(Command::Header {
                    name: Bytes::from_static(name.as_bytes()),
                    value: Bytes::from_static(value.as_bytes()),
                })
                .await?;
            if matches!(r, Some(Reply::Accept)) {
                return Ok(r);
            }
        }
        let r = self.send(Command::EndOfHeaders).await?;
        if matches!(r, Some(Reply::Accept)) {
            return Ok(r);
        }
        let r = self
            .send(Command::Body(Bytes::from_static(
                b"Hello.\r\nThis is a test message.\r\n",
            )))
            .await?;
        if matches!(r, Some(Reply::Accept)) {
            return Ok(r);
        }
        self.macros(cmd::BODYEOB, &[]);
        self.send(Command::EndOfMessage(Bytes::new())).await
    }

    /// Write whatever is queued (no-reply commands are otherwise sent with the next one).
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.conn.flush().await.map_err(ConnectionError::from)?;
        Ok(())
    }

    pub async fn quit(&mut self) -> Result<(), ClientError> {
        self.send(Command::Quit).await?;
        Ok(())
    }
}
