//! Change-follower benchmark (run by bench/follow-changes.sh against a
//! local slapd with syncprov).
//!
//! 1. Write-to-enforcement latency: user0001 is added to or removed from
//!    group "Bench Relay" over LDAP; from the write's acknowledgement, the
//!    time until a lookup through the cache answers with the new
//!    membership. Without the follower that is the cache `ttl`.
//! 2. Steady load: 1,000 membership changes per minute (users 0101–0200)
//!    while users 0001–0100 are looked up 2,000 times a second, once with the
//!    follower off and once on: CPU time of this process, cache hit ratio,
//!    changes applied.
//!
//! Usage: follow_bench CONFIG_FOLLOWING CONFIG_OFF LDAP_URL ROOT_DN ROOT_PW ROUNDS LOAD_SECONDS
//! With AD_BASE_DN and AD_BULK_DN set: the test Samba AD DC's layout
//! (tests/ad/samba.sh) instead of the test slapd's.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse::config;
use gatehouse::directory::Directory;
use ldap3::{LdapConnAsync, Mod};

/// Where the bench group and the bulk users are.
struct Layout {
    group: String,
    /// Bulk user `i`'s DN is `{rdn}=user{i:04},{users}`.
    rdn: &'static str,
    users: String,
    ad: bool,
}

impl Layout {
    fn from_env() -> Layout {
        match (std::env::var("AD_BASE_DN"), std::env::var("AD_BULK_DN")) {
            (Ok(base), Ok(bulk)) => Layout {
                group: format!("CN=Bench Relay,{base}"),
                rdn: "CN",
                users: bulk,
                ad: true,
            },
            _ => Layout {
                group: "cn=Bench Relay,ou=groups,dc=example,dc=com".into(),
                rdn: "uid",
                users: "ou=bulk,dc=example,dc=com".into(),
                ad: false,
            },
        }
    }

    fn user_dn(&self, i: usize) -> String {
        format!("{}=user{i:04},{}", self.rdn, self.users)
    }
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn directory(path: &str) -> Arc<Directory> {
    let cfg = config::load(&PathBuf::from(path)).unwrap_or_else(|e| panic!("{e}"));
    cfg.build_directory().unwrap_or_else(|e| panic!("{e}"))
}

async fn member(d: &Directory, i: usize) -> bool {
    let u = d
        .user_by_login(&format!("user{i:04}"))
        .await
        .expect("directory answers");
    u.expect("user exists").groups.contains("Bench Relay")
}

/// Add user `i` to the group or remove it, and wait for the server's answer.
async fn set_member(writer: &mut ldap3::Ldap, layout: &Layout, i: usize, add: bool) {
    let dn = layout.user_dn(i);
    let values = HashSet::from([dn.as_str()]);
    let change = if add {
        Mod::Add("member", values)
    } else {
        Mod::Delete("member", values)
    };
    writer
        .modify(&layout.group, vec![change])
        .await
        .unwrap()
        .success()
        .unwrap();
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let a: Vec<String> = std::env::args().collect();
    let (following, off, url, root_dn, root_pw) = (&a[1], &a[2], &a[3], &a[4], &a[5]);
    let rounds: usize = a[6].parse().unwrap();
    let load_seconds: u64 = a[7].parse().unwrap();
    let (conn, mut writer) = LdapConnAsync::new(url).await.unwrap();
    ldap3::drive!(conn);
    writer
        .simple_bind(root_dn, root_pw)
        .await
        .unwrap()
        .success()
        .unwrap();
    let layout = Layout::from_env();
    let _ = writer.delete(&layout.group).await;
    let mut entry = vec![("cn", HashSet::from(["Bench Relay"]))];
    if layout.ad {
        entry.push(("objectClass", HashSet::from(["group"])));
        entry.push(("sAMAccountName", HashSet::from(["Bench Relay"])));
    } else {
        // groupOfNames needs a member: one the benchmark never looks up.
        entry.push(("objectClass", HashSet::from(["groupOfNames"])));
        entry.push((
            "member",
            HashSet::from(["cn=gatehouse,ou=services,dc=example,dc=com"]),
        ));
    }
    writer.add(&layout.group, entry).await.unwrap().success().unwrap();

    let d = directory(following);
    d.start_following();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.following() {
        assert!(Instant::now() < deadline, "the follower never came up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 1. Latency.
    let mut latencies = Vec::with_capacity(rounds);
    let mut inside = member(&d, 1).await;
    for _ in 0..rounds {
        set_member(&mut writer, &layout, 1, !inside).await;
        let t = Instant::now();
        inside = !inside;
        while member(&d, 1).await != inside {
            assert!(t.elapsed() < Duration::from_secs(30), "change never enforced");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "LATENCY rounds={rounds} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        pct(&latencies, 0.5).as_secs_f64() * 1e3,
        pct(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );

    // 2. Steady load, follower off then on.
    let off = directory(off);
    for (name, dir) in [("off", &off), ("on", &d)] {
        for i in 1..=100 {
            member(dir, i).await;
        }
        let [h0, m0, ..] = dir.counters().unwrap();
        let (c0, _) = dir.follow_counters();
        let cpu0 = cpu_seconds();
        let stop = Instant::now() + Duration::from_secs(load_seconds);
        let mut lookups = 0u64;
        let mut next_write = Instant::now();
        let mut k = 0usize;
        // Paced, so CPU time tells the follower's cost and not a busy loop's.
        let mut pace = tokio::time::interval(Duration::from_micros(500));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while Instant::now() < stop {
            pace.tick().await;
            if Instant::now() >= next_write {
                set_member(&mut writer, &layout, 101 + k % 100, (k / 100).is_multiple_of(2)).await;
                k += 1;
                next_write += Duration::from_millis(60);
            }
            member(dir, 1 + (lookups as usize % 100)).await;
            lookups += 1;
        }
        // Undo the writes so both runs start alike.
        for j in 0..k.min(100) {
            let dn = layout.user_dn(101 + j);
            let _ = writer
                .modify(
                    &layout.group,
                    vec![Mod::Delete("member", HashSet::from([dn.as_str()]))],
                )
                .await;
        }
        let cpu = cpu_seconds() - cpu0;
        let [h1, m1, ..] = dir.counters().unwrap();
        let (c1, _) = dir.follow_counters();
        let (hits, misses) = (h1 - h0, m1 - m0);
        println!(
            "LOAD follower={name} seconds={load_seconds} writes={k} lookups={lookups} hit_ratio={:.4} cpu_s={cpu:.2} changes_applied={}",
            hits as f64 / (hits + misses).max(1) as f64,
            c1 - c0
        );
    }
    let _ = writer.delete(&layout.group).await;
}
