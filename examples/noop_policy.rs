//! Benchmark reference: the floor of a Postfix policy service on this
//! machine, as the echo milter is the milter's.
//!
//! It serves on gatehouse's own accept loop and answers `action=DUNNO` to
//! every request (everything up to an empty line) without reading it: what
//! is left is socket I/O and finding the end of a request; gatehouse's
//! policy listener is measured against it.
//!
//! Usage: `noop_policy unix:/path` (or `inet:127.0.0.1:PORT`).

#[path = "reference/mod.rs"]
mod reference;

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use gatehouse::milter::endpoint::MilterStream;
use gatehouse::server::Service;

struct Noop;

impl Service for Noop {
    const CONNECTION: &'static str = "policy connection";
    const METRIC: &'static str = "policy";

    async fn serve_connection(self: Arc<Self>, mut s: MilterStream, _peer: String, _socket: Arc<str>) {
        let mut read = BytesMut::with_capacity(4096);
        loop {
            // Every complete request in the buffer gets its answer.
            let mut answers = 0;
            while let Some(end) = read.windows(2).position(|w| w == b"\n\n") {
                read.advance(end + 2);
                answers += 1;
            }
            if answers > 0 && s.write_all(&b"action=DUNNO\n\n".repeat(answers)).await.is_err() {
                return;
            }
            match s.read_buf(&mut read).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

#[tokio::main]
async fn main() {
    reference::serve_from_args("noop_policy", "inet:127.0.0.1:10041", Noop).await
}
