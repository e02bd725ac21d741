//! Task ids on both directions: sealed toward the client, opened toward the
//! upstream.
//!
//! A task id is a bearer-like handle the client passes back on `tasks/*`. The
//! id a client sees is never the upstream's: every task id an upstream sends
//! (a `CreateTaskResult`, a `Task` from `tasks/get`/`tasks/cancel`, a
//! `notifications/tasks/status`, the related-task `_meta` of a message) is
//! replaced by [`Sealer::seal_task`] of (principal, upstream, upstream id)
//! before it is delivered, and a `tasks/*` request is served only if its id
//! opens for the caller ([`open`]); the upstream then receives its own id.
//! So a client cannot aim a task request at another upstream, use another
//! principal's task, or probe an upstream with ids it did not get from it, and
//! every instance sharing the keyring routes a task without a shared table.
//!
//! Invariants: an upstream task id that cannot be sealed (too long) is never
//! delivered (the result becomes an error, the notification is dropped);
//! nothing but a sealed id reaches an upstream as `params.taskId`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bastion_proto::{ErrorObject, codes};
use serde_json::Value;

use crate::session::seal::{Sealer, TaskRef};

/// The `_meta` key of the task a message belongs to (2025-11-25 tasks).
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// The places a task id appears in a result or notification params: the
/// object itself (`Task`, `CreateTaskResult` of 2026-07-28, status
/// notifications), its `task` member (`CreateTaskResult` of 2025-11-25) and
/// the related-task `_meta`. Tool output is never rewritten.
fn id_slots(v: &mut Value) -> Vec<&mut Value> {
    let Some(obj) = v.as_object_mut() else {
        return Vec::new();
    };
    let mut slots = Vec::new();
    for (k, member) in obj.iter_mut() {
        match k.as_str() {
            "taskId" => slots.push(member),
            "task" => {
                if let Some(id) = member.get_mut("taskId") {
                    slots.push(id);
                }
            }
            "_meta" => {
                if let Some(id) = member
                    .get_mut(RELATED_TASK)
                    .and_then(|r| r.get_mut("taskId"))
                {
                    slots.push(id);
                }
            }
            _ => {}
        }
    }
    slots
}

/// Replaces every upstream task id in `v` (a result or notification params of
/// upstream `upstream`, delivered to `principal`) with its sealed id. The
/// upstream ids found are returned (to record who created them); an id that is
/// not a string or too long to seal is an upstream protocol error.
pub fn seal_ids(
    sealer: &Sealer,
    principal: &str,
    upstream: &str,
    v: &mut Value,
) -> Result<Vec<String>, ErrorObject> {
    let mut raw = Vec::new();
    for slot in id_slots(v) {
        let sealed = slot
            .as_str()
            .and_then(|t| {
                raw.push(t.to_owned());
                sealer.seal_task(principal, upstream, t)
            })
            .ok_or_else(|| {
                ErrorObject::new(
                    codes::UPSTREAM_UNAVAILABLE,
                    format!("upstream protocol error: {upstream} sent a task id that is not a string of at most {} bytes", crate::session::seal::MAX_TASK_ID),
                )
            })?;
        *slot = Value::from(sealed);
    }
    Ok(raw)
}

/// The upstream task a client's `taskId` names, if this gateway issued it to
/// `principal`.
pub fn open(sealer: &Sealer, principal: &str, task: &str) -> Option<TaskRef> {
    sealer.open_task(task, principal)
}

/// (upstream index, upstream task id) → who created the task through which
/// tool, so that `tasks/*` is decided against that tool. Local to an instance
/// and bounded; a task another instance created is decided against its
/// upstream instead (the sealed id already binds principal and upstream).
#[derive(Debug, Default)]
pub struct TaskOwners {
    m: parking_lot::Mutex<HashMap<(usize, String), TaskOwner>>,
}

/// Who created a task, through which tool.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskOwner {
    principal: String,
    tool: String,
    at: Instant,
}

impl TaskOwners {
    const MAX: usize = 100_000;
    const TTL: Duration = Duration::from_secs(86_400);

    /// Records that `principal` created upstream `upstream`'s `task` with `tool`.
    pub fn record(&self, upstream: usize, task: &str, principal: &str, tool: &str) {
        if task.len() > crate::session::seal::MAX_TASK_ID {
            return;
        }
        let mut m = self.m.lock();
        if m.len() >= Self::MAX {
            m.retain(|_, o| o.at.elapsed() < Self::TTL);
            if m.len() >= Self::MAX {
                // Full of live tasks: forget the oldest rather than grow.
                if let Some(k) = m.iter().min_by_key(|(_, o)| o.at).map(|(k, _)| k.clone()) {
                    m.remove(&k);
                }
            }
        }
        m.insert(
            (upstream, task.to_owned()),
            TaskOwner {
                principal: principal.to_owned(),
                tool: tool.to_owned(),
                at: Instant::now(),
            },
        );
    }

    /// The tool that created upstream `upstream`'s `task`, if `principal`
    /// created it here and it is still live.
    pub fn tool(&self, upstream: usize, task: &str, principal: &str) -> Option<String> {
        let m = self.m.lock();
        m.get(&(upstream, task.to_owned()))
            .filter(|o| o.at.elapsed() < Self::TTL && o.principal == principal)
            .map(|o| o.tool.clone())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is the test failing"
)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_task_id_slot_is_sealed_and_nothing_else() {
        let s = Sealer::random();
        let mut v = json!({
            "taskId": "t1",
            "task": {"taskId": "t1", "status": "working"},
            "_meta": {RELATED_TASK: {"taskId": "t1"}},
            "content": [{"type": "text", "text": "taskId t1"}],
            "structuredContent": {"taskId": "t1"},
        });
        let raw = seal_ids(&s, "alice", "files", &mut v).unwrap();
        assert_eq!(raw, vec!["t1", "t1", "t1"]);
        let sealed = s.seal_task("alice", "files", "t1").unwrap();
        assert_eq!(v["taskId"], sealed.as_str());
        assert_eq!(v["task"]["taskId"], sealed.as_str());
        assert_eq!(v["_meta"][RELATED_TASK]["taskId"], sealed.as_str());
        // Tool output is the tool's, not a task handle.
        assert_eq!(v["structuredContent"]["taskId"], "t1");
        assert_eq!(v["content"][0]["text"], "taskId t1");
        let back = open(&s, "alice", &sealed).unwrap();
        assert_eq!((back.u.as_str(), back.t.as_str()), ("files", "t1"));
        assert!(open(&s, "bob", &sealed).is_none());
    }

    #[test]
    fn an_unsealable_id_is_a_protocol_error() {
        let s = Sealer::random();
        for bad in [
            json!({"taskId": 7}),
            json!({"task": {"taskId": "x".repeat(5000)}}),
        ] {
            let mut v = bad;
            assert_eq!(
                seal_ids(&s, "alice", "files", &mut v).unwrap_err().code,
                codes::UPSTREAM_UNAVAILABLE
            );
        }
    }

    #[test]
    fn owners_are_per_upstream_and_principal() {
        let t = TaskOwners::default();
        t.record(2, "task-1", "iss alice", "long_job");
        assert_eq!(
            t.tool(2, "task-1", "iss alice").as_deref(),
            Some("long_job")
        );
        assert_eq!(t.tool(2, "task-1", "iss bob"), None);
        assert_eq!(t.tool(1, "task-1", "iss alice"), None);
        assert_eq!(t.tool(2, "task-2", "iss alice"), None);
    }
}
