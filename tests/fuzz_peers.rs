//! A fuzzing campaign against the real binary: valid milter sessions,
//! mutated, truncated, split and oversized, from many connections at once.
//! It asserts what must hold whatever a peer sends: no crash or hang, every
//! connection ends, resident memory and file descriptors come back to
//! bounds, and a normal session is still answered correctly.
//!
//! CI runs a short campaign (3 s). Longer on demand:
//! `GATEHOUSE_FUZZ_SECS=600 cargo test --test fuzz_peers -- --nocapture`;
//! `GATEHOUSE_FUZZ_SEED=N` replays one seed (each failure prints it).

mod common;

use std::time::{Duration, Instant};

use common::{rss_kib, still_serves, Gatehouse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// xorshift64*: reproducible from a seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn packet(letter: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(letter);
    p.extend_from_slice(payload);
    p
}

fn macros(stage: u8, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![stage];
    for (n, v) in pairs {
        p.extend_from_slice(n.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    packet(b'D', &p)
}

/// The packets of one Postfix-like session, each a unit to mutate.
fn valid_session() -> Vec<Vec<u8>> {
    vec![
        packet(b'O', &[0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff]),
        macros(b'C', &[("j", "mx.example.com"), ("{daemon_name}", "submission")]),
        packet(b'C', b"client.example.net\x004\x00\xa0\x28127.0.0.1\x00"),
        packet(b'H', b"client.example.net\x00"),
        macros(b'M', &[("{auth_authen}", "alice"), ("i", "4AbCdE")]),
        packet(b'M', b"<alice@example.com>\x00SIZE=100\x00"),
        macros(
            b'R',
            &[("{rcpt_addr}", "v@elsewhere.example"), ("{rcpt_mailer}", "smtp")],
        ),
        packet(b'R', b"<v@elsewhere.example>\x00"),
        packet(b'R', b"<all-staff%example.com@mx.example.com>\x00"),
        packet(b'T', b""),
        packet(b'L', b"Subject\x00hello\x00"),
        packet(b'N', b""),
        packet(b'B', b"body\r\n"),
        packet(b'E', b""),
        packet(b'A', b""),
        packet(b'Q', b""),
    ]
}

/// One hostile stream: a valid session with some packets mutated.
fn hostile_stream(rng: &mut Rng) -> Vec<u8> {
    let mut packets = valid_session();
    for _ in 0..1 + rng.below(4) {
        if packets.is_empty() {
            break;
        }
        let i = rng.below(packets.len());
        let p = &mut packets[i];
        if p.len() < 5 {
            continue; // already cut below its header
        }
        match rng.below(8) {
            // Flip bytes anywhere, the length field included.
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(p.len());
                    p[at] ^= 1 << rng.below(8);
                }
            }
            // Truncate.
            1 => p.truncate(rng.below(p.len())),
            // Announce a length that is not what follows.
            2 => {
                let len = match rng.below(3) {
                    0 => u32::MAX,
                    1 => 0,
                    _ => rng.next() as u32 % (1 << 21),
                };
                p[..4].copy_from_slice(&len.to_be_bytes());
            }
            // Strings without terminators, or only terminators.
            3 => {
                let fill = if rng.below(2) == 0 { 0 } else { b'a' };
                let n = rng.below(3000);
                p.extend(std::iter::repeat_n(fill, n));
                let len = (p.len() - 4) as u32;
                p[..4].copy_from_slice(&len.to_be_bytes());
            }
            // A packet repeated, or dropped.
            4 => {
                let copy = p.clone();
                packets.insert(i, copy);
            }
            5 => {
                packets.remove(i);
            }
            // Packets out of order.
            6 => {
                let j = rng.below(packets.len());
                packets.swap(i, j);
            }
            // An unknown command letter.
            _ => p[4] = rng.next() as u8,
        }
    }
    packets.concat()
}

/// Send `bytes` in random pieces, hang up our side, read until gatehouse
/// closes. Returns false if gatehouse neither answered nor closed in time.
async fn run_one(addr: std::net::SocketAddr, bytes: Vec<u8>, seed: u64) -> bool {
    let mut rng = Rng(seed);
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return true; // over max_connections: refused at once, which is allowed
    };
    let mut at = 0;
    while at < bytes.len() {
        let n = 1 + rng.below(bytes.len() - at);
        if s.write_all(&bytes[at..at + n]).await.is_err() {
            break; // gatehouse closed: a verdict on this stream
        }
        at += n;
        tokio::task::yield_now().await;
    }
    let _ = s.shutdown().await;
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink))
        .await
        .is_ok()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuzzing_campaign_leaves_the_daemon_alive_bounded_and_correct() {
    let secs = env_u64("GATEHOUSE_FUZZ_SECS").unwrap_or(3);
    let seed = env_u64("GATEHOUSE_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("fuzz campaign: {secs} s, GATEHOUSE_FUZZ_SEED={seed}");
    let mut g = Gatehouse::start("idle_timeout = \"2s\"");
    let addr = match &g.endpoint {
        gatehouse::milter::Endpoint::Inet(a) => *a,
        _ => unreachable!(),
    };
    still_serves(&g).await;
    let (rss_before, fds_before) = (rss_kib(g.pid()), open_fds(g.pid()));
    let mut rng = Rng(seed);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut streams = 0u64;
    let mut peak_rss = rss_before;
    while Instant::now() < end {
        // Sixteen hostile connections at a time.
        let batch: Vec<_> = (0..16)
            .map(|_| {
                let bytes = hostile_stream(&mut rng);
                let s = rng.next() | 1;
                (tokio::spawn(run_one(addr, bytes, s)), s)
            })
            .collect();
        for (task, s) in batch {
            assert!(
                task.await.unwrap(),
                "a connection neither answered nor closed (seed {seed}, stream seed {s})"
            );
            streams += 1;
        }
        assert!(
            g.child.try_wait().unwrap().is_none(),
            "gatehouse died (seed {seed}); log:\n{}",
            g.log()
        );
        peak_rss = peak_rss.max(rss_kib(g.pid()));
    }
    still_serves(&g).await;
    let grown = peak_rss.saturating_sub(rss_before);
    eprintln!("fuzz campaign: {streams} streams, peak RSS +{grown} KiB");
    // Sixteen connections at their caps (a 1 MiB packet each, at most) and
    // allocator slack: far below what a leak or an amplification costs.
    assert!(grown < 48 * 1024, "RSS grew by {grown} KiB (seed {seed})");
    // Every fuzz connection was closed: no descriptor outlives its peer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds(g.pid()) > fds_before + 1 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors open, {fds_before} before the campaign (seed {seed})",
            open_fds(g.pid())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!g.log().contains("panicked"), "{}", g.log());
}
