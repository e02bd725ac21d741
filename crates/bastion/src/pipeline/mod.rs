//! The pipelines: every message between a client and an upstream passes one
//! ordered set of controls per direction.
//!
//! - client → upstream ([`requests`]: one function per method, reached from
//!   [`Gateway::dispatch`](crate::gateway::Gateway::dispatch)) for requests, [`Gateway::notify`](crate::gateway::Gateway::notify) for
//!   notifications, [`Gateway::answer`](crate::gateway::Gateway::answer) for
//!   answers to server requests): authenticate (the HTTP layer) → parse and
//!   bound → canonicalize → authorize → integrity → validate → screen → send
//!   under a permit;
//! - upstream → client ([`to_client`]): integrity (list changes re-listed and
//!   judged) → decide (server requests: declared capability and policy) →
//!   screen → deliver.
//!
//! See `docs/architecture.md` for both, step by step.

pub mod authz;
pub mod listen;
pub(crate) mod requests;
pub mod screen;
pub mod tasks;
pub mod to_client;
