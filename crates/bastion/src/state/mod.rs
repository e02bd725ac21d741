//! Shared state: the store of sessions, pins, approvals and revocations
//! (embedded SQLite, or Redis across instances: [`store`]) and the keys that
//! protect what the gateway puts in it or hands to clients ([`keyring`]).
//!
//! Invariant: SQLite work runs on the blocking pool, never on the async
//! workers; a value read from a shared store is used only if its MAC checks.

pub mod keyring;
pub mod store;
