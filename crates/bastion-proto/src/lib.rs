//! MCP wire model for both protocol revisions the gateway speaks.
//!
//! This crate owns the JSON-RPC 2.0 message model ([`jsonrpc`]), the MCP protocol
//! revisions and their eras ([`version`]), the request metadata of the 2026-07-28
//! revision ([`meta`], [`headers`]), error codes ([`codes`]), canonical resource
//! URIs ([`uri`]) and the Server-Sent Events codec ([`sse`]).
//!
//! Invariants:
//! - It does no I/O: every function is a pure transformation of bytes or values.
//! - Every parser is bounded: input size is checked before parsing, nesting depth is
//!   bounded by `serde_json`'s recursion limit, and the SSE decoder caps event size.
//! - Unknown fields are preserved: messages keep `params`, `result` and `error` as
//!   opaque JSON so relaying never drops what a newer peer added.
#![forbid(unsafe_code)]

pub mod codes;
pub mod headers;
pub mod jsonrpc;
pub mod meta;
pub mod sse;
pub mod uri;
pub mod version;

pub use jsonrpc::{ErrorObject, Id, Message, Notification, ParseError, Request, Response};
pub use version::{Era, ProtocolVersion};
