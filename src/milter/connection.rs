//! A milter stream with its buffers: reads whole packets, queues replies and
//! writes them in one system call when no further packet is already waiting
//! (the MTA pipelines no-reply commands such as `D` and NR_CONN `C`).
//!
//! Used by both sides: the server reads commands and writes replies, the
//! MTA-side client does the opposite.
//!
//! A server connection may carry a read rate: a token bucket of bytes per
//! second with a burst of one largest packet. An MTA sends a few hundred
//! bytes per command and never notices; a peer that floods (large macro
//! tables on every MAIL, say) is read no faster than the rate, so it costs
//! the daemon a bounded share of CPU and other sessions keep their latency.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

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
    rate: Option<ReadRate>,
}

/// Token bucket over the bytes read.
struct ReadRate {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// Reads were slowed at least once.
    slowed: bool,
    /// ... and [`Connection::take_slowed`] has said so.
    reported: bool,
}

impl ReadRate {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled = now;
    }

    /// How long to wait before reading on, if the peer is in debt.
    fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.per_second))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, max_packet: usize, idle_timeout: Option<Duration>) -> Self {
        Connection {
            stream,
            read: BytesMut::new(),
            write: BytesMut::new(),
            max_packet,
            idle_timeout,
            rate: None,
        }
    }

    /// Read at most `per_second` bytes per second on average, in bursts of
    /// up to one largest packet.
    pub fn with_read_rate(mut self, per_second: u64) -> Self {
        let burst = self.max_packet as f64 + 4.0;
        self.rate = Some(ReadRate {
            per_second: per_second.max(1) as f64,
            burst,
            tokens: burst,
            refilled: Instant::now(),
            slowed: false,
            reported: false,
        });
        self
    }

    /// Whether reads have been slowed by the read rate: true once per
    /// connection, for one log line.
    pub fn take_slowed(&mut self) -> bool {
        match &mut self.rate {
            Some(r) if r.slowed && !r.reported => {
                r.reported = true;
                true
            }
            _ => false,
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
            if let Some(wait) = self.rate.as_mut().and_then(|r| r.wait(Instant::now())) {
                tokio::time::sleep(wait).await;
                if let Some(r) = &mut self.rate {
                    r.slowed = true;
                }
                // Our own wait is not the peer's idleness.
                deadline = deadline.map(|d: Instant| d + wait);
            }
            let want = missing_bytes(&self.read).clamp(INITIAL_READ, READ_STEP);
            self.read.reserve(want);
            let n = match self.idle_timeout {
                Some(t) => {
                    // Started after the flush: the peer's time begins once it has our reply.
                    let at = *deadline.get_or_insert_with(|| Instant::now() + t);
                    tokio::time::timeout_at(at, self.stream.read_buf(&mut self.read))
                        .await
                        .map_err(|_| ConnectionError::Idle(t))??
                }
                None => self.stream.read_buf(&mut self.read).await?,
            };
            if let Some(r) = &mut self.rate {
                r.tokens -= n as f64;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(len: usize) -> Vec<u8> {
        let mut p = ((len + 1) as u32).to_be_bytes().to_vec();
        p.push(b'D');
        p.extend(std::iter::repeat_n(b'x', len));
        p
    }

    /// The first packets pass at once (the burst), then reads follow the
    /// rate; an MTA-sized exchange is never delayed.
    #[tokio::test(start_paused = true)]
    async fn the_read_rate_lets_a_burst_pass_and_slows_a_flood() {
        let (mut peer, ours) = tokio::io::duplex(1 << 20);
        let mut conn = Connection::new(ours, 65536, Some(Duration::from_secs(5))).with_read_rate(65536);
        let t0 = Instant::now();
        peer.write_all(&packet(300)).await.unwrap();
        assert!(conn.read_packet().await.unwrap().is_some());
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "an MTA-sized packet waits for nothing"
        );
        assert!(!conn.take_slowed());
        // Ten packets of 64 KiB: the burst covers the first, the rest are
        // read at 64 KiB/s (the last one's debt is paid by the next read),
        // and our own waiting never counts as idleness (5 s).
        for _ in 0..10 {
            peer.write_all(&packet(65000)).await.unwrap();
            assert!(conn.read_packet().await.unwrap().is_some());
        }
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(7) && took < Duration::from_secs(10),
            "{took:?}"
        );
        assert!(conn.take_slowed());
        assert!(!conn.take_slowed(), "said once per connection");
    }
}
