//! Request and result `_meta` keys of MCP, and accessors for them.
//!
//! On the modern lane every request carries its protocol version and client
//! capabilities in `params._meta`; the accessors here read them without cloning.

use serde_json::{Map, Value};

/// `_meta` key: the request's protocol version (modern lane, required).
pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key: the client's capabilities (modern lane, required).
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key: self-reported client info (never used for security decisions).
pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key: requested log level (modern lane replacement for `logging/setLevel`).
pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// Result `_meta` key: server info.
pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// Notification `_meta` key: the `subscriptions/listen` request id it belongs to.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// Related-task `_meta` key (tasks).
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// `params._meta`, if present and an object.
pub fn meta(params: Option<&Value>) -> Option<&Map<String, Value>> {
    params?.get("_meta")?.as_object()
}

/// `params._meta` as a mutable object, created if absent. `None` if `params` is
/// not an object or `_meta` is present but not an object.
pub fn meta_mut(params: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = params.as_object_mut()?;
    let entry = obj
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    entry.as_object_mut()
}

/// The modern protocol version in `params._meta`, if any (as a raw string).
pub fn protocol_version(params: Option<&Value>) -> Option<&Value> {
    meta(params)?.get(PROTOCOL_VERSION)
}

/// The progress token in `params._meta`, if any.
pub fn progress_token(params: Option<&Value>) -> Option<&Value> {
    meta(params)?.get("progressToken")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_creates_meta() {
        let p = json!({"_meta": {PROTOCOL_VERSION: "2026-07-28", "progressToken": 5}});
        assert_eq!(protocol_version(Some(&p)), Some(&json!("2026-07-28")));
        assert_eq!(progress_token(Some(&p)), Some(&json!(5)));
        let mut q = json!({"name": "x"});
        meta_mut(&mut q).unwrap().insert("k".into(), json!(1));
        assert_eq!(q, json!({"name":"x","_meta":{"k":1}}));
        let mut bad = json!({"_meta": 3});
        assert!(meta_mut(&mut bad).is_none());
    }
}
