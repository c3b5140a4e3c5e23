//! gatehouse: a milter that enforces Exchange-style SMTP access controls for
//! Postfix and Sendmail.
//!
//! Layout (the design's data flow, one module per part):
//! - [`milter`]: the wire protocol — codec, negotiation, session, connection, MTA-side client;
//! - [`policy_delegation`]: Postfix's policy-delegation protocol, the second front end;
//! - [`server`]: listeners, connection limit, graceful shutdown, for either protocol;
//! - [`policy`]: the pure rules, addresses, listener matching, reply texts;
//! - [`directory`]: users and groups, a layer (cache, own-entry check) over a backend (static, LDAP);
//! - [`config`]: the TOML file, validated into immutable structs;
//! - [`enforcer`]: binds a session to the policy and the directory, and logs decisions;
//! - [`daemon`]: the process lifecycle (serve, reload, stop); [`cli`]: `check`, `explain`, `lookup`;
//! - [`metrics`]: the Prometheus counters and their `/metrics` endpoint.

pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod directory;
pub mod enforcer;
pub mod metrics;
pub mod milter;
pub mod policy;
pub mod policy_delegation;
pub mod server;
