//! JSON-RPC and MCP error codes.
//!
//! `-32700..=-32600` are JSON-RPC's own. `-32020..=-32099` are reserved by MCP
//! 2026-07-28. The gateway's own codes live in the implementation-defined range
//! `-32000..=-32019`, which receivers must not interpret beyond "server error".

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object (also: batches, null ids).
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters (2026-07-28: also missing required `_meta`, unknown resource).
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// 2025-11-25 resource not found (2026-07-28 uses `INVALID_PARAMS`).
pub const RESOURCE_NOT_FOUND_LEGACY: i64 = -32002;
/// 2026-07-28: a mirrored HTTP header does not match the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the request needs a client capability it did not declare.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// 2026-07-28: the requested protocol version is not supported.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// Gateway: the upstream that serves this name is unavailable (down, crashed, timed out).
pub const UPSTREAM_UNAVAILABLE: i64 = -32010;
/// Gateway: the request was refused by a gateway control (origin, lane mix, limits).
pub const GATEWAY_REFUSED: i64 = -32011;
/// Gateway: the request timed out waiting for the upstream.
pub const UPSTREAM_TIMEOUT: i64 = -32012;
/// Gateway: a session is required (legacy lane) or unknown.
pub const SESSION_REQUIRED: i64 = -32013;
/// Gateway: authentication failed or the token lacks a required scope (the HTTP
/// status and `WWW-Authenticate` say which; `data.error` carries the RFC 6750 code).
pub const UNAUTHORIZED: i64 = -32014;
