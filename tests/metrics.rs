//! `/metrics` (`[metrics] listen`) scraped while real milter sessions run:
//! every family is there, and the counters moved by what the sessions did.

mod common;

use std::time::Duration;

use common::slapd::{Options, Slapd};
use common::{
    assert_relay_refused, example_config, ldap_example_config, session, still_serves, Gatehouse, ANY_PORT,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request; (status line, body).
async fn get(address: &str, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(address).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: gatehouse\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

/// The value of the sample `name{labels}` (labels in the exposition's
/// order, as a substring), 0 when absent.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_scrape_shows_every_family_and_the_counters_move() {
    let slapd = Slapd::start_with(Options {
        tls: false,
        big: false,
    });
    let config = ldap_example_config(ANY_PORT, &slapd, "") + "\n[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let g = Gatehouse::start_with(&config, ANY_PORT);
    let log = g.wait_for_log("serving metrics", Duration::from_secs(10));
    let line = log.lines().find(|l| l.contains("serving metrics")).unwrap();
    let address = line
        .split("address=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();

    let (status, before) = get(&address, "/metrics").await;
    assert!(status.contains(" 200 "), "{status}");
    let refused = [
        "rule=\"relay\"",
        "action=\"reject\"",
        "stage=\"rcpt\"",
        "listener=\"bridgehead\"",
    ];
    let refused_before = sample(&before, "gatehouse_decisions_total", &refused);

    // Three sessions: two relay attempts refused, one normal transaction.
    for _ in 0..2 {
        let mut c = session(&g.endpoint, "bridgehead", "203.0.113.9").await;
        assert_relay_refused(&mut c, "someone@partner.example").await;
    }
    still_serves(&g).await;
    // An authenticated submission: the directory is asked.
    let mut c = session(&g.endpoint, "submission", "198.51.100.7").await;
    let r = c
        .transaction(&gatehouse::milter::client::Envelope {
            mail_macros: vec![("{auth_authen}".into(), "alice".into())],
            sender: "alice@example.com".into(),
            recipients: vec!["all-staff@example.com".into()],
        })
        .await
        .unwrap();
    assert_eq!(common::reply_text(&r.rcpts[0]), "continue");

    let (_, after) = get(&address, "/metrics").await;
    for family in [
        "gatehouse_decisions",
        "gatehouse_decision_duration_seconds",
        "gatehouse_connections",
        "gatehouse_connections_open",
        "gatehouse_protocol_errors",
        "gatehouse_directory_operations",
        "gatehouse_directory_operation_duration_seconds",
        "gatehouse_directory_failovers",
        "gatehouse_reloads",
        "gatehouse_config_version",
        "gatehouse_directory_cache_hits",
        "gatehouse_directory_cache_entries",
        "gatehouse_directory_following",
    ] {
        assert!(
            after.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{after}"
        );
    }
    assert!(
        sample(&after, "gatehouse_decisions_total", &refused) >= refused_before + 2.0,
        "{after}"
    );
    assert!(
        sample(&after, "gatehouse_decisions_total", &["action=\"accept\""]) >= 1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "gatehouse_connections_total",
            &["service=\"milter\"", "event=\"opened\""]
        ) >= 3.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "gatehouse_decision_duration_seconds_count",
            &["service=\"milter\""]
        ) >= 3.0
    );
    assert_eq!(sample(&after, "gatehouse_config_version", &[]), 1.0, "{after}");
    let url = format!("server=\"{}\"", slapd.url());
    assert!(
        sample(
            &after,
            "gatehouse_directory_operations_total",
            &[&url, "result=\"ok\""]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        sample(&after, "gatehouse_directory_cache_misses_total", &[]) >= 1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "gatehouse_directory_failovers_total", &[&url]),
        0.0
    );
    // The submission session is still open.
    assert!(
        sample(&after, "gatehouse_connections_open", &["service=\"milter\""]) >= 1.0,
        "{after}"
    );
    drop(c);
    // Nothing per user, address or client.
    for secret in ["partner.example", "203.0.113.9", "carol"] {
        assert!(!after.contains(secret), "{secret} in the metrics:\n{after}");
    }

    // A reload is counted and moves the version.
    g.signal("HUP");
    g.wait_for_log("configuration reloaded", Duration::from_secs(10));
    let (_, reloaded) = get(&address, "/metrics").await;
    assert_eq!(
        sample(&reloaded, "gatehouse_reloads_total", &["result=\"applied\""]),
        1.0
    );
    assert_eq!(sample(&reloaded, "gatehouse_config_version", &[]), 2.0);

    let (status, _) = get(&address, "/other").await;
    assert!(status.contains(" 404 "), "{status}");
}

#[test]
fn a_metrics_address_that_is_not_one_is_refused_with_its_line() {
    let config = example_config(ANY_PORT, "") + "\n[metrics]\nlisten = \"localhost\"\n";
    let e = match gatehouse::config::parse(&config, std::path::Path::new("g.toml")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    assert!(e.contains("metrics.listen") && e.contains("line "), "{e}");
}
