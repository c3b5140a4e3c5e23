//! The accept loop: listeners, the connection limit, one task per
//! connection, and graceful shutdown, for any [`Service`] (the milter, and
//! Postfix's policy delegation).
//!
//! Shutdown: stop accepting, remove unix sockets, then wait until every
//! session has ended or `shutdown_timeout` has passed. A session's task holds
//! one permit of the connection semaphore, so "all permits back" means "all
//! sessions ended".

use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};

pub(crate) mod throttle;

use throttle::Throttle;

use crate::milter::connection::{Connection, ConnectionError};
use crate::milter::endpoint::MilterStream;
use crate::milter::session::{wanted_names, Handler, Session, Step};
use crate::milter::Endpoint;

/// Server settings taken from `[milter]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub endpoints: Vec<Endpoint>,
    pub socket_mode: u32,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub max_packet_size: usize,
    /// Bytes of macros (and sender) one connection may keep.
    pub max_macro_bytes: usize,
    /// Bytes per second one connection is read at, on average.
    pub max_read_rate: u64,
}

impl ServerSettings {
    pub fn listen(&self) -> ListenSettings {
        ListenSettings {
            endpoints: self.endpoints.clone(),
            socket_mode: self.socket_mode,
            max_connections: self.max_connections,
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}

/// What the accept loop needs to know of any service.
#[derive(Debug, Clone)]
pub struct ListenSettings {
    pub endpoints: Vec<Endpoint>,
    pub socket_mode: u32,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

/// A protocol served on listeners: called once per accepted connection,
/// in that connection's own task.
pub trait Service: Send + Sync + 'static {
    /// What the log calls one of its connections ("milter connection").
    const CONNECTION: &'static str;
    /// The `service` label of its metrics.
    const METRIC: &'static str;

    /// Serve one connection to its end. `peer` names it in the log;
    /// `socket` is the listener it came in on, in config notation.
    fn serve_connection(
        self: Arc<Self>,
        stream: MilterStream,
        peer: String,
        socket: Arc<str>,
    ) -> impl Future<Output = ()> + Send;
}

/// The milter on its listeners: sessions of `H` over [`run_session`].
struct MilterService<H> {
    handler: Arc<H>,
    settings: ServerSettings,
    wanted: Arc<[Bytes]>,
}

impl<H: Handler> Service for MilterService<H> {
    const CONNECTION: &'static str = "milter connection";
    const METRIC: &'static str = "milter";

    async fn serve_connection(self: Arc<Self>, stream: MilterStream, peer: String, socket: Arc<str>) {
        let session = Session::with_wanted(self.handler.clone(), socket, peer, self.wanted.clone())
            .with_macro_budget(self.settings.max_macro_bytes);
        run_session(stream, session, &self.settings).await
    }
}

enum BoundListener {
    Tcp(TcpListener),
    /// The guard removes the socket file when the listener is dropped.
    Unix(UnixListener, #[allow(dead_code)] UnixSocketGuard),
}

/// Removes the socket file when the listener goes away.
struct UnixSocketGuard(PathBuf);

impl Drop for UnixSocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every endpoint of one service, bound and not yet accepting.
pub struct Listeners(Vec<(Endpoint, BoundListener)>);

/// Bind every endpoint; fail if any cannot be bound, so a typo is not a silent
/// half-configured server.
pub async fn bind(settings: &ListenSettings) -> io::Result<Listeners> {
    let mut out = Vec::new();
    for endpoint in &settings.endpoints {
        let listener = match endpoint {
            Endpoint::Inet(addr) => BoundListener::Tcp(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {endpoint}: {e}")))?,
            ),
            Endpoint::Unix(path) => {
                remove_stale_socket(path)?;
                let l = UnixListener::bind(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {endpoint}: {e}")))?;
                let guard = UnixSocketGuard(path.clone());
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(settings.socket_mode))?;
                BoundListener::Unix(l, guard)
            }
        };
        out.push((endpoint.clone(), listener));
    }
    Ok(Listeners(out))
}

/// A socket file left by a crashed gatehouse is replaced; a live one (someone
/// answers) is an error, never silently stolen.
fn remove_stale_socket(path: &PathBuf) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if !meta.file_type().is_socket() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            )),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing stale socket");
                std::fs::remove_file(path)
            }
        },
    }
}

/// Serve the milter until `shutdown` completes, then drain sessions.
pub async fn serve<H: Handler>(
    settings: ServerSettings,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listeners = bind(&settings.listen()).await?;
    serve_milter_on(listeners, settings, handler, shutdown).await;
    Ok(())
}

/// Serve the milter on listeners already bound (the daemon binds every
/// service's first, then tells the service manager it is ready).
pub async fn serve_milter_on<H: Handler>(
    listeners: Listeners,
    settings: ServerSettings,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) {
    let listen = settings.listen();
    let wanted = wanted_names(&handler.macro_request());
    let service = MilterService {
        handler,
        settings,
        wanted,
    };
    serve_on(listeners, listen, Arc::new(service), shutdown).await
}

/// Serve `service` on every endpoint until `shutdown` completes, then
/// drain its sessions.
pub async fn serve_service<S: Service>(
    settings: ListenSettings,
    service: Arc<S>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listeners = bind(&settings).await?;
    serve_on(listeners, settings, service, shutdown).await;
    Ok(())
}

/// Serve `service` on listeners already bound until `shutdown` completes,
/// then drain its sessions.
pub async fn serve_on<S: Service>(
    listeners: Listeners,
    settings: ListenSettings,
    service: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let settings = Arc::new(settings);
    let mut accept_tasks = Vec::new();
    for (endpoint, listener) in listeners.0 {
        match &listener {
            // The address bound, which differs for port 0 (tests, or an
            // admin letting the kernel choose).
            BoundListener::Tcp(l) => match l.local_addr() {
                Ok(address) => tracing::info!(socket = %endpoint, address = %address, "listening"),
                Err(_) => tracing::info!(socket = %endpoint, "listening"),
            },
            BoundListener::Unix(..) => tracing::info!(socket = %endpoint, "listening"),
        }
        accept_tasks.push(tokio::spawn(accept_loop(
            endpoint,
            listener,
            service.clone(),
            limit.clone(),
            settings.clone(),
            stop_rx.clone(),
        )));
    }
    shutdown.await;
    tracing::info!(service = S::CONNECTION, "shutting down: no new connections");
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        let _ = t.await; // drops the listeners and removes unix sockets
    }
    let in_flight = settings.max_connections - limit.available_permits();
    if in_flight > 0 {
        tracing::info!(sessions = in_flight, deadline = ?settings.shutdown_timeout, service = S::CONNECTION, "waiting for sessions to end");
        let all = limit.acquire_many(settings.max_connections as u32);
        match tokio::time::timeout(settings.shutdown_timeout, all).await {
            Ok(_) => tracing::info!(service = S::CONNECTION, "all sessions ended"),
            Err(_) => tracing::warn!(
                sessions = settings.max_connections - limit.available_permits(),
                service = S::CONNECTION,
                "shutdown deadline reached; closing remaining sessions"
            ),
        }
    }
}

static CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

// One throttle per kind of operational warning a peer can cause, in lines
// per minute.
static ACCEPT_FAILED: Throttle = Throttle::new(10);
static OVER_LIMIT: Throttle = Throttle::new(10);
static IDLE_CLOSED: Throttle = Throttle::new(30);
static PROTOCOL_ERROR: Throttle = Throttle::new(30);
static READ_SLOWED: Throttle = Throttle::new(10);

async fn accept_loop<S: Service>(
    endpoint: Endpoint,
    listener: BoundListener,
    service: Arc<S>,
    limit: Arc<Semaphore>,
    settings: Arc<ListenSettings>,
    mut stop: watch::Receiver<bool>,
) {
    let socket: Arc<str> = Arc::from(endpoint.to_string());
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = accept(&listener, &socket) => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if let Some(left_out) = ACCEPT_FAILED.admit(Instant::now()) {
                    tracing::error!(socket = %socket, error = %e, left_out, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            if let Some(left_out) = OVER_LIMIT.admit(Instant::now()) {
                tracing::warn!(
                    peer = %peer,
                    socket = %socket,
                    max_connections = settings.max_connections,
                    left_out,
                    "connection limit reached: closing new {}",
                    S::CONNECTION
                );
            }
            crate::metrics::count_connection(S::METRIC, "refused");
            drop(stream);
            continue;
        };
        let service = service.clone();
        let socket = socket.clone();
        tokio::spawn(async move {
            let open = crate::metrics::OpenConnection::new(S::METRIC);
            service.serve_connection(stream, peer, socket).await;
            drop(open);
            drop(permit);
        });
    }
}

async fn accept(listener: &BoundListener, socket: &str) -> io::Result<(MilterStream, String)> {
    match listener {
        BoundListener::Tcp(l) => {
            let (s, addr) = l.accept().await?;
            s.set_nodelay(true)?;
            Ok((MilterStream::Tcp(s), addr.to_string()))
        }
        BoundListener::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            // Unix peers have no address: name them by socket and a counter.
            let id = CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
            Ok((MilterStream::Unix(s), format!("{socket}#{id}")))
        }
    }
}

fn protocol_error(peer: &str, error: &dyn std::fmt::Display) {
    if let Some(left_out) = PROTOCOL_ERROR.admit(Instant::now()) {
        tracing::warn!(peer = %peer, error = %error, left_out, "protocol error: closing milter connection");
    }
}

/// Drive one milter connection to its end. Every way it can end is logged
/// once, naming the peer; nothing here can affect another connection.
pub async fn run_session<S, H>(stream: S, mut session: Session<H>, settings: &ServerSettings)
where
    S: AsyncRead + AsyncWrite + crate::milter::connection::WaitReadable + Unpin,
    H: Handler,
{
    let mut conn = Connection::new(stream, settings.max_packet_size, Some(settings.idle_timeout))
        .with_read_rate(settings.max_read_rate);
    loop {
        let command = match conn.read_command().await {
            Ok(Some(c)) => {
                if conn.take_slowed() {
                    if let Some(left_out) = READ_SLOWED.admit(Instant::now()) {
                        tracing::warn!(peer = %session.peer(), max_read_rate = settings.max_read_rate, left_out, "milter peer sends faster than max_read_rate: reading it slower");
                    }
                }
                c
            }
            // Postfix closes without QUIT after connection-level decisions: normal.
            Ok(None) => {
                tracing::debug!(peer = %session.peer(), "milter connection closed by the MTA");
                return;
            }
            Err(ConnectionError::Idle(t)) => {
                crate::metrics::count_connection("milter", "idle_closed");
                if let Some(left_out) = IDLE_CLOSED.admit(Instant::now()) {
                    tracing::info!(peer = %session.peer(), idle = ?t, left_out, "closing idle milter connection");
                }
                return;
            }
            Err(e) => {
                let kind = match e {
                    ConnectionError::Frame(_) => "frame",
                    ConnectionError::Truncated(_) => "truncated",
                    _ => "io",
                };
                crate::metrics::count_protocol_error("milter", kind);
                protocol_error(session.peer(), &e);
                return;
            }
        };
        match session.handle(command).await {
            Ok(Step::Reply(reply)) => conn.queue_reply(&reply),
            Ok(Step::Silent) => {}
            Ok(Step::Close) => {
                let _ = conn.flush().await;
                return;
            }
            Err(e) => {
                crate::metrics::count_protocol_error("milter", "session");
                protocol_error(session.peer(), &e);
                return;
            }
        }
    }
}
