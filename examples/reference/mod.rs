//! What the benchmark reference servers share: serving one endpoint, named
//! on the command line, on gatehouse's own accept loop, until killed.

use std::sync::Arc;
use std::time::Duration;

use gatehouse::milter::Endpoint;
use gatehouse::server::{serve_service, ListenSettings, Service};

/// Serve `service` on the endpoint given as the first argument (`default`
/// without one); exits with a message naming `program` on a bad endpoint
/// or one that cannot be bound.
pub async fn serve_from_args<S: Service>(program: &str, default: &str, service: S) {
    let arg = std::env::args().nth(1).unwrap_or_else(|| default.into());
    let endpoint = Endpoint::parse(&arg).unwrap_or_else(|e| {
        eprintln!("{program}: {e}");
        std::process::exit(2)
    });
    let settings = ListenSettings {
        endpoints: vec![endpoint],
        socket_mode: 0o666,
        max_connections: 4096,
        shutdown_timeout: Duration::from_secs(1),
    };
    if let Err(e) = serve_service(settings, Arc::new(service), std::future::pending()).await {
        eprintln!("{program}: {e}");
        std::process::exit(1)
    }
}
