//! A milter stream with its buffers: reads whole packets, queues replies and
//! writes them in one system call when no further packet is already waiting
//! (the MTA pipelines no-reply commands such as `D` and NR_CONN `C`).
//!
//! Used by both sides: the server reads commands and writes replies, the
//! MTA-side client does the opposite.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{
    encode_command, encode_reply, missing_bytes, parse_command, parse_reply, split_packet, Command,
    FrameError, Reply,
};

/// Initial read buffer: enough for a typical MTA burst (macros + command).
const INITIAL_READ: usize = 512;
/// A packet's body is read in steps of at most this many bytes, so an announced
/// length costs memory only as the bytes actually arrive.
const READ_STEP: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("peer closed the connection in the middle of a packet ({0} bytes buffered)")]
    Truncated(usize),
    #[error("no packet for {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub struct Connection<S> {
    stream: S,
    read: BytesMut,
    write: BytesMut,
    max_packet: usize,
    idle_timeout: Option<Duration>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, max_packet: usize, idle_timeout: Option<Duration>) -> Self {
        Connection {
            stream,
            read: BytesMut::new(),
            write: BytesMut::new(),
            max_packet,
            idle_timeout,
        }
    }

    /// Next whole packet as (command letter, payload); `None` on a clean end of
    /// stream between packets. Pending writes are flushed before waiting for input.
    ///
    /// `idle_timeout` bounds the wait for the whole packet, not each read: a
    /// peer that trickles one byte at a time is closed all the same.
    pub async fn read_packet(&mut self) -> Result<Option<(u8, Bytes)>, ConnectionError> {
        let mut deadline = None;
        loop {
            if let Some(packet) = split_packet(&mut self.read, self.max_packet)? {
                return Ok(Some(packet));
            }
            self.flush().await?;
            let want = missing_bytes(&self.read).clamp(INITIAL_READ, READ_STEP);
            self.read.reserve(want);
            let n = match self.idle_timeout {
                Some(t) => {
                    // Started after the flush: the peer's time begins once it has our reply.
                    let at = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + t);
                    tokio::time::timeout_at(at, self.stream.read_buf(&mut self.read))
                        .await
                        .map_err(|_| ConnectionError::Idle(t))??
                }
                None => self.stream.read_buf(&mut self.read).await?,
            };
            if n == 0 {
                return if self.read.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnectionError::Truncated(self.read.len()))
                };
            }
        }
    }

    /// Server side: the next MTA command.
    pub async fn read_command(&mut self) -> Result<Option<Command>, ConnectionError> {
        match self.read_packet().await? {
            Some((letter, payload)) => Ok(Some(parse_command(letter, payload)?)),
            None => Ok(None),
        }
    }

    /// Client side: the next milter reply.
    pub async fn read_reply(&mut self) -> Result<Option<Reply>, ConnectionError> {
        match self.read_packet().await? {
            Some((letter, payload)) => Ok(Some(parse_reply(letter, payload)?)),
            None => Ok(None),
        }
    }

    pub fn queue_reply(&mut self, reply: &Reply) {
        encode_reply(reply, &mut self.write);
    }

    pub fn queue_command(&mut self, command: &Command) {
        encode_command(command, &mut self.write);
    }

    /// Queue raw bytes (tests use this to send malformed packets).
    pub fn queue_raw(&mut self, raw: &[u8]) {
        self.write.extend_from_slice(raw);
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.write.is_empty() {
            self.stream.write_all(&self.write).await?;
            self.write.clear();
            // Give back the memory of an unusually large reply; idle connections stay small.
            if self.write.capacity() > READ_STEP {
                self.write = BytesMut::new();
            }
        }
        if self.read.is_empty() && self.read.capacity() > READ_STEP {
            self.read = BytesMut::new();
        }
        Ok(())
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.stream.shutdown().await
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }
}
