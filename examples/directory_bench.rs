//! Directory benchmark (run by bench/directory.sh against a local slapd).
//!
//! 1. Cold lookups: N distinct users resolved one after another (each a cache
//!    miss: user search, then the nested-group reads), lookups/s.
//! 2. Cache hits: one warm user looked up M times, latency per lookup.
//! 3. Single flight: 1,000 concurrent lookups of one uncached user; the
//!    directory fetches and LDAP operations they caused.
//!
//! Usage: directory_bench CONFIG USERS HITS

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use gatehouse::config;
use gatehouse::directory::Directory;

fn ops(d: &Directory) -> u64 {
    d.backend().operations()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = PathBuf::from(args.get(1).expect("CONFIG"));
    let users: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let hits: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let cfg = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let d: Arc<Directory> = cfg.build_directory().unwrap_or_else(|e| panic!("{e}"));

    // 1. Cold lookups.
    let ops0 = ops(&d);
    let t0 = Instant::now();
    for i in 1..=users {
        let login = format!("user{i:04}");
        let u = d.user_by_login(&login).await.expect("directory answers");
        assert!(u.is_some_and(|u| u.groups.contains("Big List")), "{login}");
    }
    let cold = t0.elapsed();
    let cold_ops = ops(&d) - ops0;
    println!(
        "COLD lookups={users} seconds={:.3} lookups_per_s={:.0} ldap_ops={cold_ops}",
        cold.as_secs_f64(),
        users as f64 / cold.as_secs_f64()
    );

    // 2. Cache hits.
    d.user_by_login("alice")
        .await
        .expect("alice")
        .expect("alice exists");
    let mut lat = Vec::with_capacity(hits);
    let t0 = Instant::now();
    for _ in 0..hits {
        let t = Instant::now();
        let u = d.user_by_login("alice").await.expect("cached");
        lat.push(t.elapsed().as_nanos() as u64);
        std::hint::black_box(u);
    }
    let total = t0.elapsed();
    lat.sort_unstable();
    println!(
        "HIT lookups={hits} mean_ns={} p50_ns={} p99_ns={}",
        total.as_nanos() as u64 / hits as u64,
        lat[hits / 2],
        lat[hits * 99 / 100]
    );

    // 3. Single flight.
    let before = d.counters().unwrap_or_default();
    let ops0 = ops(&d);
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            d.user_by_login("carol").await.map(|u| u.is_some())
        }));
    }
    for t in tasks {
        assert!(t.await.expect("task").expect("answer"));
    }
    let after = d.counters().unwrap_or_default();
    println!(
        "FLIGHT lookups=1000 directory_fetches={} ldap_ops={}",
        after[2] - before[2],
        ops(&d) - ops0
    );
}
