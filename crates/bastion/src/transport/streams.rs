//! Resumable SSE streams on the 2025-11-25 lane (C3.4).
//!
//! Every message a session's SSE streams carry is logged under a stream number
//! and a sequence number, and its event id is `base64url(stream ‖ seq ‖ MAC)`
//! where the MAC (HMAC-SHA256 under the keyring's event-id key, truncated to 128
//! bits) binds the session id and the principal. So an event id cannot be
//! guessed, and one taken from another session or principal does not verify.
//! A client that lost a stream reconnects with GET and `Last-Event-ID`: the
//! gateway replays what that stream carried after the event, from a bounded log,
//! and then keeps delivering the stream's live messages until it ends.
//!
//! Invariants: replay never crosses sessions or principals (the MAC), the log is
//! bounded per stream and per session (oldest streams are dropped first), and a
//! message is appended to the log and handed to a resumer under one lock, so a
//! resumed stream has neither gaps nor duplicates.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;
use tokio::sync::mpsc;

/// Events kept per stream.
const MAX_EVENTS: usize = 256;
/// Streams kept per session.
const MAX_STREAMS: usize = 16;
/// Bytes kept per session across its streams.
const MAX_BYTES: usize = 8 << 20;

/// Mints and checks event ids.
pub struct EventIds {
    keys: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for EventIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventIds([REDACTED])")
    }
}

impl EventIds {
    /// Event ids under `keyring`'s event-id keys.
    pub fn new(keyring: &crate::state::keyring::Keyring) -> Self {
        EventIds {
            keys: keyring.derive_all(crate::state::keyring::Purpose::EventId),
        }
    }

    fn mac(key: &[u8; 32], session: &str, principal: &str, n: u32, seq: u32) -> [u8; 16] {
        let mut out = [0u8; 16];
        let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
            return out;
        };
        m.update(session.as_bytes());
        m.update(&[0]);
        m.update(principal.as_bytes());
        m.update(&[0]);
        m.update(&n.to_be_bytes());
        m.update(&seq.to_be_bytes());
        let full = m.finalize().into_bytes();
        for (o, b) in out.iter_mut().zip(full.iter()) {
            *o = *b;
        }
        out
    }

    /// The id of event `seq` of stream `n`.
    pub fn mint(&self, session: &str, principal: &str, n: u32, seq: u32) -> String {
        let Some((_, key)) = self.keys.first() else {
            return String::new();
        };
        let mut raw = Vec::with_capacity(24);
        raw.extend_from_slice(&n.to_be_bytes());
        raw.extend_from_slice(&seq.to_be_bytes());
        raw.extend_from_slice(&Self::mac(key, session, principal, n, seq));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// The (stream, seq) an id names, if it was minted for this session and
    /// principal (under any key of the keyring).
    pub fn verify(&self, id: &str, session: &str, principal: &str) -> Option<(u32, u32)> {
        if id.len() != 32 {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id)
            .ok()?;
        let n = u32::from_be_bytes(raw.get(0..4)?.try_into().ok()?);
        let seq = u32::from_be_bytes(raw.get(4..8)?.try_into().ok()?);
        let mac = raw.get(8..24)?;
        self.keys
            .iter()
            .any(|(_, k)| {
                let want = Self::mac(k, session, principal, n, seq);
                // Constant-time comparison: a timing side channel must not let a
                // forger learn the MAC byte by byte.
                want.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            })
            .then_some((n, seq))
    }
}

#[derive(Debug, Default)]
struct Log {
    events: VecDeque<(u32, Bytes)>,
    next_seq: u32,
    bytes: usize,
    done: bool,
    /// Whether this is the session's GET stream (resuming it continues as the
    /// GET stream) rather than a request's response stream.
    get: bool,
    /// A resumed GET stream waiting for this stream's live messages.
    resumer: Option<mpsc::Sender<(u32, Bytes)>>,
}

/// A session's stream logs.
#[derive(Debug, Default)]
pub struct StreamLogs {
    next: AtomicU32,
    logs: Mutex<HashMap<u32, Log>>,
}

/// What a resumption gets: the events after the client's last one, and the
/// stream's live messages if it has not ended.
#[derive(Debug)]
pub struct Resumed {
    /// Logged events after the last one the client saw.
    pub replay: Vec<(u32, Bytes)>,
    /// Live messages, until the stream ends (`None`: it already has).
    pub live: Option<mpsc::Receiver<(u32, Bytes)>>,
    /// Whether it was the session's GET stream.
    pub get: bool,
}

impl StreamLogs {
    /// Starts a new response stream; returns its number.
    pub fn open(&self) -> u32 {
        self.open_kind(false)
    }

    /// Starts a new GET stream; returns its number.
    pub fn open_get(&self) -> u32 {
        self.open_kind(true)
    }

    /// Reopens GET stream `n` after a resumption (it continues its sequence).
    pub fn reopen(&self, n: u32) {
        if let Some(log) = self.logs.lock().get_mut(&n) {
            log.done = false;
        }
    }

    fn open_kind(&self, get: bool) -> u32 {
        let n = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let mut logs = self.logs.lock();
        if logs.len() >= MAX_STREAMS
            && let Some(oldest) = logs.keys().min().copied()
        {
            logs.remove(&oldest);
        }
        logs.insert(
            n,
            Log {
                get,
                ..Log::default()
            },
        );
        n
    }

    /// Records `msg` on stream `n`; returns its sequence number. A resumer
    /// waiting for this stream receives it too.
    pub fn record(&self, n: u32, msg: Bytes) -> u32 {
        let mut logs = self.logs.lock();
        let total: usize = logs.values().map(|l| l.bytes).sum();
        let Some(log) = logs.get_mut(&n) else {
            return 0;
        };
        log.next_seq = log.next_seq.wrapping_add(1);
        let seq = log.next_seq;
        if let Some(tx) = &log.resumer
            && tx.try_send((seq, msg.clone())).is_err()
        {
            // A resumer that cannot keep up is dropped; the log still has it.
            log.resumer = None;
        }
        log.bytes = log.bytes.saturating_add(msg.len());
        log.events.push_back((seq, msg));
        let mut over = total.saturating_add(log.bytes) > MAX_BYTES;
        while log.events.len() > MAX_EVENTS || (over && log.events.len() > 1) {
            if let Some((_, old)) = log.events.pop_front() {
                log.bytes = log.bytes.saturating_sub(old.len());
            }
            over = false;
        }
        seq
    }

    /// Marks stream `n` ended: a resumer gets what is logged and then the end.
    pub fn finish(&self, n: u32) {
        if let Some(log) = self.logs.lock().get_mut(&n) {
            log.done = true;
            log.resumer = None;
        }
    }

    /// Resumes stream `n` after event `after`; `None` if the stream is unknown
    /// (never existed, or dropped from the log).
    pub fn resume(&self, n: u32, after: u32) -> Option<Resumed> {
        let mut logs = self.logs.lock();
        let log = logs.get_mut(&n)?;
        let replay = log
            .events
            .iter()
            .filter(|(s, _)| *s > after)
            .cloned()
            .collect();
        let live = if log.done || log.get {
            None
        } else {
            let (tx, rx) = mpsc::channel(MAX_EVENTS);
            log.resumer = Some(tx);
            Some(rx)
        };
        Some(Resumed {
            replay,
            live,
            get: log.get,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_bind_session_and_principal() {
        let ids = EventIds::new(&crate::state::keyring::Keyring::random());
        let id = ids.mint("s1", "iss alice", 3, 7);
        assert_eq!(ids.verify(&id, "s1", "iss alice"), Some((3, 7)));
        assert_eq!(ids.verify(&id, "s2", "iss alice"), None);
        assert_eq!(ids.verify(&id, "s1", "iss bob"), None);
        // Guessing: same shape, other numbers.
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&id)
            .unwrap();
        raw[7] ^= 1;
        let moved = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(ids.verify(&moved, "s1", "iss alice"), None);
        assert_eq!(ids.verify("garbage", "s1", "iss alice"), None);
        // Another gateway's keys.
        let other = EventIds::new(&crate::state::keyring::Keyring::random());
        assert_eq!(other.verify(&id, "s1", "iss alice"), None);
    }

    #[test]
    fn resume_replays_after_the_last_event_then_goes_live() {
        let logs = StreamLogs::default();
        let n = logs.open();
        for i in 1..=3 {
            assert_eq!(logs.record(n, Bytes::from(format!("m{i}"))), i);
        }
        let mut r = logs.resume(n, 1).unwrap();
        let got: Vec<u32> = r.replay.iter().map(|(s, _)| *s).collect();
        assert_eq!(got, [2, 3]);
        logs.record(n, Bytes::from("m4"));
        let live = r.live.as_mut().unwrap();
        assert_eq!(live.try_recv().unwrap().0, 4);
        logs.finish(n);
        assert!(live.try_recv().is_err());
        assert!(logs.resume(n, 0).unwrap().live.is_none());
        assert!(logs.resume(999, 0).is_none());
    }

    #[test]
    fn logs_are_bounded() {
        let logs = StreamLogs::default();
        let first = logs.open();
        for _ in 0..(MAX_EVENTS + 10) {
            logs.record(first, Bytes::from_static(b"x"));
        }
        let r = logs.resume(first, 0).unwrap();
        assert_eq!(r.replay.len(), MAX_EVENTS);
        for _ in 0..MAX_STREAMS {
            logs.open();
        }
        assert!(logs.resume(first, 0).is_none(), "oldest stream dropped");
    }
}
