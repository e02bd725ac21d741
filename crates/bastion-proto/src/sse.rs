//! Server-Sent Events codec (the `text/event-stream` framing of Streamable HTTP).
//!
//! The decoder is incremental and bounded: bytes arrive in arbitrary chunks, every
//! line ending (`\n`, `\r\n`, `\r`) is accepted, comments (`:` lines, used as
//! keep-alives) are skipped, and an event larger than the configured limit is an
//! error instead of unbounded buffering. Events with an `id:` but empty data (the
//! 2025-11-25 "priming" event) are still reported so callers can track the last
//! event id, and callers skip them as messages.

use bytes::{Bytes, BytesMut};

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// `id:` field, if any.
    pub id: Option<String>,
    /// `event:` field, if any (`message` when absent, by the SSE rules).
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// `retry:` reconnection delay in milliseconds.
    pub retry: Option<u64>,
}

impl Event {
    /// Whether this event carries a JSON-RPC message (non-empty data of type `message`).
    pub fn is_message(&self) -> bool {
        !self.data.trim().is_empty() && self.event.as_deref().is_none_or(|e| e == "message")
    }
}

/// The decoder refused the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event (or a single line) exceeded the limit.
    #[error("SSE event exceeds {0} bytes")]
    TooLarge(usize),
    /// A field was not UTF-8.
    #[error("SSE stream is not valid UTF-8")]
    Utf8,
}

/// Incremental SSE decoder.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    current: Event,
    has_field: bool,
    event_bytes: usize,
    limit: usize,
    /// A `\r` ended the previous chunk: a `\n` that starts the next chunk belongs to it.
    pending_cr: bool,
}

impl Decoder {
    /// A decoder that refuses events larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            current: Event::default(),
            has_field: false,
            event_bytes: 0,
            limit,
            pending_cr: false,
        }
    }

    /// Feeds a chunk and returns every event it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut chunk = chunk;
        if self.pending_cr {
            self.pending_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            let Some(pos) = memchr::memchr2(b'\n', b'\r', &self.buf) else {
                if self.buf.len() > self.limit {
                    return Err(SseError::TooLarge(self.limit));
                }
                break;
            };
            let line = self.buf.split_to(pos);
            // Consume the terminator: `\r\n` counts as one line ending.
            let is_cr = self.buf.first() == Some(&b'\r');
            let _ = self.buf.split_to(1);
            if is_cr {
                match self.buf.first() {
                    Some(b'\n') => {
                        let _ = self.buf.split_to(1);
                    }
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            if let Some(ev) = self.line(&line)? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<Event>, SseError> {
        if line.is_empty() {
            self.event_bytes = 0;
            if !self.has_field {
                return Ok(None);
            }
            self.has_field = false;
            let mut ev = std::mem::take(&mut self.current);
            if ev.data.ends_with('\n') {
                ev.data.pop();
            }
            return Ok(Some(ev));
        }
        self.event_bytes = self.event_bytes.saturating_add(line.len());
        if self.event_bytes > self.limit {
            return Err(SseError::TooLarge(self.limit));
        }
        if line.first() == Some(&b':') {
            return Ok(None);
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::Utf8)?;
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.current.data.push_str(value);
                self.current.data.push('\n');
                self.has_field = true;
            }
            "id" if !value.contains('\0') => {
                self.current.id = Some(value.to_owned());
                self.has_field = true;
            }
            "event" => {
                self.current.event = Some(value.to_owned());
                self.has_field = true;
            }
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.current.retry = Some(ms);
                    self.has_field = true;
                }
            }
            _ => {}
        }
        Ok(None)
    }
}

/// Encodes one `message` event carrying `data` (a compact JSON document, which
/// never contains raw newlines; any that do appear are split into `data:` lines).
pub fn encode_message(id: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len().saturating_add(48));
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"event: message\n");
    for line in data.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

/// Encodes a priming event (an id and empty data) that lets a client resume
/// before the first message arrives.
pub fn encode_priming(id: &str, retry_ms: Option<u64>) -> Bytes {
    let mut s = format!("id: {id}\n");
    if let Some(r) = retry_ms {
        s.push_str(&format!("retry: {r}\n"));
    }
    s.push_str("data: \n\n");
    Bytes::from(s)
}

/// A keep-alive comment.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_priming_comments_and_messages() {
        let mut d = Decoder::new(1024);
        let evs = d
            .feed(b"id: p1\ndata: \n\n: keep\n\nevent: message\r\nid: 2\r\ndata: {\"a\":1}\r\n\r\n")
            .unwrap();
        assert_eq!(evs.len(), 2);
        assert!(!evs[0].is_message());
        assert_eq!(evs[0].id.as_deref(), Some("p1"));
        assert!(evs[1].is_message());
        assert_eq!(evs[1].data, "{\"a\":1}");
    }

    #[test]
    fn bounded() {
        let mut d = Decoder::new(16);
        assert_eq!(d.feed(&[b'x'; 40]), Err(SseError::TooLarge(16)));
        let mut d = Decoder::new(16);
        assert!(d.feed(b"data: 0123456789\ndata: 0123456789\n").is_err());
    }

    #[test]
    fn encode_decode_round_trip() {
        let enc = encode_message(Some("7"), br#"{"jsonrpc":"2.0"}"#);
        let mut d = Decoder::new(1024);
        let evs = d.feed(&enc).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data, r#"{"jsonrpc":"2.0"}"#);
        assert_eq!(evs[0].id.as_deref(), Some("7"));
    }

    proptest! {
        #[test]
        fn any_chunking_gives_same_events(split in 0usize..60, cr in any::<bool>()) {
            let nl = if cr { "\r\n" } else { "\n" };
            let src = format!("id: a{nl}data: one{nl}{nl}: c{nl}data: two{nl}data: three{nl}{nl}");
            let bytes = src.as_bytes();
            let split = split.min(bytes.len());
            let mut d = Decoder::new(1024);
            let mut evs = d.feed(&bytes[..split]).unwrap();
            evs.extend(d.feed(&bytes[split..]).unwrap());
            prop_assert_eq!(evs.len(), 2);
            prop_assert_eq!(&evs[0].data, "one");
            prop_assert_eq!(&evs[1].data, "two\nthree");
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut d = Decoder::new(64);
            let _ = d.feed(&bytes);
        }
    }
}
