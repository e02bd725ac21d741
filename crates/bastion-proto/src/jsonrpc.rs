//! JSON-RPC 2.0 messages as MCP uses them.
//!
//! A message is parsed once from bytes into [`Message`]. `params`, `result` and
//! `error.data` stay opaque [`Value`]s so unknown fields survive a relay. MCP
//! forbids batches (since 2025-06-18) and `null` request ids; both are refused here
//! with the JSON-RPC code the spec names, so no layer above has to re-check.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::fmt;

use crate::codes;

/// A JSON-RPC request id: MCP allows strings and integers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id.
    Num(i64),
    /// A string id.
    Str(String),
}

impl Id {
    /// Reads an id from JSON; `None` for `null`, fractions, out-of-range numbers,
    /// and non-scalar values.
    pub fn from_value(v: &Value) -> Option<Id> {
        match v {
            Value::Number(n) => n.as_i64().map(Id::Num),
            Value::String(s) => Some(Id::Str(s.clone())),
            _ => None,
        }
    }

    /// The id as JSON.
    pub fn to_value(&self) -> Value {
        match self {
            Id::Num(n) => Value::from(*n),
            Id::Str(s) => Value::from(s.as_str()),
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Num(n) => s.serialize_i64(*n),
            Id::Str(v) => s.serialize_str(v),
        }
    }
}

/// A request: expects exactly one response with the same id.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Request id, unique per sender and connection.
    pub id: Id,
    /// Method name, e.g. `tools/call`.
    pub method: String,
    /// Parameters, kept opaque.
    pub params: Option<Value>,
}

/// A notification: no id, no response.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Method name, e.g. `notifications/progress`.
    pub method: String,
    /// Parameters, kept opaque.
    pub params: Option<Value>,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorObject {
    /// Error code (see [`crate::codes`]).
    pub code: i64,
    /// Short human-readable description.
    pub message: String,
    /// Optional structured detail.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error with no data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// An error with structured data.
    pub fn with_data(code: i64, message: impl Into<String>, data: Value) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: Some(data),
        }
    }
}

/// A response: a result or an error for the request with the same id.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The id of the request answered; `None` only for errors about a message
    /// whose id could not be read (parse errors), serialized as `null`.
    pub id: Option<Id>,
    /// The outcome.
    pub outcome: Result<Value, ErrorObject>,
}

impl Response {
    /// A successful response.
    pub fn result(id: Id, result: Value) -> Self {
        Response {
            id: Some(id),
            outcome: Ok(result),
        }
    }

    /// An error response.
    pub fn error(id: Option<Id>, error: ErrorObject) -> Self {
        Response {
            id,
            outcome: Err(error),
        }
    }
}

/// Any single JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A response.
    Response(Response),
}

/// Why bytes were not a valid single JSON-RPC message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Larger than the configured bound; nothing was parsed.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Actual size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Not valid JSON (includes invalid UTF-8 and excessive nesting).
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A JSON array: MCP does not support batches.
    #[error("JSON-RPC batches are not supported")]
    Batch,
    /// Valid JSON but not a JSON-RPC 2.0 message; carries the id when readable.
    #[error("invalid JSON-RPC message: {reason}")]
    Invalid {
        /// What is wrong.
        reason: &'static str,
        /// The request id, when one could be read, so the error can be correlated.
        id: Option<Id>,
    },
}

impl ParseError {
    /// The JSON-RPC error code a receiver answers this with.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Json(_) => codes::PARSE_ERROR,
            ParseError::TooLarge { .. } | ParseError::Batch | ParseError::Invalid { .. } => {
                codes::INVALID_REQUEST
            }
        }
    }

    /// The id to answer with, if one was readable.
    pub fn id(&self) -> Option<Id> {
        match self {
            ParseError::Invalid { id, .. } => id.clone(),
            ParseError::TooLarge { .. } | ParseError::Json(_) | ParseError::Batch => None,
        }
    }

    /// The error object to send back.
    pub fn to_error_object(&self) -> ErrorObject {
        ErrorObject::new(self.code(), self.to_string())
    }
}

impl Message {
    /// Parses one message from `bytes`, refusing anything over `limit` bytes
    /// before looking at it.
    pub fn parse(bytes: &[u8], limit: usize) -> Result<Message, ParseError> {
        if bytes.len() > limit {
            return Err(ParseError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            // Check it is JSON at all first: malformed input is a parse error even
            // when it starts like an array.
            return match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => Err(ParseError::Batch),
                Err(e) => Err(ParseError::Json(e.to_string())),
            };
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
        Message::from_value(value)
    }

    /// Classifies an already-parsed JSON value.
    pub fn from_value(value: Value) -> Result<Message, ParseError> {
        let Value::Object(mut obj) = value else {
            return Err(ParseError::Invalid {
                reason: "a message must be a JSON object",
                id: None,
            });
        };
        let raw_id = obj.remove("id");
        let id = match &raw_id {
            None => None,
            Some(v) => match Id::from_value(v) {
                Some(id) => Some(id),
                None => {
                    return Err(ParseError::Invalid {
                        reason: "id must be a string or an integer (null is not allowed)",
                        id: None,
                    });
                }
            },
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(ParseError::Invalid {
                reason: "jsonrpc must be \"2.0\"",
                id,
            });
        }
        let params = obj.remove("params");
        if let Some(p) = &params
            && !(p.is_object() || p.is_array())
        {
            return Err(ParseError::Invalid {
                reason: "params must be an object or an array",
                id,
            });
        }
        match obj.remove("method") {
            Some(Value::String(method)) => Ok(match id {
                Some(id) => Message::Request(Request { id, method, params }),
                None => Message::Notification(Notification { method, params }),
            }),
            Some(_) => Err(ParseError::Invalid {
                reason: "method must be a string",
                id,
            }),
            None => {
                let result = obj.remove("result");
                let error = obj.remove("error");
                let outcome = match (result, error) {
                    (Some(r), None) => Ok(r),
                    (None, Some(e)) => {
                        Err(serde_json::from_value::<ErrorObject>(e).map_err(|_| {
                            ParseError::Invalid {
                                reason: "error must have an integer code and a string message",
                                id: id.clone(),
                            }
                        })?)
                    }
                    _ => {
                        return Err(ParseError::Invalid {
                            reason: "a response needs exactly one of result and error",
                            id,
                        });
                    }
                };
                if id.is_none() && outcome.is_ok() {
                    return Err(ParseError::Invalid {
                        reason: "a result response needs an id",
                        id: None,
                    });
                }
                Ok(Message::Response(Response { id, outcome }))
            }
        }
    }

    /// Serializes to compact JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        // Serializing a tree of `Value`s and strings into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The method name for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request(r) => Some(&r.method),
            Message::Notification(n) => Some(&n.method),
            Message::Response(_) => None,
        }
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Request(r) => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("jsonrpc", "2.0")?;
                m.serialize_entry("id", &r.id)?;
                m.serialize_entry("method", &r.method)?;
                if let Some(p) = &r.params {
                    m.serialize_entry("params", p)?;
                }
                m.end()
            }
            Message::Notification(n) => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("jsonrpc", "2.0")?;
                m.serialize_entry("method", &n.method)?;
                if let Some(p) = &n.params {
                    m.serialize_entry("params", p)?;
                }
                m.end()
            }
            Message::Response(r) => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("jsonrpc", "2.0")?;
                m.serialize_entry("id", &r.id)?;
                match &r.outcome {
                    Ok(v) => m.serialize_entry("result", v)?,
                    Err(e) => m.serialize_entry("error", e)?,
                }
                m.end()
            }
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}
impl From<Notification> for Message {
    fn from(n: Notification) -> Self {
        Message::Notification(n)
    }
}
impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}

/// `params` as an object, if it is one.
pub fn params_object(params: &Option<Value>) -> Option<&Map<String, Value>> {
    params.as_ref().and_then(Value::as_object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<Message, ParseError> {
        Message::parse(s.as_bytes(), 1 << 20)
    }

    #[test]
    fn classifies_messages() {
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Message::Request(Request { id: Id::Num(1), .. }))
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification(_))
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Message::Response(Response { outcome: Ok(_), .. }))
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":"a","error":{"code":-1,"message":"x"}}"#),
            Ok(Message::Response(Response {
                outcome: Err(_),
                ..
            }))
        ));
    }

    #[test]
    fn refuses_what_mcp_forbids() {
        let batch = parse(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap_err();
        assert_eq!(batch, ParseError::Batch);
        assert_eq!(batch.code(), codes::INVALID_REQUEST);
        let null_id = parse(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).unwrap_err();
        assert_eq!(null_id.code(), codes::INVALID_REQUEST);
        let bad_json = parse(r#"{"jsonrpc":"2.0""#).unwrap_err();
        assert_eq!(bad_json.code(), codes::PARSE_ERROR);
        let bad_batch = parse(r#"[{"jsonrpc""#).unwrap_err();
        assert_eq!(bad_batch.code(), codes::PARSE_ERROR);
        let no_version = parse(r#"{"id":3,"method":"ping"}"#).unwrap_err();
        assert_eq!(no_version.id(), Some(Id::Num(3)));
        assert!(matches!(
            Message::parse(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}", 100),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            Message::parse(&[b' '; 11], 10),
            Err(ParseError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
        let deep = "[".repeat(10_000);
        assert!(Message::parse(deep.as_bytes(), 1 << 20).is_err());
    }

    #[test]
    fn round_trip_preserves_unknown_fields() {
        let src = json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
            "params":{"name":"x","arguments":{"a":1},"zzz":{"future":true},"_meta":{"k":"v"}}});
        let msg = Message::from_value(src.clone()).unwrap();
        let back: Value = serde_json::from_slice(&msg.to_vec()).unwrap();
        assert_eq!(back, src);
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::parse(&bytes, 1024);
        }

        #[test]
        fn requests_round_trip(id in any::<i64>(), method in "[a-z/]{1,20}", k in "[a-z]{1,8}", v in any::<i32>()) {
            let src = json!({"jsonrpc":"2.0","id":id,"method":method,"params":{k: v}});
            let msg = Message::from_value(src.clone()).unwrap();
            let back: Value = serde_json::from_slice(&msg.to_vec()).unwrap();
            prop_assert_eq!(back, src);
        }
    }
}
