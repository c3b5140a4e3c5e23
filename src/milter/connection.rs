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
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use super::endpoint::MilterStream;

/// A stream that can wait for bytes to read without a buffer to read them
/// into (a socket), so that a connection waiting for its peer holds no
/// buffer: a thousand idle MTA connections then cost no read buffers.
/// Others (in-memory test pipes) say "readable" at once and keep theirs.
pub trait WaitReadable {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }
}

impl WaitReadable for MilterStream {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            MilterStream::Tcp(s) => s.poll_read_ready(cx),
            MilterStream::Unix(s) => s.poll_read_ready(cx),
        }
    }
}

impl WaitReadable for tokio::io::DuplexStream {}

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
    /// The idle timer, created at the first wait.
    idle: Option<Pin<Box<Sleep>>>,
    rate: Option<ReadRate>,
}

/// Read what the peer sent into `buf` (room for `want` more bytes made
/// first), after waiting until there is something when `wait_first`.
/// Cancel-safe, as the idle timer needs.
async fn read_into<S: AsyncRead + WaitReadable + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    want: usize,
    wait_first: bool,
) -> io::Result<usize> {
    if wait_first {
        std::future::poll_fn(|cx| stream.poll_readable(cx)).await?;
    }
    if buf.capacity() == 0 {
        *buf = spare::take();
    }
    buf.reserve(want);
    stream.read_buf(buf).await
}

/// Buffers that connections waiting for their peer gave back, kept by
/// each worker thread for the next connection that reads or answers: a
/// round trip costs no allocation, and idle connections hold no buffers.
/// At most [`spare::KEPT`] small buffers per thread.
mod spare {
    use std::cell::RefCell;

    use bytes::BytesMut;

    pub const KEPT: usize = 64;
    /// Larger buffers (a big packet's) are freed, not kept.
    const LARGEST: usize = 4096;

    thread_local! {
        static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    pub fn take() -> BytesMut {
        SPARE.with_borrow_mut(Vec::pop).unwrap_or_default()
    }

    pub fn give(mut buf: BytesMut) {
        if buf.capacity() == 0 || buf.capacity() > LARGEST {
            return;
        }
        buf.clear();
        SPARE.with_borrow_mut(|spare| {
            if spare.len() < KEPT {
                spare.push(buf);
            }
        });
    }
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
    fn new(per_second: u64, burst: f64, now: Instant) -> Self {
        ReadRate {
            per_second: per_second.max(1) as f64,
            burst,
            tokens: burst,
            refilled: now,
            slowed: false,
            reported: false,
        }
    }

    /// How long to wait before reading on, if the peer is in debt. The
    /// bucket is refilled on every read: refilling only once in debt would
    /// credit a long rest in full on top of a burst already spent.
    fn wait(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled = now;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.per_second))
    }

    fn spend(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }
}

impl<S: AsyncRead + AsyncWrite + WaitReadable + Unpin> Connection<S> {
    pub fn new(stream: S, max_packet: usize, idle_timeout: Option<Duration>) -> Self {
        Connection {
            stream,
            read: BytesMut::new(),
            write: BytesMut::new(),
            max_packet,
            idle_timeout,
            idle: None,
            rate: None,
        }
    }

    /// Read at most `per_second` bytes per second on average, in bursts of
    /// up to one largest packet.
    pub fn with_read_rate(mut self, per_second: u64) -> Self {
        let burst = self.max_packet as f64 + 4.0;
        self.rate = Some(ReadRate::new(per_second, burst, Instant::now()));
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
            // One clock reading per wait, for the rate and the idle deadline.
            let mut now = Instant::now();
            if let Some(wait) = self.rate.as_mut().and_then(|r| r.wait(now)) {
                tokio::time::sleep(wait).await;
                if let Some(r) = &mut self.rate {
                    r.slowed = true;
                }
                // Our own wait is not the peer's idleness.
                deadline = deadline.map(|d: Instant| d + wait);
                now += wait;
            }
            let want = missing_bytes(&self.read).clamp(INITIAL_READ, READ_STEP);
            // Between packets: give the buffers back and wait for the peer
            // without them (a connection waiting for its MTA holds none; a
            // packet already there is read at once, with a spare buffer).
            let wait_first = self.read.is_empty();
            if wait_first {
                spare::give(std::mem::take(&mut self.read));
                spare::give(std::mem::take(&mut self.write));
            }
            let n = match self.idle_timeout {
                Some(t) => {
                    // Started after the flush: the peer's time begins once it has our reply.
                    let at = *deadline.get_or_insert(now + t);
                    // One timer per connection, armed at an earlier or this
                    // packet's deadline: deadlines only move forward, so a
                    // timer that fires early is re-armed once per
                    // idle_timeout instead of once per packet.
                    let idle = self
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    loop {
                        tokio::select! {
                            biased;
                            r = read_into(&mut self.stream, &mut self.read, want, wait_first) => break r?,
                            () = idle.as_mut() => {
                                if Instant::now() >= at {
                                    return Err(ConnectionError::Idle(t));
                                }
                                idle.as_mut().reset(at);
                            }
                        }
                    }
                }
                None => read_into(&mut self.stream, &mut self.read, want, wait_first).await?,
            };
            if let Some(r) = &mut self.rate {
                r.spend(n);
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
        self.writable();
        encode_reply(reply, &mut self.write);
    }

    pub fn queue_command(&mut self, command: &Command) {
        self.writable();
        encode_command(command, &mut self.write);
    }

    /// A write buffer to queue into: a spare one when it was given back.
    fn writable(&mut self) {
        if self.write.capacity() == 0 {
            self.write = spare::take();
        }
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
    use std::task::Waker;

    /// An idle connection holds no buffers: after a packet and its reply,
    /// the wait for the next packet gives them back; a packet already
    /// waiting is read with the buffer it has.
    #[tokio::test]
    async fn waiting_for_the_peer_holds_no_buffers() {
        use std::future::Future;
        let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
        let mut conn = Connection::new(MilterStream::Unix(ours), 1 << 20, Some(Duration::from_secs(30)));
        // Two packets at once: the second is read without waiting.
        peer.write_all(&[0, 0, 0, 1, b'N', 0, 0, 0, 1, b'N'])
            .await
            .unwrap();
        assert_eq!(conn.read_packet().await.unwrap().unwrap().0, b'N');
        conn.queue_reply(&Reply::Continue);
        assert_eq!(conn.read_packet().await.unwrap().unwrap().0, b'N');
        assert!(conn.read.capacity() > 0, "kept while packets were waiting");
        // Nothing more: polled once, the read waits, buffers given back.
        {
            let mut next = std::pin::pin!(conn.read_packet());
            let mut cx = Context::from_waker(Waker::noop());
            assert!(next.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!((conn.read.capacity(), conn.write.capacity()), (0, 0));
        // And the next packet is read as usual.
        peer.write_all(&[0, 0, 0, 1, b'Q']).await.unwrap();
        assert_eq!(conn.read_packet().await.unwrap().unwrap().0, b'Q');
    }

    /// A rested peer passes its burst at once, then is read at the rate;
    /// refilling never exceeds the burst.
    #[test]
    fn the_read_rate_lets_a_burst_pass_and_slows_a_flood() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = ReadRate::new(1000, 2000.0, t0);
        r.spend(300);
        assert_eq!(r.wait(at(0)), None);
        r.spend(2200);
        // 500 bytes in debt at 1000 bytes/s: half a second.
        assert_eq!(r.wait(at(0)), Some(Duration::from_millis(500)));
        assert_eq!(r.wait(at(500)), None);
        r.spend(1000);
        assert_eq!(r.wait(at(1000)), Some(Duration::from_millis(500)));
        assert_eq!(r.wait(at(1500)), None);
        // A long rest refills to the burst, no further.
        r.spend(2000);
        assert_eq!(r.wait(at(60_000)), None);
        r.spend(2500);
        assert_eq!(r.wait(at(60_000)), Some(Duration::from_millis(500)));
        // A rest while in credit is capped too: after it, one and a half
        // bursts at once are in debt by half a burst.
        assert_eq!(r.wait(at(70_000)), None);
        r.spend(1000);
        assert_eq!(r.wait(at(70_000)), None);
        assert_eq!(r.wait(at(200_000)), None);
        r.spend(3000);
        assert_eq!(r.wait(at(200_000)), Some(Duration::from_secs(1)));
    }
}
