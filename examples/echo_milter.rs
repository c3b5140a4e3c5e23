//! Benchmark reference: the physical limit of a milter on this machine.
//!
//! It negotiates exactly what gatehouse negotiates (same protocol bits, same
//! macro lists), so the MTA sends the same packets, and answers every packet
//! that expects a reply without looking at it: `continue`, except ACCEPT at
//! DATA as gatehouse does, so both servers see the same round trips. What is
//! left is framing and socket I/O; gatehouse's cost is measured against it.
//!
//! Usage: `echo_milter unix:/path` (or `inet:127.0.0.1:PORT`).

#[path = "reference/mod.rs"]
mod reference;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use gatehouse::enforcer::macro_request;
use gatehouse::milter::codec::{encode_reply, parse_command, split_packet};
use gatehouse::milter::endpoint::MilterStream;
use gatehouse::milter::negotiate::negotiate;
use gatehouse::milter::protocol::cmd;
use gatehouse::milter::{Command, Reply};
use gatehouse::server::Service;

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    let mut read = BytesMut::with_capacity(4096);
    let mut write = BytesMut::with_capacity(256);
    let mut negotiated = None;
    loop {
        while let Ok(Some((letter, payload))) = split_packet(&mut read, 1 << 20) {
            let reply = match (letter, negotiated) {
                (cmd::OPTNEG, None) => match parse_command(letter, payload) {
                    Ok(Command::OptNeg(offer)) => match negotiate(offer, &macro_request()) {
                        Ok((n, r)) => {
                            negotiated = Some(n);
                            Some(r)
                        }
                        Err(_) => return,
                    },
                    _ => return,
                },
                (cmd::DATA, Some(n)) if n.expects_reply(letter) => Some(Reply::Accept),
                (cmd::QUIT, _) => return,
                (_, Some(n)) if n.expects_reply(letter) => Some(Reply::Continue),
                _ => None,
            };
            if let Some(r) = reply {
                encode_reply(&r, &mut write);
            }
        }
        if !write.is_empty() {
            if s.write_all(&write).await.is_err() {
                return;
            }
            write.clear();
        }
        match s.read_buf(&mut read).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The echo milter on gatehouse's own accept loop.
struct Echo;

impl Service for Echo {
    const CONNECTION: &'static str = "milter connection";
    const METRIC: &'static str = "milter";

    async fn serve_connection(self: Arc<Self>, stream: MilterStream, _peer: String, _socket: Arc<str>) {
        serve(stream).await
    }
}

#[tokio::main]
async fn main() {
    reference::serve_from_args("echo_milter", "inet:127.0.0.1:8899", Echo).await
}
