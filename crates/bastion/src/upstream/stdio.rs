//! stdio transport: an upstream child process speaking newline-delimited JSON-RPC.
//!
//! The child is started through `bastion_sandbox::spawn` (the only way this
//! workspace starts processes) with exactly the configured environment.
//!
//! Because stdio has no per-request streams, attribution is done here:
//! - progress tokens are rewritten to gateway-unique tokens on the way in and back
//!   on the way out, so progress reaches exactly the call that asked for it;
//! - log messages and server-initiated requests go to the newest in-flight call
//!   that has an event sink (the request being served), else to the context's
//!   unsolicited sink; list-changed and resource-updated notifications always go
//!   to the unsolicited sink;
//! - `ping` from the child is answered here.
//!
//! Lines that are not JSON-RPC are a protocol fault of the child: they are logged
//! and dropped, never relayed. stderr is read line by line, truncated, and logged
//! at debug level so a chatty child cannot grow gateway memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bastion_proto::{Id, Message, Request, Response, meta};
use bastion_sandbox::SpawnSpec;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, LinesCodec};

use super::http::MAX_MESSAGE;
use super::{ReplyPath, Upcall, UpcallTx, UpstreamError};
use crate::config::{UpstreamConfig, UpstreamTransport};

/// Encodes one message as a stdio frame (compact JSON never contains a raw
/// newline, so the frame is exactly one line).
pub fn frame(msg: &Message) -> Bytes {
    let mut v = msg.to_vec();
    v.push(b'\n');
    Bytes::from(v)
}

struct Pending {
    seq: u64,
    tx: oneshot::Sender<Result<Response, UpstreamError>>,
    events: Option<UpcallTx>,
    token: Option<String>,
}

struct Shared {
    upstream: usize,
    name: String,
    pending: Mutex<HashMap<Id, Pending>>,
    /// gateway progress token → (client's token, sink)
    progress: Mutex<HashMap<String, (Value, UpcallTx)>>,
    alive: AtomicBool,
    unsolicited: UpcallTx,
    writer: mpsc::Sender<Bytes>,
    list_changes: Arc<AtomicU64>,
}

/// One child process and its MCP connection.
pub struct StdioConn {
    shared: Arc<Shared>,
    seq: AtomicU64,
    child: Mutex<Option<tokio::process::Child>>,
}

impl StdioConn {
    pub(super) fn spawn(
        upstream: usize,
        cfg: &UpstreamConfig,
        unsolicited: UpcallTx,
        list_changes: Arc<AtomicU64>,
    ) -> Result<Self, UpstreamError> {
        let UpstreamTransport::Stdio {
            command,
            args,
            cwd,
            env,
            dangerous_inherit_env,
        } = &cfg.transport
        else {
            return Err(UpstreamError::Unavailable("not a stdio upstream".into()));
        };
        let spec = SpawnSpec {
            program: command.into(),
            args: args.iter().map(Into::into).collect(),
            cwd: cwd.clone(),
            env: env
                .iter()
                .map(|(k, v)| (k.into(), v.expose_secret().into()))
                .collect(),
            dangerous_inherit_env: *dangerous_inherit_env,
        };
        let mut child =
            bastion_sandbox::spawn(&spec).map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(UpstreamError::Unavailable(
                "child has no stdio pipes".into(),
            ));
        };
        let (wtx, mut wrx) = mpsc::channel::<Bytes>(256);
        let shared = Arc::new(Shared {
            upstream,
            name: cfg.name.clone(),
            pending: Mutex::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            unsolicited,
            writer: wtx,
            list_changes,
        });
        // Writer: one task owns stdin so frames are never interleaved.
        let ws = shared.clone();
        tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(frame) = wrx.recv().await {
                if stdin.write_all(&frame).await.is_err() || stdin.flush().await.is_err() {
                    ws.fail_all("the upstream process closed its input");
                    break;
                }
            }
        });
        // Reader.
        let rs = shared.clone();
        tokio::spawn(async move {
            let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_MESSAGE));
            while let Some(line) = lines.next().await {
                match line {
                    Ok(line) => rs.dispatch(&line).await,
                    Err(e) => {
                        tracing::warn!(upstream = %rs.name, error = %e, "unreadable output from upstream process");
                        break;
                    }
                }
            }
            rs.fail_all("the upstream process exited");
        });
        // stderr: bounded logging only.
        let name = cfg.name.clone();
        tokio::spawn(async move {
            let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(64 * 1024));
            while let Some(line) = lines.next().await {
                match line {
                    Ok(l) => {
                        let l: String = l.chars().take(1024).collect();
                        tracing::debug!(upstream = %name, stderr = %l);
                    }
                    Err(tokio_util::codec::LinesCodecError::MaxLineLengthExceeded) => continue,
                    Err(_) => break,
                }
            }
        });
        Ok(StdioConn {
            shared,
            seq: AtomicU64::new(0),
            child: Mutex::new(Some(child)),
        })
    }

    pub(super) fn alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// The child's stdin writer (frames are never interleaved: one task owns
    /// stdin).
    pub(super) fn writer(&self) -> mpsc::Sender<Bytes> {
        self.shared.writer.clone()
    }

    pub(super) async fn send(&self, msg: &Message) -> Result<(), UpstreamError> {
        if !self.alive() {
            return Err(UpstreamError::Unavailable(
                "the upstream process has exited".into(),
            ));
        }
        self.shared
            .writer
            .send(frame(msg))
            .await
            .map_err(|_| UpstreamError::Unavailable("the upstream process has exited".into()))
    }

    pub(super) async fn call(
        &self,
        mut req: Request,
        events: Option<UpcallTx>,
    ) -> Result<Response, UpstreamError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        // Rewrite the progress token so progress is attributed to this call only.
        let mut token = None;
        if let Some(sink) = &events
            && let Some(p) = req.params.as_mut()
            && let Some(m) = meta::meta_mut(p)
            && let Some(orig) = m.get("progressToken").cloned()
        {
            let t = format!("bastion-{}-{seq}", self.shared.upstream);
            m.insert("progressToken".into(), Value::from(t.clone()));
            self.shared
                .progress
                .lock()
                .insert(t.clone(), (orig, sink.clone()));
            token = Some(t);
        }
        let id = req.id.clone();
        self.shared.pending.lock().insert(
            id.clone(),
            Pending {
                seq,
                tx,
                events,
                token: token.clone(),
            },
        );
        let guard = PendingGuard {
            shared: &self.shared,
            id,
            token,
        };
        self.send(&Message::Request(req)).await?;
        let res = rx.await.unwrap_or_else(|_| {
            Err(UpstreamError::Unavailable(
                "the upstream process exited".into(),
            ))
        });
        drop(guard);
        res
    }

    pub(super) fn close(&self) {
        self.shared.fail_all("connection closed");
        if let Some(mut c) = self.child.lock().take() {
            // The whole process group: a server started through a wrapper
            // (`npx`, `sh -c`) leaves no grandchild behind (C6.7).
            bastion_sandbox::kill_tree(&mut c);
            // Reap in the background so no zombie is left.
            tokio::spawn(async move {
                let _ = c.wait().await;
            });
        }
    }
}

impl std::fmt::Debug for StdioConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioConn")
            .field("upstream", &self.shared.name)
            .field("alive", &self.alive())
            .finish_non_exhaustive()
    }
}

impl Drop for StdioConn {
    fn drop(&mut self) {
        self.close();
    }
}

/// Removes a call's bookkeeping however the call ends (including cancellation).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: Id,
    token: Option<String>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending.lock().remove(&self.id);
        if let Some(t) = &self.token {
            self.shared.progress.lock().remove(t);
        }
    }
}

impl Shared {
    fn fail_all(&self, why: &str) {
        self.alive.store(false, Ordering::SeqCst);
        let drained: Vec<Pending> = self.pending.lock().drain().map(|(_, p)| p).collect();
        for p in drained {
            let _ = p.tx.send(Err(UpstreamError::Unavailable(why.to_owned())));
        }
        self.progress.lock().clear();
    }

    /// The sink of the newest in-flight call that has one.
    fn current_sink(&self) -> Option<UpcallTx> {
        self.pending
            .lock()
            .values()
            .filter(|p| p.events.is_some())
            .max_by_key(|p| p.seq)
            .and_then(|p| p.events.clone())
    }

    /// Delivers a message toward the client without ever blocking the reader:
    /// a stalled consumer must not stop responses to every other call. A request
    /// that does not fit is handed to a task (the upstream waits for its answer);
    /// a notification that does not fit is dropped.
    async fn upcall(&self, sink: Option<UpcallTx>, msg: Message) {
        use tokio::sync::mpsc::error::TrySendError;
        super::note_list_change(&self.list_changes, &msg);
        let sink = sink.unwrap_or_else(|| self.unsolicited.clone());
        let up = Upcall {
            upstream: self.upstream,
            reply: ReplyPath::Stdio(self.writer.clone()),
            msg,
        };
        match sink.try_send(up) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(up)) => {
                if matches!(up.msg, Message::Request(_)) {
                    tokio::spawn(async move {
                        let _ = sink.send(up).await;
                    });
                } else {
                    tracing::debug!(upstream = %self.name, "client not reading; notification dropped");
                }
            }
        }
    }

    async fn dispatch(&self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        let msg = match Message::parse(line.as_bytes(), MAX_MESSAGE) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(upstream = %self.name, error = %e, "upstream wrote a line that is not JSON-RPC; dropped");
                return;
            }
        };
        match msg {
            Message::Response(r) => {
                let Some(id) = r.id.clone() else { return };
                let p = self.pending.lock().remove(&id);
                if let Some(p) = p {
                    if let Some(t) = &p.token {
                        self.progress.lock().remove(t);
                    }
                    let _ = p.tx.send(Ok(r));
                }
            }
            Message::Notification(mut n) => {
                if n.method == "notifications/progress" {
                    let tok = n
                        .params
                        .as_ref()
                        .and_then(|p| p.get("progressToken"))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let routed = tok.and_then(|t| self.progress.lock().get(&t).cloned());
                    if let (Some((orig, sink)), Some(p)) =
                        (routed, n.params.as_mut().and_then(Value::as_object_mut))
                    {
                        p.insert("progressToken".into(), orig);
                        self.upcall(Some(sink), Message::Notification(n)).await;
                    }
                    // Progress for no live call is dropped: it cannot be attributed.
                } else if let Some(sub) = n
                    .params
                    .as_ref()
                    .and_then(|p| meta::meta(Some(p)))
                    .and_then(|m| m.get(meta::SUBSCRIPTION_ID))
                    .and_then(Id::from_value)
                {
                    // 2026-07-28 listen streams tag notifications with the listen
                    // request's id: deliver to that call.
                    let sink = self.pending.lock().get(&sub).and_then(|p| p.events.clone());
                    self.upcall(sink, Message::Notification(n)).await;
                } else if n.method == "notifications/message" {
                    let sink = self.current_sink();
                    self.upcall(sink, Message::Notification(n)).await;
                } else {
                    self.upcall(None, Message::Notification(n)).await;
                }
            }
            Message::Request(r) => {
                if r.method == "ping" {
                    let _ = self
                        .writer
                        .send(frame(&Message::Response(Response::result(r.id, json!({})))))
                        .await;
                    return;
                }
                let sink = self.current_sink();
                self.upcall(sink, Message::Request(r)).await;
            }
        }
    }
}
