//! mcp-bastion: a security gateway for the Model Context Protocol.
//!
//! Module map (`docs/architecture.md` has both pipelines step by step):
//! - [`transport`]: listeners, the `/mcp` endpoint on both lanes,
//!   authentication, streams, bounds;
//! - [`gateway`]: the gateway's state and the client → upstream dispatch;
//! - [`pipeline`]: the ordered controls of both directions (authorization,
//!   screening, listen, task ids, upstream → client);
//! - [`session`]: per-client contexts, continuations, sealed handles;
//! - [`upstream`]: connections to upstream MCP servers (HTTP and stdio), the
//!   only code that writes to one, under a permit;
//! - [`integrity`]: tool-definition pins, inventory and judgement;
//! - [`state`]: the shared store and the keyring;
//! - [`audit`]: audit events, the trail, exporters, metrics, forensics;
//! - [`admin`]: the operator's API; [`config`]: configuration, secrets,
//!   imports; [`cli`]: operator commands and the demo.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod integrity;
pub mod pipeline;
pub mod session;
pub mod state;
pub mod transport;
pub mod upstream;
