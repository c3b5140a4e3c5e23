//! The configuration file: TOML → validated, immutable structs, one type
//! per section, each built by its own `TryFrom` (one file per section).
//!
//! Field-level errors (a bad duration, network, socket or enum value, an
//! unknown key) are raised while deserializing, so the toml crate names the
//! line, column and key. Numbers and durations are checked against their
//! ranges with the line of their key. Cross-field errors (duplicate
//! listener, ambiguous matches, undefined group) carry the span of the table
//! they are about and are reported with its line number.

mod addresses;
mod bounds;
mod context;
mod directory;
mod listeners;
mod metrics;
mod milter;
pub use metrics::MetricsSettings;
mod policy_service;
mod raw;
mod recipients;
mod relay_safety;
mod replies;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::directory::{CacheSettings, Directory};
use crate::policy::{AddressSettings, DirectoryErrorAction, DomainPattern, Mode, Policy, Replies};
use crate::policy_delegation::PolicyServiceSettings;
use crate::server::ServerSettings;

pub use directory::DirectorySettings;
pub use milter::LogSettings;
pub use raw::{Dur, LogFormat};

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

/// A loaded configuration.
pub struct Config {
    pub path: PathBuf,
    pub server: ServerSettings,
    /// `[policy_service]`, when it names an endpoint.
    pub policy_service: Option<PolicyServiceSettings>,
    /// `[metrics]`, when it names an address.
    pub metrics: Option<metrics::MetricsSettings>,
    pub log: LogSettings,
    pub policy: Arc<Policy>,
    pub directory: DirectorySettings,
    /// Legal but risky settings, for the log and `check`.
    pub warnings: Vec<String>,
}

impl Config {
    /// The directory of this configuration (see [`DirectorySettings::build`]).
    pub fn build_directory(&self) -> Result<Arc<Directory>, ConfigError> {
        let groups = self.policy.group_references();
        self.directory
            .build()
            .map(|d| Arc::new(d.with_rule_groups(groups.iter().map(|(name, _)| name.as_str()))))
            .map_err(|message| ConfigError {
                file: self.path.clone(),
                message,
            })
    }
}

static VERSION: AtomicU64 = AtomicU64::new(0);

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&source, path)
}

/// Parse and validate `source` (read from `path`, used in messages).
pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigError> {
    let cx = context::Context::new(path, source);
    let raw: raw::RawConfig =
        toml::from_str(source).map_err(|e| cx.err(e.to_string().trim_end().to_string()))?;

    let log = LogSettings::try_from(cx.section(raw.log))?;
    let milter = milter::MilterSettings::try_from(cx.section(raw.milter))?;
    let policy_service =
        policy_service::PolicyService::try_from(cx.section(policy_service::PolicyServiceInput {
            raw: raw.policy_service,
            milter_endpoints: &milter.server.endpoints,
            shutdown_timeout: milter.server.shutdown_timeout,
        }))?
        .0;
    if milter.server.endpoints.is_empty() && policy_service.is_none() {
        return Err(cx.err(
            "milter.listen is empty and there is no policy_service.listen: gatehouse would serve nothing"
                .into(),
        ));
    }
    let metrics = metrics::Metrics::try_from(cx.section(raw.metrics))?.0;
    let cache = CacheSettings::try_from(cx.section(raw.cache))?;
    let directory = DirectorySettings::try_from(cx.section((raw.directory, cache)))?;
    let local_domains: Vec<DomainPattern> = raw.domains.local.into_iter().map(|d| d.0).collect();
    if local_domains.is_empty() {
        cx.warn("domains.local is empty: every recipient counts as relaying".into());
    }
    let addresses = AddressSettings::try_from(cx.section((raw.addresses, &local_domains[..])))?;
    if policy_service.is_some() && addresses.local_delivery_domains.is_empty() && !local_domains.is_empty() {
        cx.warn(
            "policy_service is on and addresses.local_delivery_domains is empty: Postfix does not tell a policy service where it delivers, so a recipient at one of Postfix's own names (mydestination) that is under domains.local is not judged as the same local part in default_domain; list those names".into(),
        );
    }
    let limits = relay_safety::TrustLimits::try_from(cx.section(raw.safety))?;
    let mut endpoints = milter.server.endpoints.clone();
    if let Some(p) = &policy_service {
        endpoints.extend(p.listen.endpoints.iter().cloned());
    }
    let scope = listeners::ListenerScope {
        directory: &directory,
        endpoints: &endpoints,
        limits,
    };
    let listeners = listeners::Listeners::try_from(cx.section((raw.listener, scope)))?;
    let recipients = recipients::Recipients::try_from(cx.section((raw.recipient, &directory)))?;
    let replies = Replies::try_from(cx.section(raw.replies))?;

    let policy = Policy {
        version: VERSION.fetch_add(1, Ordering::Relaxed) + 1,
        mode: milter.mode,
        on_directory_error: milter.on_directory_error,
        decision_timeout: milter.decision_timeout,
        local_domains,
        addresses,
        listeners: listeners.listeners,
        default_listener: listeners.default_listener,
        recipients: recipients.0,
        replies,
        log_accepted: log.accepted,
    };
    Ok(Config {
        path: path.to_path_buf(),
        server: milter.server,
        policy_service,
        metrics,
        log,
        policy: Arc::new(policy),
        directory,
        warnings: cx.into_warnings(),
    })
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

impl DirectoryErrorAction {
    pub fn name(self) -> &'static str {
        match self {
            DirectoryErrorAction::Tempfail => "tempfail",
            DirectoryErrorAction::Accept => "accept",
            DirectoryErrorAction::Reject => "reject",
        }
    }
}
