//! A policy-delegation stream with its buffers: reads whole requests within
//! their time limits, writes answers.
//!
//! Two clocks: between requests a connection may sit idle for
//! `idle_timeout` (Postfix keeps its connection for
//! `smtpd_policy_service_max_idle`, 300 s by default); once a request's
//! first byte is in, the rest must follow within `request_timeout`
//! (Postfix writes a request at once), so a client that trickles a byte at
//! a time holds a connection for seconds, not hours.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::codec::{encode_action, CodecError, Decoder, Limits, Request};

/// Read buffer growth step: a whole Postfix request in one read.
const READ_STEP: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PolicyConnectionError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("peer closed the connection in the middle of a request ({0} bytes buffered)")]
    Truncated(usize),
    #[error("no request for {0:?}")]
    Idle(Duration),
    #[error("request not complete within {0:?}")]
    Slow(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Time limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub request: Duration,
}

pub struct PolicyConnection<S> {
    stream: S,
    read: BytesMut,
    write: BytesMut,
    decoder: Decoder,
    limits: Limits,
    timeouts: Timeouts,
    /// When the request being read must be complete.
    request_deadline: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PolicyConnection<S> {
    pub fn new(stream: S, limits: Limits, timeouts: Timeouts) -> Self {
        PolicyConnection {
            stream,
            read: BytesMut::new(),
            write: BytesMut::new(),
            decoder: Decoder::default(),
            limits,
            timeouts,
            request_deadline: None,
        }
    }

    /// The next request; `None` when the peer closed between requests.
    pub async fn read_request(&mut self) -> Result<Option<Request>, PolicyConnectionError> {
        loop {
            if let Some(request) = self.decoder.decode(&mut self.read, &self.limits)? {
                // Bytes of a next (pipelined) request start its own clock.
                self.request_deadline = None;
                return Ok(Some(request));
            }
            let now = Instant::now();
            let (deadline, on_timeout) = if self.read.is_empty() {
                (
                    now + self.timeouts.idle,
                    PolicyConnectionError::Idle(self.timeouts.idle),
                )
            } else {
                let deadline = *self.request_deadline.get_or_insert(now + self.timeouts.request);
                (deadline, PolicyConnectionError::Slow(self.timeouts.request))
            };
            if self.read.capacity() - self.read.len() < READ_STEP / 4 {
                self.read.reserve(READ_STEP);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.read)).await;
            match read {
                Err(_) => return Err(on_timeout),
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(0)) if self.read.is_empty() => return Ok(None),
                Ok(Ok(0)) => return Err(PolicyConnectionError::Truncated(self.read.len())),
                Ok(Ok(_)) => {
                    if self.request_deadline.is_none() {
                        self.request_deadline = Some(now + self.timeouts.request);
                    }
                }
            }
        }
    }

    /// Answer the request just read. A peer that does not read its answer
    /// within `request_timeout` is dropped.
    pub async fn write_action(&mut self, text: &str) -> Result<(), PolicyConnectionError> {
        self.write.clear();
        encode_action(text, &mut self.write);
        match tokio::time::timeout(self.timeouts.request, self.stream.write_all(&self.write)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(PolicyConnectionError::Slow(self.timeouts.request)),
        }
    }
}
