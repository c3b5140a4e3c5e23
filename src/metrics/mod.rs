//! Prometheus metrics (`[metrics] listen`): counters kept by the parts that
//! count (decisions where every decision is logged, connections in the
//! accept loop and the session, directory operations in the LDAP backend),
//! values read at scrape time from the running snapshot (cache counters,
//! config version, the change follower), served as the text exposition
//! format at `/metrics` ([`http`]). Labels are listener names, rule names,
//! actions, server URLs and kinds of event: all bounded by the
//! configuration, never a user, an address or a client.

pub mod http;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::enforcer::Enforcer;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub listener: String,
    /// `mail` or `rcpt`.
    pub stage: &'static str,
    pub rule: &'static str,
    /// `accept`, `reject` or `tempfail`.
    pub action: &'static str,
    /// `true` in monitor mode: the refusal was logged, not sent.
    pub monitored: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `milter` or `policy`.
    pub service: &'static str,
    /// `opened`, `refused` (connection limit), `idle_closed`, `protocol_error`.
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolErrorLabels {
    pub service: &'static str,
    /// `frame`, `truncated`, `io`, `session`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
    /// `ok`, `error` (the server answered with an error), `unreachable`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `applied` or `refused`.
    pub result: &'static str,
}

/// The counters the daemon keeps, one set per process.
pub struct Metrics {
    pub decisions: Family<DecisionLabels, Counter>,
    pub decision_seconds: Family<ServiceLabel, Histogram>,
    pub connections: Family<ConnectionLabels, Counter>,
    pub connections_open: Family<ServiceLabel, Gauge>,
    pub protocol_errors: Family<ProtocolErrorLabels, Counter>,
    pub directory_operations: Family<ServerLabels, Counter>,
    pub directory_seconds: Family<ServerLabel, Histogram>,
    pub directory_failovers: Family<ServerLabel, Counter>,
    pub reloads: Family<ResultLabel, Counter>,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// The process's counters (created on first use; counting is a few atomic
/// operations whether or not anything scrapes them).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = new_metrics();
        // Every series whose labels are known in advance is shown from the
        // start, at 0: a rate over a series that appears only with its
        // first event misses that event, and an alert on an absent series
        // never fires.
        for service in ["milter", "policy"] {
            for event in ["opened", "refused", "idle_closed", "protocol_error"] {
                let _ = m.connections.get_or_create(&ConnectionLabels { service, event });
            }
            let _ = m.connections_open.get_or_create(&ServiceLabel { service });
            let _ = m.decision_seconds.get_or_create(&ServiceLabel { service });
        }
        for kind in ["frame", "truncated", "io", "session"] {
            let _ = m.protocol_errors.get_or_create(&ProtocolErrorLabels {
                service: "milter",
                kind,
            });
        }
        let _ = m.protocol_errors.get_or_create(&ProtocolErrorLabels {
            service: "policy",
            kind: "request",
        });
        for result in ["applied", "refused"] {
            let _ = m.reloads.get_or_create(&ResultLabel { result });
        }
        m
    })
}

/// A directory server's series, at 0, as soon as the backend knows it.
pub fn know_directory_server(server: &str) {
    let m = metrics();
    for result in ["ok", "error", "unreachable"] {
        let _ = m.directory_operations.get_or_create(&ServerLabels {
            server: server.to_string(),
            result,
        });
    }
    let label = ServerLabel {
        server: server.to_string(),
    };
    let _ = m.directory_seconds.get_or_create(&label);
    let _ = m.directory_failovers.get_or_create(&label);
}

fn new_metrics() -> Metrics {
    Metrics {
        decisions: Family::default(),
        decision_seconds: Family::new_with_constructor(latency_histogram),
        connections: Family::default(),
        connections_open: Family::default(),
        protocol_errors: Family::default(),
        directory_operations: Family::default(),
        directory_seconds: Family::new_with_constructor(latency_histogram),
        directory_failovers: Family::default(),
        reloads: Family::default(),
    }
}

/// One decision, as [`crate::enforcer`] logs it.
///
/// Counted on every MAIL and RCPT, so through a small per-thread list of
/// the counters already used: the family's lookup (a label set built with
/// an owned listener name, hashed, under a lock both workers share) runs
/// once per thread and label set, not once per decision. The list holds at
/// most [`CACHED_DECISION_SERIES`]; further label sets count through the
/// family directly.
pub fn count_decision(
    listener: &str,
    stage: &'static str,
    rule: &'static str,
    action: &'static str,
    monitored: bool,
) {
    let monitored = if monitored { "true" } else { "false" };
    let same = |l: &DecisionLabels| {
        l.rule == rule
            && l.action == action
            && l.stage == stage
            && l.monitored == monitored
            && l.listener == listener
    };
    let labels = || DecisionLabels {
        listener: listener.to_string(),
        stage,
        rule,
        action,
        monitored,
    };
    DECISION_COUNTERS.with_borrow_mut(|cached| {
        if let Some((_, counter)) = cached.iter().find(|(l, _)| same(l)) {
            counter.inc();
            return;
        }
        let labels = labels();
        let counter = metrics().decisions.get_or_create(&labels).clone();
        counter.inc();
        if cached.len() < CACHED_DECISION_SERIES {
            cached.push((labels, counter));
        }
    });
}

/// Label sets of decisions one thread keeps the counter of (listeners ×
/// the rules that decide in practice × actions: a few dozen).
const CACHED_DECISION_SERIES: usize = 128;

thread_local! {
    static DECISION_COUNTERS: std::cell::RefCell<Vec<(DecisionLabels, Counter)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A decision's latency. The two services' histograms are looked up once.
pub fn observe_decision(service: &'static str, took: Duration) {
    static BY_SERVICE: OnceLock<[(&'static str, Histogram); 2]> = OnceLock::new();
    let histograms = BY_SERVICE.get_or_init(|| {
        ["milter", "policy"].map(|service| {
            let h = metrics()
                .decision_seconds
                .get_or_create(&ServiceLabel { service });
            (service, h.clone())
        })
    });
    let seconds = took.as_secs_f64();
    match histograms.iter().find(|(s, _)| *s == service) {
        Some((_, h)) => h.observe(seconds),
        None => metrics()
            .decision_seconds
            .get_or_create(&ServiceLabel { service })
            .observe(seconds),
    }
}

pub fn count_connection(service: &'static str, event: &'static str) {
    metrics()
        .connections
        .get_or_create(&ConnectionLabels { service, event })
        .inc();
}

/// A connection is open while this is alive.
pub struct OpenConnection(&'static str);

impl OpenConnection {
    pub fn new(service: &'static str) -> Self {
        count_connection(service, "opened");
        metrics()
            .connections_open
            .get_or_create(&ServiceLabel { service })
            .inc();
        OpenConnection(service)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics()
            .connections_open
            .get_or_create(&ServiceLabel { service: self.0 })
            .dec();
    }
}

pub fn count_protocol_error(service: &'static str, kind: &'static str) {
    count_connection(service, "protocol_error");
    metrics()
        .protocol_errors
        .get_or_create(&ProtocolErrorLabels { service, kind })
        .inc();
}

pub fn count_directory_operation(server: &str, result: &'static str, took: Duration) {
    let m = metrics();
    m.directory_operations
        .get_or_create(&ServerLabels {
            server: server.to_string(),
            result,
        })
        .inc();
    m.directory_seconds
        .get_or_create(&ServerLabel {
            server: server.to_string(),
        })
        .observe(took.as_secs_f64());
}

pub fn count_failover(server: &str) {
    metrics()
        .directory_failovers
        .get_or_create(&ServerLabel {
            server: server.to_string(),
        })
        .inc();
}

pub fn count_reload(applied: bool) {
    let result = if applied { "applied" } else { "refused" };
    metrics().reloads.get_or_create(&ResultLabel { result }).inc();
}

/// Everything `/metrics` shows: the counters, and the values read from the
/// running snapshot at each scrape.
pub fn registry(enforcer: Arc<Enforcer>) -> Registry {
    let m = metrics();
    let mut r = Registry::with_prefix("gatehouse");
    r.register(
        "decisions",
        "Decisions by listener, stage, rule and action (monitored: refusals logged, not sent)",
        m.decisions.clone(),
    );
    r.register(
        "decision_duration_seconds",
        "Time from an MTA's command to gatehouse's answer, directory lookups included",
        m.decision_seconds.clone(),
    );
    r.register(
        "connections",
        "MTA connections: opened, refused at the connection limit, closed idle, closed on a protocol error",
        m.connections.clone(),
    );
    r.register(
        "connections_open",
        "MTA connections open now",
        m.connections_open.clone(),
    );
    r.register(
        "protocol_errors",
        "Connections closed on a protocol error, by kind",
        m.protocol_errors.clone(),
    );
    r.register(
        "directory_operations",
        "Directory searches by server and result",
        m.directory_operations.clone(),
    );
    r.register(
        "directory_operation_duration_seconds",
        "Directory search time by server",
        m.directory_seconds.clone(),
    );
    r.register(
        "directory_failovers",
        "Connections opened on a server other than the first of urls",
        m.directory_failovers.clone(),
    );
    r.register("reloads", "SIGHUP reloads by result", m.reloads.clone());
    r.register_collector(Box::new(Snapshot(enforcer)));
    r
}

/// The values the running snapshot holds, read at scrape time.
#[derive(Debug)]
struct Snapshot(Arc<Enforcer>);

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enforcer")
    }
}

impl prometheus_client::collector::Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.0.snapshot();
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: i64| {
            let g = ConstGauge::new(v);
            let e = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(e)
        };
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
            let c = ConstCounter::new(v);
            let e = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(e)
        };
        gauge(
            &mut encoder,
            "config_version",
            "Version of the configuration in force (1 at start, +1 per applied reload)",
            i64::try_from(snap.policy.version).unwrap_or(i64::MAX),
        )?;
        let directory = &snap.directory;
        if let Some([hits, misses, queries, errors, stale]) = directory.counters() {
            for (name, help, v) in [
                ("directory_cache_hits", "Lookups answered from the cache", hits),
                (
                    "directory_cache_misses",
                    "Lookups the cache could not answer",
                    misses,
                ),
                (
                    "directory_cache_queries",
                    "Lookups sent to the directory",
                    queries,
                ),
                ("directory_cache_errors", "Directory lookups that failed", errors),
                (
                    "directory_cache_stale_served",
                    "Expired entries served while the directory was unavailable",
                    stale,
                ),
            ] {
                counter(&mut encoder, name, help, v)?;
            }
            gauge(
                &mut encoder,
                "directory_cache_entries",
                "Users cached now",
                i64::try_from(directory.cached_users()).unwrap_or(i64::MAX),
            )?;
            let (changes, flushes) = directory.follow_counters();
            counter(
                &mut encoder,
                "directory_changes_followed",
                "Directory changes the change follower applied",
                changes,
            )?;
            counter(
                &mut encoder,
                "directory_cache_flushes",
                "Cache flushes by the change follower (a gap it could not account for)",
                flushes,
            )?;
            gauge(
                &mut encoder,
                "directory_following",
                "1 while every followed subtree is followed",
                i64::from(directory.following()),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions(listener: &str, rule: &'static str, action: &'static str) -> u64 {
        metrics()
            .decisions
            .get_or_create(&DecisionLabels {
                listener: listener.into(),
                stage: "rcpt",
                rule,
                action,
                monitored: "false",
            })
            .get()
    }

    /// The per-thread list of counters counts into the family's series:
    /// each label set its own, on every thread, also past the list's size.
    #[test]
    fn cached_decision_counters_count_into_their_own_series() {
        let before = (
            decisions("cache-test-a", "relay", "accept"),
            decisions("cache-test-b", "relay", "accept"),
            decisions("cache-test-a", "relay", "reject"),
        );
        for _ in 0..3 {
            count_decision("cache-test-a", "rcpt", "relay", "accept", false);
        }
        count_decision("cache-test-b", "rcpt", "relay", "accept", false);
        std::thread::spawn(|| count_decision("cache-test-a", "rcpt", "relay", "reject", false))
            .join()
            .unwrap();
        // Fill this thread's list, then count beyond it.
        let names: Vec<String> = (0..CACHED_DECISION_SERIES + 5)
            .map(|i| format!("cache-test-fill-{i}"))
            .collect();
        for n in &names {
            count_decision(n, "rcpt", "relay", "accept", false);
        }
        count_decision("cache-test-b", "rcpt", "relay", "accept", false);
        for n in &names {
            count_decision(n, "rcpt", "relay", "accept", false);
        }
        assert_eq!(
            (
                decisions("cache-test-a", "relay", "accept"),
                decisions("cache-test-b", "relay", "accept"),
                decisions("cache-test-a", "relay", "reject"),
            ),
            (before.0 + 3, before.1 + 2, before.2 + 1)
        );
        for n in &names {
            assert_eq!(decisions(n, "relay", "accept"), 2, "{n}");
        }
    }
}
