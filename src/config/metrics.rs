//! `[metrics]`: the Prometheus endpoint, off unless `listen` is set.

use std::net::SocketAddr;

use super::context::Section;
use super::raw;
use super::ConfigError;

/// Where `/metrics` is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    pub listen: SocketAddr,
}

/// `None` when the section names no address.
pub(super) struct Metrics(pub Option<MetricsSettings>);

impl TryFrom<Section<'_, raw::RawMetrics>> for Metrics {
    type Error = ConfigError;

    fn try_from(Section { raw, cx }: Section<'_, raw::RawMetrics>) -> Result<Self, ConfigError> {
        let Some(listen) = raw.listen else {
            return Ok(Metrics(None));
        };
        let span = listen.span();
        let text = listen.into_inner();
        let listen: SocketAddr = text.parse().map_err(|_| {
            cx.at(
                span,
                format!("metrics.listen: {text:?} is not an IP address and port (e.g. \"127.0.0.1:9464\")"),
            )
        })?;
        if !listen.ip().is_loopback() {
            cx.warn(format!(
                "metrics.listen = \"{listen}\" is not a loopback address: anyone who reaches it reads listener names and traffic counts (firewall it, or scrape through a local agent)"
            ));
        }
        Ok(Metrics(Some(MetricsSettings { listen })))
    }
}
