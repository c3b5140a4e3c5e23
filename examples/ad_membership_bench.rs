//! Active Directory membership methods, side by side (run by
//! bench/ad-membership.sh against the test Samba AD DC).
//!
//! For each configuration given (one per `membership` method, `ttl = "0s"`
//! so that every lookup goes to the DC), the same users are resolved cold,
//! one after another, round after round with the methods interleaved:
//! latency per lookup (p50, p99) and LDAP operations per lookup.
//!
//! Usage: ad_membership_bench ROUNDS LOGINS CONFIG...   (LOGINS: comma-separated)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use gatehouse::config;
use gatehouse::directory::Directory;

struct Method {
    name: String,
    directory: Arc<Directory>,
    latencies_us: Vec<f64>,
    operations: u64,
    groups: Vec<usize>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).expect("ROUNDS");
    let logins: Vec<String> = args
        .get(2)
        .expect("LOGINS")
        .split(',')
        .map(String::from)
        .collect();
    let mut methods: Vec<Method> = args[3..]
        .iter()
        .map(|path| {
            let cfg = config::load(&PathBuf::from(path)).unwrap_or_else(|e| panic!("{e}"));
            let directory = cfg.build_directory().unwrap_or_else(|e| panic!("{e}"));
            let name = std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("membership = ")
                        .map(|m| m.trim_matches('"').to_string())
                })
                .unwrap_or_else(|| "memberof".into());
            Method {
                name,
                directory,
                latencies_us: Vec::new(),
                operations: 0,
                groups: vec![0; logins.len()],
            }
        })
        .collect();
    // One untimed lookup each: connections opened, bind done.
    for m in &methods {
        m.directory
            .user_by_login(&logins[0])
            .await
            .expect("directory answers");
    }
    for _ in 0..rounds {
        for m in methods.iter_mut() {
            let ops0 = m.directory.backend().operations();
            for (i, login) in logins.iter().enumerate() {
                let t = Instant::now();
                let u = m.directory.user_by_login(login).await.expect("directory answers");
                m.latencies_us.push(t.elapsed().as_secs_f64() * 1e6);
                let u = u.unwrap_or_else(|| panic!("{login} not found"));
                m.groups[i] = u.groups.len();
            }
            m.operations += m.directory.backend().operations() - ops0;
        }
    }
    for m in &mut methods {
        m.latencies_us.sort_by(f64::total_cmp);
        let n = m.latencies_us.len();
        let groups: Vec<String> = logins
            .iter()
            .zip(&m.groups)
            .map(|(l, g)| format!("{l}:{g}"))
            .collect();
        println!(
            "METHOD {} lookups={n} p50_us={:.0} p99_us={:.0} ldap_ops_per_lookup={:.2} groups={}",
            m.name,
            m.latencies_us[n / 2],
            m.latencies_us[(n * 99 / 100).min(n - 1)],
            m.operations as f64 / n as f64,
            groups.join(",")
        );
    }
}
