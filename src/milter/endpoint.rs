//! Milter socket addresses in Postfix notation, and a stream over either kind.
//!
//! `unix:/path` (also `local:/path`), `inet:host:port`, `inet6:[addr]:port`.
//! Hosts must be IP literals or `localhost`: gatehouse never asks DNS where to
//! listen.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Unix(PathBuf),
    Inet(SocketAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid milter socket {input:?}: {reason} (expected unix:/path, inet:host:port or inet6:[addr]:port)"
)]
pub struct EndpointError {
    pub input: String,
    pub reason: &'static str,
}

impl Endpoint {
    pub fn parse(input: &str) -> Result<Endpoint, EndpointError> {
        let err = |reason| EndpointError {
            input: input.to_string(),
            reason,
        };
        let (kind, rest) = input.split_once(':').ok_or_else(|| err("no type prefix"))?;
        match kind {
            "unix" | "local" => {
                if !rest.starts_with('/') {
                    return Err(err("unix socket path must be absolute"));
                }
                Ok(Endpoint::Unix(PathBuf::from(rest)))
            }
            "inet" | "inet6" => {
                let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("no port"))?;
                let port: u16 = port.parse().map_err(|_| err("port is not a number 0-65535"))?;
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let ip: IpAddr = match host {
                    "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    "" | "*" => return Err(err("host is empty; write 127.0.0.1 or 0.0.0.0")),
                    h => h.parse().map_err(|_| err("host is not an IP address"))?,
                };
                if kind == "inet6" && !ip.is_ipv6() {
                    return Err(err("inet6 needs an IPv6 address in brackets"));
                }
                Ok(Endpoint::Inet(SocketAddr::new(ip, port)))
            }
            _ => Err(err("unknown type prefix")),
        }
    }

    pub async fn connect(&self) -> io::Result<MilterStream> {
        Ok(match self {
            Endpoint::Unix(path) => MilterStream::Unix(UnixStream::connect(path).await?),
            Endpoint::Inet(addr) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                MilterStream::Tcp(s)
            }
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Inet(SocketAddr::V4(a)) => write!(f, "inet:{a}"),
            Endpoint::Inet(SocketAddr::V6(a)) => write!(f, "inet6:{a}"),
        }
    }
}

/// A TCP or Unix stream.
pub enum MilterStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for MilterStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MilterStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            MilterStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MilterStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MilterStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            MilterStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MilterStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            MilterStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MilterStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            MilterStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_notation() {
        assert_eq!(
            Endpoint::parse("inet:127.0.0.1:8890").unwrap(),
            Endpoint::Inet("127.0.0.1:8890".parse().unwrap())
        );
        assert_eq!(
            Endpoint::parse("inet6:[::1]:8890").unwrap(),
            Endpoint::Inet("[::1]:8890".parse().unwrap())
        );
        assert_eq!(
            Endpoint::parse("inet:[::1]:8890").unwrap(),
            Endpoint::Inet("[::1]:8890".parse().unwrap())
        );
        assert_eq!(
            Endpoint::parse("unix:/run/gatehouse/g.sock").unwrap(),
            Endpoint::Unix("/run/gatehouse/g.sock".into())
        );
        assert_eq!(
            Endpoint::parse("local:/x.sock").unwrap(),
            Endpoint::Unix("/x.sock".into())
        );
        assert_eq!(
            Endpoint::parse("inet:localhost:1").unwrap(),
            Endpoint::Inet("127.0.0.1:1".parse().unwrap())
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["inet:127.0.0.1:8890", "inet6:[::1]:8890", "unix:/tmp/a.sock"] {
            assert_eq!(Endpoint::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_endpoints_say_why() {
        for bad in [
            "tcp:127.0.0.1:1",
            "127.0.0.1:8890",
            "inet:127.0.0.1",
            "inet:127.0.0.1:99999",
            "inet:mail.example.com:25",
            "inet6:127.0.0.1:1",
            "unix:relative.sock",
            "inet::25",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
