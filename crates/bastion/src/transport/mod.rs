//! The client-facing transport: the listeners (plain and TLS 1.3), the
//! `/mcp` endpoint on both lanes and its HTTP layers, authentication of every
//! request, resumable streams and the per-principal bounds.
//!
//! Invariant: nothing reaches the pipeline that has not been authenticated,
//! parsed and bounded here; every refusal here is a status, a JSON-RPC error
//! and a `request` audit event, made from one `refusal::Refusal` in one
//! function (`http.rs::Rec::refuse`).

pub mod auth;
pub mod http;
pub mod limits;
pub mod listener;
pub mod refusal;
pub mod streams;
