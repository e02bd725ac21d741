//! The operator's commands beyond `serve`: detection on files
//! ([`detect`]), tool pins and manifests ([`tools`]), policy checks, explain
//! and access review ([`policy`]), and the demo upstream and config
//! ([`demo`]). `main.rs` parses arguments and calls these.

pub mod demo;
pub mod detect;
pub mod policy;
pub mod tools;
