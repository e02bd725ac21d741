//! mcp-bastion: a security gateway for the Model Context Protocol.
//!
//! Module map (request flow top to bottom):
//! - [`server`]: the client-facing `/mcp` endpoint, both protocol revisions;
//! - [`gateway`]: the pipeline from a client request to upstream work;
//! - [`context`]: per-client state (legacy sessions, stateless contexts);
//! - [`upstream`]: connections to upstream MCP servers (HTTP and stdio);
//! - [`config`], [`secret`]: configuration and secret references;
//! - [`audit`]: audit events and sinks;
//! - [`listener`]: plain and TLS 1.3 listeners;
//! - [`demo`]: the built-in demo upstream; [`import`]: `mcpServers` JSON import.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod bridge;
pub mod config;
pub mod context;
pub mod demo;
pub mod detect_cli;
pub mod export;
pub mod forensics;
pub mod gateway;
pub mod import;
pub mod integrity;
pub mod inventory;
pub mod keyring;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod otlp;
pub mod pins;
pub mod pipeline;
pub mod policy_tools;
pub mod screen;
pub mod seal;
pub mod secret;
pub mod server;
pub mod store;
pub mod streams;
pub mod tools_cli;
pub mod upstream;
