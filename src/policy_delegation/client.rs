//! The MTA's side of policy delegation, as Postfix's smtpd speaks it: one
//! request, one answer, on a connection kept open. Used by the tests and
//! the load generator.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{Decoder, Limits, Request};
use crate::milter::endpoint::MilterStream;
use crate::milter::Endpoint;

/// Bounds on an answer (one `action=` line).
const ANSWER_LIMITS: Limits = Limits {
    max_request_bytes: 8192,
    max_attributes: 8,
};

pub struct PolicyClient<S = MilterStream> {
    stream: S,
    read: BytesMut,
    decoder: Decoder,
}

impl PolicyClient<MilterStream> {
    pub async fn connect(endpoint: &Endpoint) -> io::Result<Self> {
        Ok(PolicyClient::new(endpoint.connect().await?))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> PolicyClient<S> {
    pub fn new(stream: S) -> Self {
        PolicyClient {
            stream,
            read: BytesMut::with_capacity(512),
            decoder: Decoder::default(),
        }
    }

    /// Send raw bytes (hostile-peer tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Ask one question; the `action` value of the answer.
    pub async fn ask(&mut self, request: &Request) -> io::Result<String> {
        self.send_raw(&request.encode()).await?;
        self.answer().await
    }

    /// Read one answer; its `action` value.
    pub async fn answer(&mut self) -> io::Result<String> {
        loop {
            let decoded = self
                .decoder
                .decode(&mut self.read, &ANSWER_LIMITS)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if let Some(answer) = decoded {
                return answer
                    .get("action")
                    .map(str::to_string)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "answer without action"));
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Wait until the server closes the connection (bytes it sends are
    /// discarded). A reset counts as closed: the kernel resets a socket
    /// closed with unread bytes.
    pub async fn closed(&mut self) -> io::Result<()> {
        loop {
            self.read.clear();
            match self.stream.read_buf(&mut self.read).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}
