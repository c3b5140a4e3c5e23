//! A real OpenLDAP `slapd` for the LDAP directory tests: the Rust twin of
//! `tests/ldap/slapd.sh` (read that script's header for the manual version).
//!
//! Each [`Slapd`] gets its own temporary folder holding a cn=config built
//! with `slapadd -n0` from `tests/ldap/config.ldif`, an mdb database, and the
//! server's log. slapd listens on a free loopback port only, runs without
//! detaching (`-d none`), and is stopped through its PID. Its ports are
//! picked among those nobody listens on and handed to slapd to bind itself;
//! when another process took one first, slapd fails to bind and is started
//! again on other ports (never a port bound here and released for slapd). The test data
//! (`tests/ldap/data.ldif`, then `tests/ldap/big.ldif`) is loaded with
//! `ldapadd` over LDAP, because the memberof overlay fills `memberOf` only on
//! LDAP writes, never on `slapadd`.
//!
//! Needs `slapd` and `slapadd` (Debian package slapd), `ldapadd` and
//! `ldapmodify` (ldap-utils), `openssl` for TLS: `scripts/install-test-deps.sh`.
//! Environment overrides: `SLAPD`, `SLAPADD` (binaries), `LDAP_MODULEDIR`
//! (default `/usr/lib/ldap`), `LDAP_SCHEMADIR` (default `/etc/ldap/schema`).
//!
//! Declared in `tests/common/mod.rs` as `pub mod slapd;` (its
//! `#![allow(dead_code)]` also covers this module in test binaries that use
//! only part of it).
//!
//! ```ignore
//! let ldap = Slapd::start();
//! // ldap.url() == "ldap://127.0.0.1:PORT", bind as SERVICE_DN / SERVICE_PASSWORD
//! // or anonymously; search below BASE_DN.
//! ```

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Suffix of the test directory.
pub const BASE_DN: &str = "dc=example,dc=com";
/// The rootdn: may write everything, exempt from the size limit.
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
pub const ROOT_PASSWORD: &str = "secret";
/// The account gatehouse binds with; reads everything but passwords.
pub const SERVICE_DN: &str = "cn=gatehouse,ou=services,dc=example,dc=com";
pub const SERVICE_PASSWORD: &str = "gatehouse-secret";
/// Searches return at most this many entries without the pagedResults
/// control (and pages may not be larger); the rootdn is exempt.
pub const SIZE_LIMIT: usize = 500;

/// The cn=config template; see its header for the placeholders.
const CONFIG_TEMPLATE: &str = include_str!("../ldap/config.ldif");

/// How long slapd may take to start listening or to stop.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Polling interval while waiting for slapd.
const POLL: Duration = Duration::from_millis(10);

/// What to start: [`Slapd::start`] and [`Slapd::start_tls`] cover the usual
/// cases; `big: false` skips the 1200 users of `big.ldif` (saves ~0.3 s).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Test CA and server certificate, StartTLS on `port`, ldaps on `tls_port`.
    pub tls: bool,
    /// Load `big.ldif` (group "Big List" with 1200 members) after `data.ldif`.
    pub big: bool,
}

/// A running test slapd. Dropping it kills slapd, then removes its folder.
pub struct Slapd {
    /// Port of `ldap://127.0.0.1:PORT` (StartTLS too, when TLS is on).
    pub port: u16,
    /// Port of `ldaps://127.0.0.1:PORT`, when started with TLS.
    pub tls_port: Option<u16>,
    /// Holds `slapd.d/`, `db/`, `slapd.log` and, with TLS, `ca.pem`.
    pub dir: tempfile::TempDir,
    /// The slapd process; `None` between [`Slapd::stop`] and [`Slapd::restart`].
    child: Option<Child>,
}

impl Slapd {
    /// Plain LDAP server with all the test data.
    pub fn start() -> Slapd {
        Slapd::start_with(Options {
            tls: false,
            big: true,
        })
    }

    /// Server with all the test data, StartTLS on [`Slapd::url`] and LDAPS
    /// on [`Slapd::ldaps_url`]; clients trust [`Slapd::ca_file`]. The
    /// certificate names IP 127.0.0.1 and DNS localhost.
    pub fn start_tls() -> Slapd {
        Slapd::start_with(Options { tls: true, big: true })
    }

    /// Build, start and load a server in a new temporary folder. Panics
    /// (with the tool's output or slapd's log) when any step fails.
    pub fn start_with(options: Options) -> Slapd {
        Slapd::start_configured(options, true)
    }

    /// Like [`Slapd::start_with`], without the syncprov overlay: a server
    /// that refuses the content synchronization control.
    pub fn start_without_syncprov(options: Options) -> Slapd {
        Slapd::start_configured(options, false)
    }

    fn start_configured(options: Options, syncprov: bool) -> Slapd {
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-slapd-")
            .tempdir()
            .expect("create a temporary folder for slapd");
        if options.tls {
            make_certificates(dir.path());
        }
        build_config(dir.path(), options.tls, syncprov);

        let mut slapd = Slapd {
            port: 0,
            tls_port: None,
            dir,
            child: None,
        };
        let mut attempt = 0;
        loop {
            let ports = unused_ports(if options.tls { 2 } else { 1 });
            slapd.port = ports[0];
            slapd.tls_port = ports.get(1).copied();
            match slapd.launch() {
                Ok(()) => break,
                Err(log) if attempt < PORT_ATTEMPTS && port_taken(&log) => attempt += 1,
                Err(log) => panic!("slapd did not start; log:\n{log}"),
            }
        }
        slapd.ldapadd(&ldap_dir().join("data.ldif"));
        if options.big {
            slapd.ldapadd(&ldap_dir().join("big.ldif"));
        }
        slapd
    }

    /// `ldap://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:TLS_PORT`; panics on a server without TLS.
    pub fn ldaps_url(&self) -> String {
        let port = self.tls_port.expect("ldaps_url: slapd was started without TLS");
        format!("ldaps://127.0.0.1:{port}")
    }

    /// The PEM file of the CA that signed the server certificate; panics on
    /// a server without TLS.
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls_port.is_some(), "ca_file: slapd was started without TLS");
        self.dir.path().join("ca.pem")
    }

    /// slapd's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What slapd logged so far (start, stop and errors only).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Freeze slapd with SIGSTOP: the kernel still accepts connections and
    /// queues requests, nothing is answered until [`Slapd::thaw`].
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Slapd::freeze`]: slapd answers again, queued requests first.
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().expect("slapd is running").to_string();
        let ok = Command::new("kill").args([&format!("-{sig}"), &pid]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} slapd");
    }

    /// Stop slapd (SIGTERM to its PID, then wait; SIGKILL after 10 s). The
    /// configuration and data stay for [`Slapd::restart`]. Clients see
    /// "connection refused" until then. Does nothing when already stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().expect("slapd status").is_some() {
            return; // already exited (and now reaped)
        }
        // A frozen slapd would hold SIGTERM until continued.
        let _ = Command::new("kill")
            .args(["-CONT", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        // std can only SIGKILL; SIGTERM lets slapd close its database cleanly.
        let termed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let deadline = Instant::now() + TIMEOUT;
        while termed && Instant::now() < deadline {
            if child.try_wait().expect("slapd status").is_some() {
                return;
            }
            sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Start slapd again after [`Slapd::stop`] (or stop it first), on the
    /// same port(s) with the same configuration and database: the data,
    /// including changes made by the test, is kept; nothing is reloaded.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.launch() {
            panic!("slapd did not start again; log:\n{log}");
        }
    }

    /// Apply an LDIF change (`changetype: add/modify/delete/modrdn`
    /// records) as the rootdn, with `ldapmodify`. Panics if it fails.
    pub fn modify(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        fs::write(&path, ldif).expect("write change.ldif");
        self.ldap_tool("ldapmodify", &path);
    }

    /// Start slapd on the built configuration and wait until it listens on
    /// its port(s). `Err(log)` when slapd exits first (a port taken by
    /// another process, say); panics when it neither listens nor exits.
    fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "slapd is already running");
        let dir = self.dir.path();
        let mut listen = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(tls_port) = self.tls_port {
            listen.push_str(&format!(" ldaps://127.0.0.1:{tls_port}/"));
        }
        // A fresh log per start: a retry must not see the last one's error.
        let log = File::create(dir.join("slapd.log")).expect("create slapd.log");
        // -d: do not detach, so the child is slapd itself and its PID is
        // ours to stop; log to stderr. Level "none" still logs what slapd
        // always logs (start, stop, errors such as a busy port); -d 0
        // would hide even those.
        let child = Command::new(find_program("SLAPD", "slapd"))
            .arg("-d")
            .arg("none")
            .arg("-F")
            .arg(dir.join("slapd.d"))
            .arg("-h")
            .arg(&listen)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone slapd.log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start slapd");
        self.child = Some(child);

        // slapd calls listen() only once its databases are open, so its
        // own listening socket on a port means it is ready.
        let ports: Vec<u16> = std::iter::once(self.port).chain(self.tls_port).collect();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("slapd started");
            if child.try_wait().expect("slapd status").is_some() {
                self.child = None;
                return Err(self.log());
            }
            if ports.iter().all(|&p| listens_on(child.id(), p)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!(
                    "slapd not listening on {ports:?} after {TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            sleep(POLL);
        }
    }

    /// Load an LDIF file of new entries as the rootdn.
    fn ldapadd(&self, file: &Path) {
        self.ldap_tool("ldapadd", file);
    }

    /// Run `ldapadd`/`ldapmodify` on `file` as the rootdn; panic on failure.
    fn ldap_tool(&self, tool: &str, file: &Path) {
        let output = Command::new(tool)
            .env("LDAPNOINIT", "1") // ignore /etc/ldap/ldap.conf and ~/.ldaprc
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD, "-f"])
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {tool} (install ldap-utils): {e}"));
        assert!(
            output.status.success(),
            "{tool} -f {} failed ({}):\n{}\nslapd log:\n{}",
            file.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

impl Drop for Slapd {
    /// Kill slapd by its PID (SIGKILL: the data is thrown away anyway) and
    /// reap it; the temporary folder is removed afterwards.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `tests/ldap/` in the source tree: templates and test data.
pub fn ldap_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("ldap")
}

/// How many times slapd is started on other ports when one was taken.
const PORT_ATTEMPTS: usize = 20;

/// `n` different ports that no TCP socket uses now, in any state, picked at
/// random below the kernel's ephemeral range so that test binaries running at
/// once rarely collide. Below it because a client connection's port, even in
/// TIME-WAIT, blocks a listener's bind (SO_REUSEADDR or not), and the tests
/// make thousands of client connections.
fn unused_ports(n: usize) -> Vec<u16> {
    use std::hash::{BuildHasher, Hasher};
    let taken: Vec<u16> = tcp_sockets().into_iter().map(|socket| socket.port).collect();
    let (low, high) = listener_port_range();
    let mut ports = Vec::new();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    while ports.len() < n {
        hasher.write_u32(std::process::id());
        let port = low + (hasher.finish() % u64::from(high - low)) as u16;
        if !taken.contains(&port) && !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// The ports tests listen on: 10000 up to the start of the ephemeral range
/// (`net.ipv4.ip_local_port_range`), or above its end when it starts low.
fn listener_port_range() -> (u16, u16) {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range.split_whitespace().filter_map(|n| n.parse::<u16>().ok());
    let (first, last) = (bounds.next().unwrap_or(32768), bounds.next().unwrap_or(60999));
    if first >= 12000 {
        (10000, first)
    } else {
        (last.saturating_add(1).min(64000), 65535)
    }
}

/// Whether slapd's log says it could not bind a listener.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("bind(")
}

/// One TCP socket of this network namespace, from `/proc/net/tcp{,6}`.
struct TcpSocket {
    port: u16,
    listening: bool,
    inode: String,
}

/// Every TCP socket of this network namespace, listening or not (TIME-WAIT
/// ones included).
fn tcp_sockets() -> Vec<TcpSocket> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            if fields.len() > 9 {
                let port = fields[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                if let Some(port) = port {
                    found.push(TcpSocket {
                        port,
                        listening: fields[3] == "0A",
                        inode: fields[9].to_string(),
                    });
                }
            }
        }
    }
    found
}

/// Whether process `pid` holds a socket listening on TCP `port`.
fn listens_on(pid: u32, port: u16) -> bool {
    let inodes: Vec<String> = tcp_sockets()
        .into_iter()
        .filter(|socket| socket.listening && socket.port == port)
        .map(|socket| format!("socket:[{}]", socket.inode))
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

/// The program named by environment variable `var`, else `name` from PATH or
/// the sbin folders, which are not on a normal user's PATH on Debian.
fn find_program(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(sbin)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: run scripts/install-test-deps.sh (or set {var})"))
}

/// Fill in `config.ldif` and build `dir/slapd.d` from it with slapadd.
fn build_config(dir: &Path, tls: bool, syncprov: bool) {
    let db = dir.join("db");
    let slapd_d = dir.join("slapd.d");
    fs::create_dir(&db).expect("create db folder");
    fs::create_dir(&slapd_d).expect("create slapd.d folder");

    let moduledir = std::env::var("LDAP_MODULEDIR").unwrap_or_else(|_| "/usr/lib/ldap".into());
    let schemadir = std::env::var("LDAP_SCHEMADIR").unwrap_or_else(|_| "/etc/ldap/schema".into());
    let path = |name: &str| dir.join(name).display().to_string();
    let filled = CONFIG_TEMPLATE
        .replace("@DBDIR@", &db.display().to_string())
        .replace("@MODULEDIR@", &moduledir)
        .replace("@SCHEMADIR@", &schemadir)
        .replace("@TLS_CERT@", &path("server.pem"))
        .replace("@TLS_KEY@", &path("server.key"))
        .replace("@TLS_CA@", &path("ca.pem"));
    let filled = match filled.find("# syncprov-begin") {
        Some(cut) if !syncprov => filled[..cut].replace("olcModuleLoad: syncprov.la\n", ""),
        _ => filled,
    };
    // Without TLS the olcTLS* lines go: slapd will not start without the files.
    let config: String = filled
        .lines()
        .filter(|line| tls || !line.starts_with("olcTLS"))
        .flat_map(|line| [line, "\n"])
        .collect();
    let config_file = dir.join("config.ldif");
    fs::write(&config_file, config).expect("write config.ldif");

    let output = Command::new(find_program("SLAPADD", "slapadd"))
        .arg("-n0")
        .arg("-F")
        .arg(&slapd_d)
        .arg("-l")
        .arg(&config_file)
        .stdin(Stdio::null())
        .output()
        .expect("run slapadd");
    assert!(
        output.status.success(),
        "slapadd -n0 of {} failed ({}):\n{}{}",
        config_file.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test CA (`ca.pem`) and a server certificate for IP 127.0.0.1 and DNS
/// localhost (`server.pem`, key `server.key`), with EC keys (instant).
fn make_certificates(dir: &Path) {
    #[rustfmt::skip]
    openssl(dir, &[
        "req", "-x509", "-new", "-nodes",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "3650", "-subj", "/CN=gatehouse test CA",
    ]);
    #[rustfmt::skip]
    openssl(dir, &[
        "req", "-new", "-nodes",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost",
    ]);
    fs::write(
        dir.join("server.ext"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    .expect("write server.ext");
    #[rustfmt::skip]
    openssl(dir, &[
        "x509", "-req", "-in", "server.csr",
        "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "2",
        "-days", "3650", "-extfile", "server.ext", "-out", "server.pem",
    ]);
}

/// Run `openssl ARGS` in `dir`; panic with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (install openssl)");
    assert!(
        output.status.success(),
        "openssl {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
