//! `[milter]` and `[log]`: how gatehouse serves, and what it logs.

use std::collections::HashSet;
use std::time::Duration;

use super::bounds::{secs, DAY};
use super::context::Section;
use super::raw::{self, LogFormat};
use super::ConfigError;
use crate::milter::Endpoint;
use crate::policy::{DirectoryErrorAction, Mode};
use crate::server::ServerSettings;

/// `[milter]`, validated: the server's settings and the policy-wide ones.
pub(super) struct MilterSettings {
    pub server: ServerSettings,
    pub mode: Mode,
    pub on_directory_error: DirectoryErrorAction,
    pub decision_timeout: Duration,
}

impl TryFrom<Section<'_, raw::RawMilter>> for MilterSettings {
    type Error = ConfigError;

    fn try_from(Section { raw: m, cx }: Section<'_, raw::RawMilter>) -> Result<Self, ConfigError> {
        let t = "milter";
        cx.bounded(t, "max_connections", m.max_connections, 1..=1_000_000)?;
        cx.bounded(t, "idle_timeout", m.idle_timeout.0, secs(1)..=DAY)?;
        cx.bounded(t, "shutdown_timeout", m.shutdown_timeout.0, secs(0)..=secs(3600))?;
        cx.bounded(t, "max_packet_size", m.max_packet_size, 65536..=64 << 20)?;
        cx.bounded(t, "max_macro_bytes", m.max_macro_bytes, 1024..=m.max_packet_size)?;
        cx.bounded(t, "max_read_rate", m.max_read_rate, 65536..=1 << 30)?;
        let decision_timeout = cx.bounded(
            t,
            "decision_timeout",
            m.decision_timeout.0,
            Duration::from_millis(100)..=secs(60),
        )?;
        if decision_timeout >= Duration::from_secs(10) {
            cx.warn(format!(
                "milter.decision_timeout = {decision_timeout:?} is not below the shipped MTA timeouts (Postfix milter_command_timeout = 10s, Sendmail T=S:10s): the MTA may give up first and apply its own default action"
            ));
        }
        let endpoints: Vec<Endpoint> = m.listen.into_iter().map(|e| e.0).collect();
        let socket_mode = socket_mode(cx, t, &m.socket_mode, &endpoints)?;
        unique_endpoints(cx, t, &endpoints)?;
        Ok(MilterSettings {
            server: ServerSettings {
                endpoints,
                socket_mode,
                max_connections: m.max_connections,
                idle_timeout: m.idle_timeout.0,
                shutdown_timeout: m.shutdown_timeout.0,
                max_packet_size: m.max_packet_size,
                max_macro_bytes: m.max_macro_bytes,
                max_read_rate: m.max_read_rate,
            },
            mode: m.mode,
            on_directory_error: m.on_directory_error,
            decision_timeout,
        })
    }
}

/// `TABLE.socket_mode`: an octal mode; one that lets every local user
/// connect to a unix socket draws a warning.
pub(super) fn socket_mode(
    cx: &super::context::Context<'_>,
    table: &str,
    raw: &str,
    endpoints: &[Endpoint],
) -> Result<u32, ConfigError> {
    let mode = u32::from_str_radix(raw.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            cx.err(format!(
                "{table}.socket_mode = {raw:?} is not an octal file mode like \"0660\""
            ))
        })?;
    if mode & 0o002 != 0 && endpoints.iter().any(|e| matches!(e, Endpoint::Unix(_))) {
        cx.warn(format!(
            "{}{table}.socket_mode = {raw:?} lets every local user talk to gatehouse as the MTA (use 0660 and the MTA's group)",
            cx.keys.at(table, "socket_mode"),
        ));
    }
    Ok(mode)
}

/// `TABLE.listen` names each endpoint once.
pub(super) fn unique_endpoints(
    cx: &super::context::Context<'_>,
    table: &str,
    endpoints: &[Endpoint],
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for e in endpoints {
        if !seen.insert(e.to_string()) {
            return Err(cx.err(format!("{table}.listen names {e} twice")));
        }
    }
    Ok(())
}

/// `[log]`, validated.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
    /// Accepted decisions are logged at info with every field too (for
    /// `gatehouse replay`), not only refusals.
    pub accepted: bool,
}

impl TryFrom<Section<'_, raw::RawLog>> for LogSettings {
    type Error = ConfigError;

    fn try_from(Section { raw, cx }: Section<'_, raw::RawLog>) -> Result<Self, ConfigError> {
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        if !LEVELS.contains(&raw.level.as_str()) {
            return Err(cx.err(format!(
                "{}log.level = {:?} is not one of {}",
                cx.keys.at("log", "level"),
                raw.level,
                LEVELS.join(", ")
            )));
        }
        Ok(LogSettings {
            format: raw.format,
            level: raw.level,
            accepted: raw.accepted,
        })
    }
}
