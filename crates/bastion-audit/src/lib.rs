//! The mcp-bastion audit trail: an append-only log that shows tampering and
//! loses nothing.
//!
//! - [`chain`]: the record format (canonical JSON, a sequence number and the
//!   SHA-256 of the previous line in every record), Ed25519-signed checkpoints,
//!   and [`chain::verify`], which names the first bad record of a log spread
//!   over rotated files.
//! - [`writer`]: the appender thread (group commit under an fsync policy,
//!   rotation that keeps the chain, recovery of a torn tail, bounded queue that
//!   reports itself unhealthy instead of dropping).
//! - [`canonical`]: RFC 8785 canonical JSON.
//!
//! The events themselves (their schema) belong to the gateway; this crate
//! records any JSON object.

#![forbid(unsafe_code)]

pub mod canonical;
pub mod chain;
pub mod writer;

pub use chain::{Problem, Report, Signer, VerifyOptions, verify};
pub use writer::{Fsync, Writer, WriterConfig};
