//! The milter protocol: codec (bytes ⇄ packets), negotiation, the per-connection
//! session state machine, the buffered connection, and the MTA-side client.

pub mod client;
pub mod codec;
pub mod connection;
pub mod endpoint;
pub mod macros;
pub mod negotiate;
pub mod protocol;
pub mod session;

pub use codec::{Command, OptNeg, Reply};
pub use endpoint::Endpoint;
pub use session::{Facts, Handler, Session, Verdict};
