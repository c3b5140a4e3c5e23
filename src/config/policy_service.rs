//! `[policy_service]`: Postfix's SMTPD access policy delegation, the second
//! front end of the same policy. Absent (no `listen`) means off.

use super::bounds::{secs, DAY};
use super::context::Section;
use super::milter::{socket_mode, unique_endpoints};
use super::raw;
use super::ConfigError;
use crate::milter::Endpoint;
use crate::policy_delegation::{Limits, PolicyServiceSettings, Timeouts};
use crate::server::ListenSettings;

/// `[policy_service]` with what it shares with `[milter]`: the shutdown
/// deadline, and the milter's endpoints, which it must not take.
pub(super) struct PolicyServiceInput<'a> {
    pub raw: raw::RawPolicyService,
    pub milter_endpoints: &'a [Endpoint],
    pub shutdown_timeout: std::time::Duration,
}

/// `None` when the section names no endpoint.
pub(super) struct PolicyService(pub Option<PolicyServiceSettings>);

impl TryFrom<Section<'_, PolicyServiceInput<'_>>> for PolicyService {
    type Error = ConfigError;

    fn try_from(
        Section { raw: input, cx }: Section<'_, PolicyServiceInput<'_>>,
    ) -> Result<Self, ConfigError> {
        let t = "policy_service";
        let p = input.raw;
        cx.bounded(t, "max_connections", p.max_connections, 1..=1_000_000)?;
        cx.bounded(t, "idle_timeout", p.idle_timeout.0, secs(1)..=DAY)?;
        let request_timeout = cx.bounded(t, "request_timeout", p.request_timeout.0, secs(1)..=secs(300))?;
        cx.bounded(t, "max_request_bytes", p.max_request_bytes, 1024..=1 << 20)?;
        cx.bounded(t, "max_attributes", p.max_attributes, 16..=4096)?;
        let endpoints: Vec<Endpoint> = p.listen.into_iter().map(|e| e.0).collect();
        let socket_mode = socket_mode(cx, t, &p.socket_mode, &endpoints)?;
        unique_endpoints(cx, t, &endpoints)?;
        if let Some(e) = endpoints.iter().find(|e| input.milter_endpoints.contains(e)) {
            return Err(cx.err(format!(
                "{}policy_service.listen names {e}, which milter.listen has: one socket speaks one protocol",
                cx.keys.at(t, "listen")
            )));
        }
        if endpoints.is_empty() {
            return Ok(PolicyService(None));
        }
        Ok(PolicyService(Some(PolicyServiceSettings {
            listen: ListenSettings {
                endpoints,
                socket_mode,
                max_connections: p.max_connections,
                shutdown_timeout: input.shutdown_timeout,
            },
            limits: Limits {
                max_request_bytes: p.max_request_bytes,
                max_attributes: p.max_attributes,
            },
            timeouts: Timeouts {
                idle: p.idle_timeout.0,
                request: request_timeout,
            },
        })))
    }
}
