//! Per-client state: legacy sessions and stateless contexts
//! ([`context`]), the continuations that bridge a 2026-07-28 client to a
//! 2025-era upstream ([`bridge`]), and the sealed values a client carries
//! between requests ([`seal`]: `requestState`, list cursors, task ids).
//!
//! Invariant: a value the client hands back is used only after it opens for
//! the same principal (and method, where bound).

pub mod bridge;
pub mod context;
pub mod seal;
