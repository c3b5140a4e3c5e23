//! Postfix's SMTPD access policy delegation (`check_policy_service`): the
//! second front end of the same policy. The codec turns bytes into
//! requests, the connection owns buffering and time limits, and
//! [`PolicyService`] serves connections on the shared accept loop
//! ([`crate::server`]), asking a [`Delegate`] (the enforcer) for each
//! answer.
//!
//! Postfix keeps one connection per smtpd process across SMTP sessions and
//! asks one question per restriction that names the service; it sends
//! `instance`, the same for every request of one mail transaction.

pub mod client;
pub mod codec;
pub mod connection;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

pub use codec::{Limits, Request};
pub use connection::{PolicyConnection, PolicyConnectionError, Timeouts};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::milter::endpoint::MilterStream;
use crate::server::throttle::Throttle;
use crate::server::{ListenSettings, Service};

/// `[policy_service]`, validated.
#[derive(Debug, Clone)]
pub struct PolicyServiceSettings {
    pub listen: ListenSettings,
    pub limits: Limits,
    pub timeouts: Timeouts,
}

/// What answers requests: the policy, through the enforcer.
pub trait Delegate: Send + Sync + 'static {
    /// What one connection keeps between requests (the transaction).
    type State: Default + Send;

    /// The action for `request` (`DUNNO`, or a reply `NNN X.Y.Z text`),
    /// one line. `socket` is the listener the request came in on.
    fn answer(
        &self,
        state: &mut Self::State,
        request: &Request,
        socket: &str,
    ) -> impl Future<Output = String> + Send;
}

/// The policy-delegation protocol on its listeners.
pub struct PolicyService<D> {
    pub delegate: Arc<D>,
    pub settings: PolicyServiceSettings,
}

static IDLE_CLOSED: Throttle = Throttle::new(30);
static PROTOCOL_ERROR: Throttle = Throttle::new(30);

impl<D: Delegate> Service for PolicyService<D> {
    const CONNECTION: &'static str = "policy connection";
    const METRIC: &'static str = "policy";

    async fn serve_connection(self: Arc<Self>, stream: MilterStream, peer: String, socket: Arc<str>) {
        serve_connection(stream, &*self.delegate, &self.settings, &peer, &socket).await
    }
}

/// Answer requests on one connection until it ends. Every way it can end
/// is logged once (throttled), naming the peer.
pub async fn serve_connection<S, D>(
    stream: S,
    delegate: &D,
    settings: &PolicyServiceSettings,
    peer: &str,
    socket: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    D: Delegate,
{
    let mut conn = PolicyConnection::new(stream, settings.limits, settings.timeouts);
    let mut state = D::State::default();
    loop {
        let request = match conn.read_request().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::debug!(peer = %peer, "policy connection closed by the MTA");
                return;
            }
            Err(PolicyConnectionError::Idle(t)) => {
                crate::metrics::count_connection("policy", "idle_closed");
                if let Some(left_out) = IDLE_CLOSED.admit(Instant::now()) {
                    tracing::info!(peer = %peer, idle = ?t, left_out, "closing idle policy connection");
                }
                return;
            }
            Err(e) => {
                crate::metrics::count_protocol_error("policy", "request");
                if let Some(left_out) = PROTOCOL_ERROR.admit(Instant::now()) {
                    tracing::warn!(peer = %peer, socket = %socket, error = %e, left_out, "policy protocol error: closing the connection (Postfix applies smtpd_policy_service_default_action)");
                }
                return;
            }
        };
        // Boxed: the decision's state machine stays off the memory of
        // every idle connection task.
        let action = Box::pin(delegate.answer(&mut state, &request, socket)).await;
        if let Err(e) = conn.write_action(&action).await {
            tracing::debug!(peer = %peer, error = %e, "policy answer not delivered");
            return;
        }
    }
}
