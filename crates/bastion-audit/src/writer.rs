//! The appender: one thread owns the file, the chain state and the fsyncs.
//!
//! Invariants:
//! - records are written in the order [`Writer::append`] was called, each
//!   with the next sequence number and the hash of the line before it,
//!   across restarts and rotations;
//! - [`Writer::durable`] never counts an event before it is written and, unless
//!   the fsync policy is `dangerous_none`, synced to disk: callers that wait for
//!   it (the gateway, before it answers a request) never lose an answered
//!   request's record in a crash;
//! - nothing is dropped: a full queue makes [`Writer::healthy`] false (the
//!   gateway then refuses new requests) while events already in flight are
//!   still queued; a write error also makes it false, for good;
//! - a torn last line left by a crash is moved aside and reported in the log
//!   itself, never silently dropped or chained over.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};

use crate::chain::{self, GENESIS, Signer};

/// When appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// `fdatasync` after every record.
    Always,
    /// `fdatasync` after every batch the writer drains (group commit): the
    /// default.
    Batch,
    /// Never (the OS decides): a crash can lose answered requests' records.
    DangerousNone,
}

/// Writer settings.
#[derive(Debug)]
pub struct WriterConfig {
    /// The live file; rotated files sit beside it as `<path>.<first seq>`.
    pub path: PathBuf,
    /// Signs checkpoints.
    pub signer: Signer,
    /// A checkpoint after this many records (and at rotation and close).
    pub checkpoint_every: u64,
    /// Also a checkpoint when records have waited this long without one and
    /// the writer is idle.
    pub checkpoint_idle: Duration,
    /// Sync policy.
    pub fsync: Fsync,
    /// Rotate when the live file grows past this many bytes.
    pub rotate_bytes: u64,
    /// Queue length past which [`Writer::healthy`] turns false.
    pub max_queue: usize,
}

struct Shared {
    queue: Mutex<VecDeque<Value>>,
    wake: Condvar,
    closing: AtomicBool,
    failed: AtomicBool,
    enqueued: AtomicU64,
    depth: AtomicUsize,
    max_queue: usize,
    durable: tokio::sync::watch::Sender<u64>,
}

/// The handle the gateway holds.
pub struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    kid: String,
    public: String,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("kid", &self.kid)
            .field("depth", &self.queue_depth())
            .finish_non_exhaustive()
    }
}

/// Where the chain stands in the live file.
struct State {
    next_seq: u64,
    prev: String,
    first_seq: u64,
    bytes: u64,
    /// The last record is not a checkpoint (a crash left records unsigned):
    /// the next checkpoint covers them.
    uncovered: bool,
}

/// Rotated siblings of `path`: `(first seq, file)`, oldest first.
pub fn rotated(path: &Path) -> Vec<(u64, PathBuf)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let digits = n.strip_prefix(&prefix)?;
                    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| digits.parse().ok().map(|s| (s, e.path())))?
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// (seq, hash, is a checkpoint) of the last line.
fn last_record(data: &[u8]) -> Option<(u64, String, bool)> {
    let body = data.strip_suffix(b"\n")?;
    let line = body.rsplit(|b| *b == b'\n').next()?;
    let v = serde_json::from_slice::<Value>(line).ok()?;
    let seq = v.get("seq")?.as_u64()?;
    Some((seq, chain::hash(line), v.get("checkpoint").is_some()))
}

/// The sequence number after `seq`, the last one in `path`: an error when
/// there is none (no chain reaches 2^64 records; wrapping to 0 would restart it).
fn next_after(seq: u64, path: &Path) -> std::io::Result<u64> {
    seq.checked_add(1).ok_or_else(|| {
        std::io::Error::other(format!(
            "{}: sequence number {seq} has no successor",
            path.display()
        ))
    })
}

/// Reads where the chain stands; moves a torn tail aside. Returns the state
/// and, when something had to be repaired, what (to be recorded first).
fn recover(path: &Path) -> std::io::Result<(State, Option<String>)> {
    let mut data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut note = None;
    let complete = data
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i.saturating_add(1));
    if complete < data.len() {
        let torn = data.get(complete..).unwrap_or_default().to_vec();
        // A whole record that only lacks its newline is kept.
        let expected = last_record(data.get(..complete).unwrap_or_default());
        let whole = serde_json::from_slice::<Value>(&torn)
            .ok()
            .is_some_and(|v| {
                let seq = v.get("seq").and_then(Value::as_u64);
                let prev = v.get("prev").and_then(Value::as_str);
                match &expected {
                    Some((s, h, _)) => {
                        s.checked_add(1).is_some_and(|n| seq == Some(n)) && prev == Some(h.as_str())
                    }
                    None => seq == Some(0) && prev == Some(GENESIS),
                }
            })
            && crate::canonical::to_vec(
                &serde_json::from_slice::<Value>(&torn).unwrap_or(Value::Null),
            )
            .is_ok_and(|c| c == torn);
        if whole {
            let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
            f.write_all(b"\n")?;
            f.sync_data()?;
            data.push(b'\n');
        } else {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let aside = PathBuf::from(format!("{}.torn-{ms}", path.display()));
            std::fs::write(&aside, &torn)?;
            let f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.set_len(complete as u64)?;
            f.sync_data()?;
            data.truncate(complete);
            note = Some(format!(
                "torn last record from an earlier crash: {} bytes at offset {complete} (sha256 {}) moved to {}",
                torn.len(),
                chain::hash(&torn),
                aside.display()
            ));
        }
    }
    let first_seq = data
        .split(|b| *b == b'\n')
        .next()
        .and_then(|l| serde_json::from_slice::<Value>(l).ok())
        .and_then(|v| v.get("seq").and_then(Value::as_u64));
    let (next_seq, prev, uncovered) = match last_record(&data) {
        Some((s, h, cp)) => (next_after(s, path)?, h, !cp),
        None => {
            // An empty live file continues the newest rotated one.
            match rotated(path).last() {
                Some((_, p)) => {
                    let d = std::fs::read(p)?;
                    let (s, h, cp) = last_record(&d).ok_or_else(|| {
                        std::io::Error::other(format!(
                            "{}: cannot continue the chain from this rotated file",
                            p.display()
                        ))
                    })?;
                    (next_after(s, p)?, h, !cp)
                }
                None => (0, GENESIS.to_owned(), false),
            }
        }
    };
    Ok((
        State {
            next_seq,
            prev,
            first_seq: first_seq.unwrap_or(next_seq),
            bytes: data.len() as u64,
            uncovered,
        },
        note,
    ))
}

impl Writer {
    /// Opens (creating) the log, recovers the chain, starts the writer thread.
    pub fn open(cfg: WriterConfig) -> std::io::Result<Writer> {
        if let Some(d) = cfg.path.parent()
            && !d.as_os_str().is_empty()
        {
            std::fs::create_dir_all(d)?;
        }
        let (state, note) = recover(&cfg.path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.path)?;
        let (durable, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            closing: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            enqueued: AtomicU64::new(0),
            depth: AtomicUsize::new(0),
            max_queue: cfg.max_queue,
            durable,
        });
        let kid = cfg.signer.kid().to_owned();
        let public = cfg.signer.public();
        let w = Writer {
            shared: shared.clone(),
            thread: Mutex::new(None),
            kid,
            public,
        };
        if let Some(n) = note {
            w.append(json!({"kind": "audit", "outcome": "error", "reason": n}));
        }
        let t = std::thread::Builder::new()
            .name("bastion-audit".into())
            .spawn(move || run(cfg, shared, file, state))?;
        *w.thread.lock() = Some(t);
        Ok(w)
    }

    /// Queues one event; returns its ticket (compare with [`Writer::durable`]).
    pub fn append(&self, event: Value) -> u64 {
        let mut q = self.shared.queue.lock();
        let was_empty = q.is_empty();
        q.push_back(event);
        self.shared.depth.store(q.len(), Ordering::Relaxed);
        let n = self
            .shared
            .enqueued
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1);
        drop(q);
        if was_empty {
            self.shared.wake.notify_one();
        }
        n
    }

    /// Tickets up to this one are written (and synced, per the policy).
    pub fn durable(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    /// The ticket of the last event queued.
    pub fn enqueued(&self) -> u64 {
        self.shared.enqueued.load(Ordering::SeqCst)
    }

    /// Waits until ticket `n` is durable (or the writer failed).
    pub async fn wait_durable(&self, n: u64) {
        let mut rx = self.shared.durable.subscribe();
        let failed = &self.shared.failed;
        let _ = rx
            .wait_for(|d| *d >= n || failed.load(Ordering::SeqCst))
            .await;
    }

    /// Events waiting to be written.
    pub fn queue_depth(&self) -> usize {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Whether events are being recorded and the queue is within bounds.
    pub fn healthy(&self) -> bool {
        !self.shared.failed.load(Ordering::SeqCst) && self.queue_depth() <= self.shared.max_queue
    }

    /// Whether a write failed (the trail is broken until restart).
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// The checkpoint key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The checkpoint public key, `ed25519:<base64>`.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// Writes everything queued, a final checkpoint, syncs, and stops.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

struct Run {
    cfg: WriterConfig,
    file: std::io::BufWriter<std::fs::File>,
    st: State,
    since_checkpoint: u64,
    last_append: Instant,
}

impl Run {
    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        // Checked before anything is written: the record numbered u64::MAX
        // would have no successor, so the trail fails (closed) instead.
        let next_seq = self
            .st
            .next_seq
            .checked_add(1)
            .ok_or_else(|| std::io::Error::other("audit sequence numbers exhausted"))?;
        self.file.write_all(line)?;
        self.file.write_all(b"\n")?;
        self.st.prev = chain::hash(line);
        self.st.next_seq = next_seq;
        self.st.bytes = self
            .st
            .bytes
            .saturating_add(line.len() as u64)
            .saturating_add(1);
        Ok(())
    }

    fn event(&mut self, ev: &Value) -> std::io::Result<()> {
        let line = match chain::event_line(self.st.next_seq, &self.st.prev, ev) {
            Ok(l) => l,
            // Recorded as a failure rather than lost.
            Err(e) => chain::event_line(
                self.st.next_seq,
                &self.st.prev,
                &json!({"kind": "audit", "outcome": "error",
                        "reason": format!("an event could not be recorded canonically: {e}")}),
            )
            .map_err(std::io::Error::other)?,
        };
        self.line(&line)?;
        self.since_checkpoint = self.since_checkpoint.saturating_add(1);
        if self.cfg.fsync == Fsync::Always {
            self.sync()?;
        }
        if self.since_checkpoint >= self.cfg.checkpoint_every {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> std::io::Result<()> {
        let line = self
            .cfg
            .signer
            .checkpoint_line(self.st.next_seq, &self.st.prev)
            .map_err(std::io::Error::other)?;
        self.line(&line)?;
        self.since_checkpoint = 0;
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        if self.cfg.fsync != Fsync::DangerousNone {
            self.file.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.since_checkpoint > 0 {
            self.checkpoint()?;
        }
        self.sync()?;
        let to = PathBuf::from(format!(
            "{}.{:020}",
            self.cfg.path.display(),
            self.st.first_seq
        ));
        std::fs::rename(&self.cfg.path, &to)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.cfg.path)?;
        self.file = std::io::BufWriter::new(f);
        if let Some(d) = self.cfg.path.parent() {
            // The rename and the new file survive a crash too.
            if let Ok(dir) = std::fs::File::open(if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }) {
                let _ = dir.sync_all();
            }
        }
        self.st.first_seq = self.st.next_seq;
        self.st.bytes = 0;
        Ok(())
    }
}

fn run(cfg: WriterConfig, shared: Arc<Shared>, file: std::fs::File, st: State) {
    let mut r = Run {
        file: std::io::BufWriter::with_capacity(1 << 16, file),
        cfg,
        since_checkpoint: u64::from(st.uncovered),
        st,
        last_append: Instant::now(),
    };
    let mut done: u64 = 0;
    loop {
        let batch: Vec<Value> = {
            let mut q = shared.queue.lock();
            while q.is_empty() && !shared.closing.load(Ordering::SeqCst) {
                let timed_out = shared
                    .wake
                    .wait_for(&mut q, r.cfg.checkpoint_idle)
                    .timed_out();
                if timed_out && q.is_empty() {
                    break;
                }
            }
            let b: Vec<Value> = q.drain(..).collect();
            shared.depth.store(0, Ordering::Relaxed);
            b
        };
        let closing = shared.closing.load(Ordering::SeqCst);
        let mut result: std::io::Result<()> = Ok(());
        let n = batch.len() as u64;
        for ev in &batch {
            if result.is_ok() {
                result = r.event(ev);
            }
        }
        if n > 0 {
            r.last_append = Instant::now();
        } else if r.since_checkpoint > 0 && r.last_append.elapsed() >= r.cfg.checkpoint_idle {
            // Idle with records not yet covered: sign them now, so a crash
            // leaves as little as possible outside a checkpoint.
            result = result.and_then(|()| r.checkpoint());
        }
        if closing && r.since_checkpoint > 0 {
            result = result.and_then(|()| r.checkpoint());
        }
        result = result.and_then(|()| r.sync());
        if result.is_ok() && r.st.bytes >= r.cfg.rotate_bytes {
            result = r.rotate();
        }
        if result.is_err() {
            // Fail closed: the gateway sees an unhealthy trail and refuses
            // requests; nothing more is written to a file in an unknown state.
            shared.failed.store(true, Ordering::SeqCst);
            shared.durable.send_modify(|_| {});
            return;
        }
        done = done.saturating_add(n);
        shared.durable.send_replace(done);
        if closing && shared.queue.lock().is_empty() {
            return;
        }
    }
}
