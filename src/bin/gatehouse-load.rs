//! Load generator: plays the MTA against a running milter.
//!
//! C concurrent connections run N transactions in total, Postfix-style (macros
//! before each event, ABORT after each transaction), either reusing each
//! connection or opening a fresh one per transaction. Prints transactions/s
//! and latency percentiles; the last line is machine-readable:
//!
//! `RESULT tps=… p50_us=… p99_us=… p999_us=… transactions=… accepted=… rejected=… tempfailed=… errors=…`
//!
//! A transaction counts as rejected when any reply was a 5xx, else as
//! tempfailed when any was a 4xx, else as accepted; errors are transactions
//! that did not complete (connection refused or lost, protocol error).
//!
//! `--hold N` instead opens N connections, negotiates and sends CONNECT/HELO,
//! prints `HOLD connections=N` and keeps them idle (for memory measurements).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use gatehouse::milter::client::{Envelope, MilterClient, TransactionReplies, POSTFIX_V6_OFFER};
use gatehouse::milter::{Endpoint, Reply};

#[derive(Parser, Clone)]
#[command(name = "gatehouse-load", about = "Milter load generator (MTA side)")]
struct Args {
    /// Milter socket: unix:/path, inet:host:port, inet6:[addr]:port.
    #[arg(long)]
    socket: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Transactions in total.
    #[arg(long, default_value_t = 20000)]
    transactions: u64,
    /// Open a new milter connection for every transaction.
    #[arg(long)]
    fresh_connection: bool,
    /// {daemon_name} sent at CONNECT (selects the gatehouse listener).
    #[arg(long, default_value = "submission")]
    daemon_name: String,
    /// {auth_authen} sent at MAIL; empty for anonymous.
    #[arg(long, default_value = "alice")]
    login: String,
    #[arg(long, default_value = "alice@example.com")]
    from: String,
    /// Recipients of each transaction.
    #[arg(long, num_args = 1.., default_values_t = ["all-staff@example.com".to_string(), "partner@elsewhere.example".to_string()])]
    rcpt: Vec<String>,
    /// Hold this many idle connections instead of running transactions.
    #[arg(long)]
    hold: Option<usize>,
    #[arg(long, default_value_t = 5)]
    hold_seconds: u64,
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    /// Completed transactions by outcome: accepted, rejected, tempfailed.
    outcomes: [u64; 3],
    errors: u64,
}

/// 0 accepted, 1 rejected (any 5xx), 2 tempfailed (any 4xx, no 5xx).
fn outcome(r: &TransactionReplies) -> usize {
    let replies = std::iter::once(&r.mail)
        .chain(&r.rcpts)
        .chain(std::iter::once(&r.end))
        .flatten();
    let (mut rejected, mut tempfailed) = (false, false);
    for reply in replies {
        match reply {
            Reply::Reject => rejected = true,
            Reply::Tempfail => tempfailed = true,
            Reply::ReplyCode(t) if t.starts_with(b"5") => rejected = true,
            Reply::ReplyCode(t) if t.starts_with(b"4") => tempfailed = true,
            _ => {}
        }
    }
    if rejected {
        1
    } else if tempfailed {
        2
    } else {
        0
    }
}

fn main() {
    let args = Args::parse();
    let endpoint = match Endpoint::parse(&args.socket) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("gatehouse-load: {e}");
            std::process::exit(2);
        }
    };
    // One core for the load, so the server under test gets the other.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        match args.hold {
            Some(n) => hold(&endpoint, &args, n).await,
            None => load(endpoint, args).await,
        }
    });
}

fn envelope(args: &Args) -> Envelope {
    let mut mail_macros = vec![("i".to_string(), "4XyZ1abc".to_string())];
    if !args.login.is_empty() {
        mail_macros.push(("{auth_type}".into(), "PLAIN".into()));
        mail_macros.push(("{auth_authen}".into(), args.login.clone()));
    }
    Envelope {
        mail_macros,
        sender: args.from.clone(),
        recipients: args.rcpt.clone(),
    }
}

async fn open(endpoint: &Endpoint, args: &Args, n: usize) -> Result<MilterClient, String> {
    let mut c = MilterClient::connect(endpoint).await.map_err(|e| e.to_string())?;
    c.negotiate(POSTFIX_V6_OFFER).await.map_err(|e| e.to_string())?;
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, (n % 250) as u8 + 1));
    let port = 40000 + (n % 20000) as u16;
    let macros = [
        ("j", "mx.example.com"),
        ("{daemon_name}", args.daemon_name.as_str()),
        ("{daemon_addr}", "127.0.0.1"),
        ("{daemon_port}", "587"),
        ("{client_addr}", "192.0.2.1"),
    ];
    c.connect_event("client.example.net", client, port, &macros)
        .await
        .map_err(|e| e.to_string())?;
    c.helo("client.example.net").await.map_err(|e| e.to_string())?;
    Ok(c)
}

async fn load(endpoint: Endpoint, args: Args) {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let next = next.clone();
        let endpoint = endpoint.clone();
        let args = args.clone();
        workers.push(tokio::spawn(async move {
            let env = envelope(&args);
            let mut stats = Stats::default();
            let mut conn: Option<MilterClient> = None;
            while next.fetch_add(1, Ordering::Relaxed) < args.transactions {
                let t0 = Instant::now();
                if conn.is_none() {
                    match open(&endpoint, &args, w).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            if stats.errors == 0 {
                                eprintln!("gatehouse-load: connection failed: {e}");
                            }
                            stats.errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let c = conn.as_mut().expect("opened above");
                match c.transaction(&env).await {
                    Ok(r) if r.mail.is_some() => {
                        stats.outcomes[outcome(&r)] += 1;
                        stats
                            .latencies_us
                            .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        if args.fresh_connection {
                            let _ = c.quit().await;
                            conn = None;
                        }
                    }
                    Ok(_) => {
                        stats.errors += 1;
                        conn = None;
                    }
                    Err(e) => {
                        if stats.errors == 0 {
                            eprintln!("gatehouse-load: transaction failed: {e}");
                        }
                        stats.errors += 1;
                        conn = None;
                    }
                }
            }
            if let Some(mut c) = conn {
                let _ = c.quit().await;
            }
            stats
        }));
    }
    let mut all = Stats::default();
    for w in workers {
        if let Ok(s) = w.await {
            all.latencies_us.extend(s.latencies_us);
            for (a, n) in all.outcomes.iter_mut().zip(s.outcomes) {
                *a += n;
            }
            all.errors += s.errors;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let pct = |p: f64| -> u32 {
        if all.latencies_us.is_empty() {
            return 0;
        }
        let i = ((all.latencies_us.len() as f64 * p).ceil() as usize).clamp(1, all.latencies_us.len()) - 1;
        all.latencies_us[i]
    };
    let done = all.latencies_us.len();
    let tps = done as f64 / elapsed;
    println!(
        "{} transactions in {:.2}s over {} connection(s){}: {:.0} transactions/s; latency p50 {} µs, p99 {} µs, p99.9 {} µs; {} accepted, {} rejected, {} tempfailed; {} error(s)",
        done,
        elapsed,
        args.concurrency,
        if args.fresh_connection { ", fresh connection per transaction" } else { "" },
        tps,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        all.outcomes[0],
        all.outcomes[1],
        all.outcomes[2],
        all.errors
    );
    println!(
        "RESULT tps={:.1} p50_us={} p99_us={} p999_us={} transactions={} accepted={} rejected={} tempfailed={} errors={}",
        tps,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        done,
        all.outcomes[0],
        all.outcomes[1],
        all.outcomes[2],
        all.errors
    );
}

async fn hold(endpoint: &Endpoint, args: &Args, n: usize) {
    let mut held = Vec::with_capacity(n);
    let mut errors = 0u64;
    for i in 0..n {
        match open(endpoint, args, i).await {
            Ok(mut c) => {
                if c.flush().await.is_ok() {
                    held.push(c);
                } else {
                    errors += 1;
                }
            }
            Err(e) => {
                if errors == 0 {
                    eprintln!("gatehouse-load: connection {i} failed: {e}");
                }
                errors += 1;
            }
        }
    }
    println!("HOLD connections={}", held.len());
    tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
    let count = held.len();
    for mut c in held {
        let _ = c.quit().await;
    }
    println!("RESULT tps=0.0 p50_us=0 p99_us=0 p999_us=0 transactions={count} accepted=0 rejected=0 tempfailed=0 errors={errors}");
}
