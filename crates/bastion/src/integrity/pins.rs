//! Tool integrity at run time: the pins (every version of every tool,
//! prompt, resource template and instructions text an upstream has shown,
//! with who approved which and when), the standing of a definition seen now,
//! quarantine, and the operator's approve / reject / rollback.
//!
//! Invariants:
//! - per item at most one version is *accepted*; a definition is exposed and
//!   callable only when its hash is the accepted one (`strict`, `tofu`), or
//!   when it matches the upstream's signed manifest (which then decides
//!   alone), or, in `dangerous_monitor`, always, with every change reported;
//! - under `tofu` only the upstream's first inventory is approved by itself,
//!   and even then not a definition assessed high-risk; the baseline is per
//!   kind (tools, prompts, templates, instructions): a kind whose listing
//!   failed has none yet, its items are not exposed, and outside an inventory
//!   pass nothing of that kind is recorded (so the retried inventory can still
//!   take them as the baseline, and a session can never approve anything);
//! - every write is a compare-and-set on the record's revision, so two
//!   instances (Redis) or an operator and a detection never lose each other's
//!   update; the in-memory copy is replaced only after the store took it;
//! - every change of standing is one `integrity` audit event with the actor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::{AuditEvent, AuditSink, EventKind, Outcome};
use crate::config::{PinMode, UpstreamConfig};
use crate::integrity::{self, Assessment, DefKind, ForeignTool, Manifest, Schema};
use crate::state::store::{Store, StoreError};

/// A version's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Seen, waiting for an operator.
    Pending,
    /// Approved at some point (the accepted one is [`Record::accepted`]).
    Approved,
    /// Refused by an operator.
    Rejected,
}

/// One version of a definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    /// 1, 2, … in order of first sight.
    pub version: u32,
    /// `sha256:<hex>` of the canonical definition.
    pub hash: String,
    /// The definition as the upstream sent it.
    pub definition: Value,
    /// Its state.
    pub state: VersionState,
    /// First seen (seconds since the epoch).
    pub first_seen: u64,
    /// Who approved or rejected it (`tofu`, `signed manifest …`, an operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<u64>,
    /// The assessment when it was first seen.
    #[serde(default)]
    pub risk: u8,
    /// What the assessment noticed.
    #[serde(default)]
    pub findings: Vec<String>,
    /// Untrusted annotation hints.
    #[serde(default)]
    pub hints: Vec<String>,
}

/// Every version of one item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Upstream name.
    pub upstream: String,
    /// Kind (`tool`, `prompt`, `template`, `instructions`).
    pub kind: String,
    /// The upstream's own name (`""` for instructions).
    pub name: String,
    /// The one accepted version.
    pub accepted: Option<u32>,
    /// Versions, oldest first.
    pub versions: Vec<Version>,
    /// Store revision (not stored in the body).
    #[serde(skip)]
    pub rev: u64,
}

impl Record {
    fn accepted_version(&self) -> Option<&Version> {
        self.accepted
            .and_then(|a| self.versions.iter().find(|v| v.version == a))
    }

    fn by_hash(&self, hash: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.hash == hash)
    }

    /// The version an operator most likely means: the newest pending one.
    fn latest_pending(&self) -> Option<&Version> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.state == VersionState::Pending)
    }
}

/// Where a definition was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// In the gateway's own inventory pass (which takes the baselines).
    Inventory,
    /// In a client's session (a listing, a re-list).
    Session,
}

/// An upstream's baseline: when its first full inventory was taken and the
/// set hashes of its last one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Baseline {
    /// Upstream name.
    pub upstream: String,
    /// First complete inventory (seconds since the epoch).
    pub at: u64,
    /// Kind → set hash of the last inventory.
    pub sets: BTreeMap<String, String>,
    /// Kind → name → hash of the last inventory.
    #[serde(default)]
    pub items: BTreeMap<String, BTreeMap<String, String>>,
    /// Store revision.
    #[serde(skip)]
    pub rev: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Body {
    Pin(Record),
    Baseline(Baseline),
}

/// Most versions kept that are neither accepted nor ever approved (an
/// upstream that changes on every listing cannot grow the store without bound).
const MAX_UNAPPROVED: usize = 32;

/// Where a definition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The accepted version (or a manifest match).
    Approved,
    /// New or changed; waits for an operator.
    Pending,
    /// An operator refused it.
    Rejected,
    /// Approved once, but another version is the accepted one now.
    Superseded,
    /// Not the definition the signed manifest declares.
    ManifestMismatch,
    /// Scored as a likely injection while `[detection.tool_definitions] injection =
    /// "block"`: withheld in every mode until an operator approves it.
    Flagged,
    /// Not seen before (the caller records it).
    Unseen,
}

impl Standing {
    /// Why an item that is not exposed is not, for the client's error.
    pub fn reason(self) -> &'static str {
        match self {
            Standing::Approved => "approved",
            Standing::Pending => {
                "its definition is new or changed and awaits an operator's approval"
            }
            Standing::Rejected => "an operator rejected its current definition",
            Standing::Superseded => "its current definition is not the version in force",
            Standing::ManifestMismatch => {
                "its definition does not match the upstream's signed manifest"
            }
            Standing::Flagged => {
                "its definition was scored as a likely injection and awaits an operator's approval"
            }
            Standing::Unseen => "its definition has not been reviewed",
        }
    }

    /// Short name for events and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Approved => "approved",
            Standing::Pending => "pending",
            Standing::Rejected => "rejected",
            Standing::Superseded => "superseded",
            Standing::ManifestMismatch => "manifest_mismatch",
            Standing::Flagged => "flagged",
            Standing::Unseen => "unseen",
        }
    }
}

/// Why an operator action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No such item or version.
    #[error("{0}")]
    NotFound(String),
    /// The action does not apply.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Key = (String, DefKind, String);

fn store_key(upstream: &str, kind: DefKind, name: &str) -> String {
    format!("pin\u{1f}{upstream}\u{1f}{}\u{1f}{name}", kind.as_str())
}

fn baseline_key(upstream: &str) -> String {
    format!("baseline\u{1f}{upstream}")
}

/// Compiled schemas of one version: input, output.
type Compiled = Result<(Option<Arc<Schema>>, Option<Arc<Schema>>), String>;

/// Most manifest sightings remembered as already recorded.
const MAX_REPORTED: usize = 4096;

/// Most compiled schema pairs cached.
const MAX_SCHEMAS: usize = 4096;

/// The gateway's pins.
#[derive(Debug)]
pub struct Pins {
    records: RwLock<HashMap<Key, Arc<Record>>>,
    baselines: RwLock<HashMap<String, Baseline>>,
    modes: HashMap<String, PinMode>,
    manifests: HashMap<String, Manifest>,
    schemas: Mutex<HashMap<String, Compiled>>,
    /// Upstream name → the prefix its names are exposed under.
    prefixes: HashMap<String, String>,
    /// Manifest mismatches already reported (one event per definition).
    reported: Mutex<HashSet<(String, DefKind, String, String)>>,
    generation: AtomicU64,
    /// Serializes this process's writes (the store's compare-and-set guards
    /// against other processes).
    write: tokio::sync::Mutex<()>,
    /// Scores new definitions.
    engine: Arc<bastion_detect::Engine>,
    /// `[detection.tool_definitions]`.
    policy: bastion_detect::verdict::Policy,
}

fn now() -> u64 {
    bastion_auth::now_secs()
}

impl Pins {
    /// Pins for these upstreams, their manifests verified already; new definitions are
    /// scored by `engine` under `policy` (`[detection.tool_definitions]`).
    pub fn new(
        upstreams: &[UpstreamConfig],
        manifests: HashMap<String, Manifest>,
        engine: Arc<bastion_detect::Engine>,
        policy: bastion_detect::verdict::Policy,
    ) -> Pins {
        Pins {
            records: RwLock::new(HashMap::new()),
            baselines: RwLock::new(HashMap::new()),
            modes: upstreams.iter().map(|u| (u.name.clone(), u.pin)).collect(),
            manifests,
            schemas: Mutex::new(HashMap::new()),
            prefixes: upstreams
                .iter()
                .map(|u| (u.name.clone(), u.prefix.clone()))
                .collect(),
            reported: Mutex::new(HashSet::new()),
            generation: AtomicU64::new(u64::MAX),
            write: tokio::sync::Mutex::new(()),
            engine,
            policy,
        }
    }

    /// The upstream's mode.
    pub fn mode(&self, upstream: &str) -> PinMode {
        self.modes.get(upstream).copied().unwrap_or(PinMode::Strict)
    }

    /// Whether the upstream's definitions are governed by a signed manifest.
    pub fn has_manifest(&self, upstream: &str) -> bool {
        self.manifests.contains_key(upstream)
    }

    /// Loads every record from the store (start-up, and when another
    /// instance wrote).
    pub async fn load(&self, store: &impl Store) -> Result<(), StoreError> {
        let generation = store.pins_generation().await?;
        let rows = store.pins_load().await?;
        let mut records = HashMap::new();
        let mut baselines = HashMap::new();
        for row in rows {
            match serde_json::from_str::<Body>(&row.body) {
                Ok(Body::Pin(mut r)) => {
                    r.rev = row.rev;
                    if let Some(kind) = DefKind::parse(&r.kind) {
                        records.insert((r.upstream.clone(), kind, r.name.clone()), Arc::new(r));
                    }
                }
                Ok(Body::Baseline(mut b)) => {
                    b.rev = row.rev;
                    baselines.insert(b.upstream.clone(), b);
                }
                Err(_) => tracing::warn!("ignoring a tool-integrity record that does not parse"),
            }
        }
        *self.records.write() = records;
        *self.baselines.write() = baselines;
        self.generation.store(generation, Ordering::Release);
        Ok(())
    }

    /// Reloads when another instance changed the store (Redis).
    pub async fn refresh(&self, store: &impl Store) -> Result<bool, StoreError> {
        let g = store.pins_generation().await?;
        if g == self.generation.load(Ordering::Acquire) {
            return Ok(false);
        }
        let _w = self.write.lock().await;
        self.load(store).await?;
        Ok(true)
    }

    /// Where a definition stands now (no I/O; the hot path).
    pub fn standing(&self, upstream: &str, kind: DefKind, name: &str, hash: &str) -> Standing {
        if let Some(m) = self.manifests.get(upstream)
            && let Some(items) = m.items.get(&kind)
        {
            return if items.get(name).is_some_and(|h| h == hash) {
                Standing::Approved
            } else {
                Standing::ManifestMismatch
            };
        }
        let records = self.records.read();
        let Some(r) = records.get(&(upstream.to_owned(), kind, name.to_owned())) else {
            return Standing::Unseen;
        };
        if r.accepted_version().is_some_and(|v| v.hash == hash) {
            return Standing::Approved;
        }
        // Only a version nobody decided on yet: an operator's approval or rejection stands.
        if self.policy.injection == bastion_detect::verdict::OnInjection::Block
            && r.by_hash(hash).is_some_and(|v| {
                v.state == VersionState::Pending && v.risk >= integrity::high_risk(&self.policy)
            })
        {
            return Standing::Flagged;
        }
        match r.by_hash(hash).map(|v| v.state) {
            Some(VersionState::Pending) => Standing::Pending,
            Some(VersionState::Rejected) => Standing::Rejected,
            Some(VersionState::Approved) => Standing::Superseded,
            None => Standing::Unseen,
        }
    }

    /// Whether this exact version is recorded (its definition kept).
    pub fn is_recorded(&self, upstream: &str, kind: DefKind, name: &str, hash: &str) -> bool {
        self.records
            .read()
            .get(&(upstream.to_owned(), kind, name.to_owned()))
            .is_some_and(|r| r.by_hash(hash).is_some())
    }

    /// Whether an item in this standing is shown and callable.
    pub fn exposed(&self, upstream: &str, standing: Standing) -> bool {
        match standing {
            Standing::Approved => true,
            Standing::ManifestMismatch | Standing::Flagged => false,
            Standing::Pending | Standing::Rejected | Standing::Superseded | Standing::Unseen => {
                self.mode(upstream) == PinMode::DangerousMonitor
            }
        }
    }

    /// Every tool of the other upstreams the pins know (for shadowing
    /// checks; a tool once seen counts even if it was since removed).
    fn foreign_tools(&self, upstream: &str) -> Vec<ForeignTool> {
        self.records
            .read()
            .values()
            .filter(|r| r.upstream != upstream && r.kind == DefKind::Tool.as_str())
            .map(|r| ForeignTool {
                upstream: r.upstream.clone(),
                exposed: format!(
                    "{}{}",
                    self.prefixes.get(&r.upstream).map_or("", String::as_str),
                    r.name
                ),
                name: r.name.clone(),
            })
            .collect()
    }

    /// Whether `upstream` has a baseline inventory of `kind`.
    pub fn has_baseline(&self, upstream: &str, kind: DefKind) -> bool {
        self.baselines
            .read()
            .get(upstream)
            .is_some_and(|b| b.sets.contains_key(kind.as_str()))
    }

    /// Records a definition whose standing is not `Approved`-and-known and
    /// returns its standing afterwards. New versions get an assessment and
    /// one audit event; versions already recorded are not recorded again.
    #[allow(
        clippy::too_many_arguments,
        reason = "one definition's full description"
    )]
    pub async fn observe(
        &self,
        store: &impl Store,
        audit: &dyn AuditSink,
        upstream: &str,
        kind: DefKind,
        name: &str,
        def: &Value,
        hash: &str,
        seen: Seen,
    ) -> Standing {
        let standing = self.standing(upstream, kind, name, hash);
        match standing {
            Standing::Approved if !self.manifests.contains_key(upstream) => return standing,
            Standing::Pending | Standing::Rejected | Standing::Superseded | Standing::Flagged => {
                return standing;
            }
            _ => {}
        }
        let manifest = self
            .manifests
            .get(upstream)
            .filter(|m| m.items.contains_key(&kind));
        let first_use = manifest.is_none()
            && self.mode(upstream) == PinMode::Tofu
            && !self.has_baseline(upstream, kind)
            && !self
                .records
                .read()
                .contains_key(&(upstream.to_owned(), kind, name.to_owned()));
        // Before its kind's baseline, a never-seen item seen by a session is
        // neither exposed nor recorded: the (retried) inventory decides it.
        if first_use && seen == Seen::Session {
            tracing::debug!(%upstream, kind = kind.as_str(), %name,
                "not exposed: no baseline inventory of this kind yet");
            return Standing::Unseen;
        }
        if manifest.is_some() {
            // The manifest decides; what was seen is recorded for history
            // once (the set is bounded: an upstream changing on every
            // listing cannot grow it without limit).
            let mut reported = self.reported.lock();
            if reported.len() >= MAX_REPORTED {
                reported.clear();
            }
            let key = (upstream.to_owned(), kind, name.to_owned(), hash.to_owned());
            if !reported.insert(key) {
                return standing;
            }
        }
        let assessment = integrity::assess(
            &self.engine,
            &self.policy,
            kind,
            def,
            upstream,
            &self.foreign_tools(upstream),
        );
        let approve = match manifest {
            Some(m) => (standing == Standing::Approved)
                .then(|| format!("signed manifest {}", m.digest.get(..16).unwrap_or(""))),
            // Trust on first use: only the inventory that takes the kind's
            // baseline, only items never seen, never a high-risk one.
            None => (first_use && assessment.risk < integrity::high_risk(&self.policy))
                .then(|| "tofu".to_owned()),
        };
        let r = self
            .record_version(store, upstream, kind, name, def, hash, &assessment, approve)
            .await;
        let after = match (&r, manifest) {
            (_, Some(_)) => standing,
            (Ok(_), None) => self.standing(upstream, kind, name, hash),
            // Nothing could be recorded: treat as unreviewed (fail closed
            // unless monitoring).
            (Err(_), None) => Standing::Unseen,
        };
        self.emit_seen(
            audit,
            upstream,
            kind,
            name,
            hash,
            def,
            &assessment,
            r.as_ref().ok(),
            after,
        );
        after
    }

    /// Adds `hash` as a new version (if it is not one yet): approved by
    /// `approved_by` and made the accepted one, or else pending.
    #[allow(clippy::too_many_arguments, reason = "one record's full description")]
    async fn record_version(
        &self,
        store: &impl Store,
        upstream: &str,
        kind: DefKind,
        name: &str,
        def: &Value,
        hash: &str,
        a: &Assessment,
        approved_by: Option<String>,
    ) -> Result<Arc<Record>, StoreError> {
        self.mutate(store, upstream, kind, name, |r| {
            if r.by_hash(hash).is_some() {
                return Ok(());
            }
            let (state, by, accept) = match &approved_by {
                Some(b) => (VersionState::Approved, Some(b.clone()), true),
                None => (VersionState::Pending, None, false),
            };
            let version = r
                .versions
                .iter()
                .map(|v| v.version)
                .max()
                .unwrap_or(0)
                .saturating_add(1);
            let t = now();
            r.versions.push(Version {
                version,
                hash: hash.to_owned(),
                definition: def.clone(),
                state,
                first_seen: t,
                decided_at: by.as_ref().map(|_| t),
                decided_by: by,
                risk: a.risk,
                findings: a.findings.clone(),
                hints: a.hints.clone(),
            });
            if accept {
                r.accepted = Some(version);
            }
            // Bound the never-approved versions (oldest first).
            let unapproved: Vec<u32> = r
                .versions
                .iter()
                .filter(|v| v.state != VersionState::Approved)
                .map(|v| v.version)
                .collect();
            if unapproved.len() > MAX_UNAPPROVED {
                let drop: HashSet<u32> = unapproved
                    .iter()
                    .take(unapproved.len().saturating_sub(MAX_UNAPPROVED))
                    .copied()
                    .collect();
                r.versions.retain(|v| !drop.contains(&v.version));
            }
            Ok(())
        })
        .await
        .map_err(|e| match e {
            ActionError::Store(s) => s,
            other => StoreError::Unavailable(other.to_string()),
        })
    }

    /// Applies `f` to the item's record and writes it (compare-and-set,
    /// retried when another writer came first).
    async fn mutate(
        &self,
        store: &impl Store,
        upstream: &str,
        kind: DefKind,
        name: &str,
        mut f: impl FnMut(&mut Record) -> Result<(), ActionError>,
    ) -> Result<Arc<Record>, ActionError> {
        let _w = self.write.lock().await;
        let key = (upstream.to_owned(), kind, name.to_owned());
        for _ in 0..8 {
            let mut r = match self.records.read().get(&key) {
                Some(r) => (**r).clone(),
                None => Record {
                    upstream: upstream.to_owned(),
                    kind: kind.as_str().to_owned(),
                    name: name.to_owned(),
                    accepted: None,
                    versions: Vec::new(),
                    rev: 0,
                },
            };
            f(&mut r)?;
            let body = serde_json::to_string(&Body::Pin(r.clone()))
                .map_err(|e| ActionError::Conflict(e.to_string()))?;
            if store
                .pin_cas(&store_key(upstream, kind, name), r.rev, &body)
                .await?
            {
                r.rev = r.rev.saturating_add(1);
                let r = Arc::new(r);
                self.records.write().insert(key, r.clone());
                return Ok(r);
            }
            // Another instance wrote first: take its version and try again.
            self.load(store).await?;
        }
        Err(ActionError::Store(StoreError::Unavailable(
            "tool-integrity record kept changing under concurrent writers".into(),
        )))
    }

    /// Records a completed inventory of `upstream`: the set hashes per kind.
    /// The first one is the baseline (the end of trust on first use).
    /// Returns the kinds whose set changed since the last inventory, with
    /// the names added and removed.
    pub async fn record_inventory(
        &self,
        store: &impl Store,
        audit: &dyn AuditSink,
        upstream: &str,
        items: BTreeMap<DefKind, BTreeMap<String, String>>,
    ) -> Result<(), StoreError> {
        let _w = self.write.lock().await;
        for _ in 0..8 {
            let prev = self.baselines.read().get(upstream).cloned();
            let mut b = prev.clone().unwrap_or_else(|| Baseline {
                upstream: upstream.to_owned(),
                at: now(),
                ..Baseline::default()
            });
            let mut changes = Vec::new();
            for (kind, now_items) in &items {
                let set = integrity::set_hash(now_items);
                let k = kind.as_str().to_owned();
                if let Some(p) = &prev
                    && p.sets.get(&k).is_some_and(|old| *old != set)
                {
                    let old_items = p.items.get(&k).cloned().unwrap_or_default();
                    let added: Vec<&String> = now_items
                        .keys()
                        .filter(|n| !old_items.contains_key(*n))
                        .collect();
                    let removed: Vec<&String> = old_items
                        .keys()
                        .filter(|n| !now_items.contains_key(*n))
                        .collect();
                    // A rename: a removed name whose definition, but for the
                    // name, reappears under an added one.
                    let renamed: Vec<(String, String)> = removed
                        .iter()
                        .filter_map(|r| {
                            let rdef = self.definition_of(upstream, *kind, r)?;
                            added.iter().find_map(|a| {
                                let adef = self.definition_of(upstream, *kind, a)?;
                                same_but_name(&rdef, &adef).then(|| ((*r).clone(), (*a).clone()))
                            })
                        })
                        .collect();
                    let changed: Vec<&String> = now_items
                        .iter()
                        .filter(|(n, h)| old_items.get(*n).is_some_and(|o| o != *h))
                        .map(|(n, _)| n)
                        .collect();
                    changes.push(json!({
                        "change": "set_changed", "kind": k,
                        "previous_set_hash": p.sets.get(&k), "set_hash": set,
                        "added": added, "removed": removed, "changed": changed,
                        "renamed": renamed.iter().map(|(a, b)| json!({"from": a, "to": b})).collect::<Vec<_>>(),
                    }));
                }
                b.sets.insert(k.clone(), set);
                b.items.insert(k, now_items.clone());
            }
            let body = serde_json::to_string(&Body::Baseline(b.clone()))
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            if store.pin_cas(&baseline_key(upstream), b.rev, &body).await? {
                b.rev = b.rev.saturating_add(1);
                let first = prev.is_none();
                self.baselines.write().insert(upstream.to_owned(), b);
                if first {
                    let mut ev = AuditEvent::new(EventKind::Integrity, Outcome::Ok);
                    ev.upstream = Some(upstream.to_owned());
                    ev.reason = Some(format!(
                        "baseline inventory recorded (pin mode {})",
                        self.mode(upstream).as_str()
                    ));
                    ev.change = Some(
                        json!({"change": "baseline", "mode": self.mode(upstream).as_str(),
                        "sets": items.iter().map(|(k, v)| (k.as_str().to_owned(), Value::from(integrity::set_hash(v)))).collect::<serde_json::Map<_, _>>()}),
                    );
                    audit.emit(ev);
                }
                for c in changes {
                    let mut ev = AuditEvent::new(EventKind::Integrity, Outcome::Ok);
                    ev.upstream = Some(upstream.to_owned());
                    ev.reason = Some("the upstream's set of definitions changed".into());
                    ev.change = Some(c);
                    audit.emit(ev);
                }
                return Ok(());
            }
            self.load(store).await?;
        }
        Err(StoreError::Unavailable(
            "baseline kept changing under concurrent writers".into(),
        ))
    }

    fn definition_of(&self, upstream: &str, kind: DefKind, name: &str) -> Option<Value> {
        let records = self.records.read();
        let r = records.get(&(upstream.to_owned(), kind, name.to_owned()))?;
        r.versions.last().map(|v| v.definition.clone())
    }

    /// The compiled input and output schemas of a tool version.
    pub fn schemas(&self, upstream: &str, name: &str, hash: &str) -> Compiled {
        if let Some(c) = self.schemas.lock().get(hash) {
            return c.clone();
        }
        let def = {
            let records = self.records.read();
            records
                .get(&(upstream.to_owned(), DefKind::Tool, name.to_owned()))
                .and_then(|r| r.by_hash(hash))
                .map(|v| v.definition.clone())
        };
        let Some(def) = def else {
            return Err("no recorded definition".into());
        };
        let compiled = compile_tool(&def);
        let mut s = self.schemas.lock();
        if s.len() >= MAX_SCHEMAS {
            s.clear();
        }
        s.insert(hash.to_owned(), compiled.clone());
        compiled
    }

    #[allow(clippy::too_many_arguments, reason = "one event's full description")]
    fn emit_seen(
        &self,
        audit: &dyn AuditSink,
        upstream: &str,
        kind: DefKind,
        name: &str,
        hash: &str,
        def: &Value,
        a: &Assessment,
        record: Option<&Arc<Record>>,
        standing: Standing,
    ) {
        let version = record.and_then(|r| r.by_hash(hash)).map(|v| v.version);
        let previous = record.and_then(|r| {
            r.accepted_version()
                .filter(|v| v.hash != hash)
                .or_else(|| r.versions.iter().rev().find(|v| v.hash != hash))
        });
        let (change, outcome) = match (standing, previous.is_some()) {
            (Standing::Approved, _) => ("pinned", Outcome::Ok),
            (Standing::ManifestMismatch, _) => ("manifest_mismatch", Outcome::Refused),
            (_, false) => ("added", Outcome::Refused),
            (_, true) => ("changed", Outcome::Refused),
        };
        let monitor = self.mode(upstream) == PinMode::DangerousMonitor
            && !matches!(standing, Standing::ManifestMismatch | Standing::Flagged);
        let outcome = if monitor { Outcome::Ok } else { outcome };
        let mut detail = json!({
            "change": change,
            "kind": kind.as_str(),
            "name": name,
            "version": version,
            "hash": hash,
            "standing": standing.as_str(),
            "mode": self.mode(upstream).as_str(),
            "risk": a.risk,
            "findings": a.findings,
            "hints": a.hints,
        });
        if let (Some(p), Some(obj)) = (previous, detail.as_object_mut()) {
            let (diff, total) = integrity::structured_diff(&p.definition, def);
            obj.insert("previous_version".into(), Value::from(p.version));
            obj.insert("previous_hash".into(), Value::from(p.hash.clone()));
            obj.insert(
                "diff".into(),
                serde_json::to_value(diff).unwrap_or(Value::Null),
            );
            obj.insert("diff_total".into(), Value::from(total));
        }
        let mut ev = AuditEvent::new(EventKind::Integrity, outcome);
        ev.upstream = Some(upstream.to_owned());
        ev.target = Some(name.to_owned());
        ev.reason = Some(match (change, monitor) {
            ("pinned", _) => format!("{} pinned", kind.as_str()),
            (_, true) => format!(
                "{} {change} (reported only: dangerous_monitor)",
                kind.as_str()
            ),
            _ => format!(
                "{} {change}: quarantined ({})",
                kind.as_str(),
                standing.reason()
            ),
        });
        ev.change = Some(integrity::defloat(detail));
        audit.emit(ev);
    }

    // ------------------------------------------------------------ operator

    /// Every item: its accepted version and pending count.
    pub fn list(&self, upstream: Option<&str>) -> Vec<Value> {
        let records = self.records.read();
        let mut out: Vec<&Arc<Record>> = records
            .values()
            .filter(|r| upstream.is_none_or(|u| r.upstream == u))
            .collect();
        out.sort_by(|a, b| (&a.upstream, &a.kind, &a.name).cmp(&(&b.upstream, &b.kind, &b.name)));
        out.into_iter()
            .map(|r| {
                let acc = r.accepted_version();
                json!({
                    "upstream": r.upstream, "kind": r.kind, "name": r.name,
                    "mode": self.mode(&r.upstream).as_str(),
                    "manifest": self.has_manifest(&r.upstream),
                    "accepted": acc.map(|v| v.version),
                    "hash": acc.map(|v| v.hash.clone()),
                    "approved_by": acc.and_then(|v| v.decided_by.clone()),
                    "pending": r.versions.iter().filter(|v| v.state == VersionState::Pending).count(),
                    "versions": r.versions.len(),
                })
            })
            .collect()
    }

    /// Every pending version, newest assessment first by risk.
    pub fn pending(&self) -> Vec<Value> {
        let records = self.records.read();
        let mut out = Vec::new();
        for r in records.values() {
            for v in r
                .versions
                .iter()
                .filter(|v| v.state == VersionState::Pending)
            {
                out.push((
                    v.risk,
                    json!({
                        "upstream": r.upstream, "kind": r.kind, "name": r.name,
                        "version": v.version, "hash": v.hash,
                        "accepted": r.accepted,
                        "first_seen": v.first_seen, "risk": v.risk,
                        "findings": v.findings, "hints": v.hints,
                        "why": self.why_pending(r, v),
                    }),
                ));
            }
        }
        out.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.to_string().cmp(&b.1.to_string()))
        });
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// Why a version waits for review, in the operator's words.
    fn why_pending(&self, r: &Record, v: &Version) -> String {
        let what = match r.accepted {
            Some(n) => format!("changed since the accepted v{n}"),
            None => "new: no version of it was ever approved".to_owned(),
        };
        let mode = self.mode(&r.upstream);
        let because = if self.manifests.contains_key(&r.upstream) {
            "the upstream's signed manifest does not list this definition".to_owned()
        } else if v.risk >= integrity::high_risk(&self.policy) {
            format!(
                "risk {} is at or above the review threshold {}",
                v.risk,
                integrity::high_risk(&self.policy)
            )
        } else {
            match (mode, r.accepted) {
                (PinMode::Strict, _) => {
                    "pin mode strict: every definition needs an approval".to_owned()
                }
                (_, Some(_)) => {
                    format!("pin mode {}: every change needs an approval", mode.as_str())
                }
                (_, None)
                    if DefKind::parse(&r.kind)
                        .is_some_and(|k| self.has_baseline(&r.upstream, k)) =>
                {
                    "it appeared after the first inventory (trust on first use is over)".to_owned()
                }
                (_, None) => "no first inventory of this kind yet (it is retried)".to_owned(),
            }
        };
        format!("{what}; {because}")
    }

    fn get(&self, upstream: &str, kind: DefKind, name: &str) -> Result<Arc<Record>, ActionError> {
        self.records
            .read()
            .get(&(upstream.to_owned(), kind, name.to_owned()))
            .cloned()
            .ok_or_else(|| {
                ActionError::NotFound(format!(
                    "no {} {name:?} recorded for upstream {upstream:?}",
                    kind.as_str()
                ))
            })
    }

    /// Every version of an item, definitions included.
    pub fn history(&self, upstream: &str, kind: DefKind, name: &str) -> Result<Value, ActionError> {
        let r = self.get(upstream, kind, name)?;
        Ok(integrity::defloat(json!({
            "upstream": r.upstream, "kind": r.kind, "name": r.name,
            "mode": self.mode(upstream).as_str(),
            "accepted": r.accepted,
            "versions": r.versions,
        })))
    }

    /// A unified diff between two versions (default: the accepted one and
    /// the newest pending one; for an item with one version, that version
    /// against nothing).
    pub fn diff(
        &self,
        upstream: &str,
        kind: DefKind,
        name: &str,
        from: Option<u32>,
        to: Option<u32>,
    ) -> Result<String, ActionError> {
        let r = self.get(upstream, kind, name)?;
        let pick = |v: Option<u32>, default: Option<&Version>, what: &str| {
            match v {
                Some(n) => r.versions.iter().find(|x| x.version == n),
                None => default,
            }
            .cloned()
            .ok_or_else(|| ActionError::NotFound(format!("no {what} version to compare")))
        };
        let b = pick(
            to,
            r.latest_pending().or_else(|| r.versions.last()),
            "pending",
        )?;
        // A new item has no earlier version: its whole definition is what
        // an approval would expose, shown as added.
        let earlier = r
            .accepted_version()
            .filter(|a| a.version != b.version)
            .or_else(|| r.versions.iter().rev().find(|v| v.version != b.version));
        let a = match (from, earlier) {
            (None, None) => None,
            (from, earlier) => Some(pick(from, earlier, "earlier")?),
        };
        let label = |v: &Version| {
            let acc = if r.accepted == Some(v.version) {
                ", accepted"
            } else {
                ""
            };
            format!(
                "{}/{} v{} ({:?}{acc}) {}",
                upstream,
                if name.is_empty() { kind.as_str() } else { name },
                v.version,
                v.state,
                v.hash
            )
        };
        Ok(match a {
            Some(a) => {
                integrity::unified_diff(&a.definition, &b.definition, &label(&a), &label(&b))
            }
            None => integrity::added_diff(&b.definition, &label(&b)),
        })
    }

    /// An operator's decision on one version.
    #[allow(clippy::too_many_arguments, reason = "one action's full description")]
    pub async fn decide(
        &self,
        store: &impl Store,
        audit: &dyn AuditSink,
        action: OperatorAction,
        upstream: &str,
        kind: DefKind,
        name: &str,
        version: Option<u32>,
        actor: &str,
    ) -> Result<Value, ActionError> {
        if !self.modes.contains_key(upstream) {
            return Err(ActionError::NotFound(format!(
                "no upstream {upstream:?} in the configuration"
            )));
        }
        if self
            .manifests
            .get(upstream)
            .is_some_and(|m| m.items.contains_key(&kind))
        {
            return Err(ActionError::Conflict(format!(
                "upstream {upstream:?}'s {}s are governed by its signed manifest: sign a new manifest instead",
                kind.as_str()
            )));
        }
        let current = self.get(upstream, kind, name)?;
        let target = match (action, version) {
            (_, Some(v)) => current
                .versions
                .iter()
                .find(|x| x.version == v)
                .map(|x| x.version)
                .ok_or_else(|| ActionError::NotFound(format!("no version {v} of {name:?}")))?,
            (OperatorAction::Rollback, None) => {
                return Err(ActionError::Conflict(
                    "rollback needs the version to return to (--to)".into(),
                ));
            }
            (_, None) => current
                .latest_pending()
                .map(|x| x.version)
                .ok_or_else(|| ActionError::Conflict(format!("{name:?} has no pending version")))?,
        };
        let previous = current.accepted;
        let t = now();
        let record = self
            .mutate(store, upstream, kind, name, |r| {
                let accepted = r.accepted;
                let v = r
                    .versions
                    .iter_mut()
                    .find(|x| x.version == target)
                    .ok_or_else(|| ActionError::NotFound(format!("no version {target}")))?;
                match action {
                    OperatorAction::Approve => {
                        if accepted == Some(target) {
                            return Err(ActionError::Conflict(format!(
                                "version {target} is already the accepted one"
                            )));
                        }
                        v.state = VersionState::Approved;
                        v.decided_by = Some(actor.to_owned());
                        v.decided_at = Some(t);
                        r.accepted = Some(target);
                    }
                    OperatorAction::Reject => {
                        if accepted == Some(target) {
                            return Err(ActionError::Conflict(format!(
                                "version {target} is the accepted one: roll back to another instead"
                            )));
                        }
                        v.state = VersionState::Rejected;
                        v.decided_by = Some(actor.to_owned());
                        v.decided_at = Some(t);
                    }
                    OperatorAction::Rollback => {
                        if v.state != VersionState::Approved {
                            return Err(ActionError::Conflict(format!(
                                "version {target} was never approved; approve it instead"
                            )));
                        }
                        if accepted == Some(target) {
                            return Err(ActionError::Conflict(format!(
                                "version {target} is already the accepted one"
                            )));
                        }
                        r.accepted = Some(target);
                    }
                }
                Ok(())
            })
            .await?;
        let v = record
            .versions
            .iter()
            .find(|x| x.version == target)
            .cloned();
        let mut ev = AuditEvent::new(EventKind::Integrity, Outcome::Ok);
        ev.upstream = Some(upstream.to_owned());
        ev.target = Some(name.to_owned());
        ev.principal = Some(actor.to_owned());
        ev.reason = Some(format!(
            "{} {name:?} version {target} {}",
            kind.as_str(),
            action.past()
        ));
        ev.change = Some(json!({
            "change": action.past(), "kind": kind.as_str(), "name": name,
            "version": target, "hash": v.as_ref().map(|v| v.hash.clone()),
            "previous_accepted": previous, "accepted": record.accepted, "actor": actor,
        }));
        audit.emit(ev);
        Ok(json!({
            "upstream": upstream, "kind": kind.as_str(), "name": name,
            "version": target, "accepted": record.accepted, "action": action.past(),
        }))
    }
}

/// What an operator does to a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAction {
    /// Make it the accepted version.
    Approve,
    /// Refuse it.
    Reject,
    /// Make an earlier approved version the accepted one again.
    Rollback,
}

impl OperatorAction {
    fn past(self) -> &'static str {
        match self {
            OperatorAction::Approve => "approved",
            OperatorAction::Reject => "rejected",
            OperatorAction::Rollback => "rolled_back",
        }
    }
}

fn same_but_name(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("name");
        }
        integrity::canonical(&v)
    };
    strip(a) == strip(b)
}

/// Compiles a tool definition's `inputSchema` and `outputSchema`.
fn compile_tool(def: &Value) -> Compiled {
    let input = match def.get("inputSchema") {
        Some(s) => Some(integrity::compile(s).map_err(|e| format!("inputSchema: {e}"))?),
        None => None,
    };
    let output = match def.get("outputSchema") {
        Some(s) => Some(integrity::compile(s).map_err(|e| format!("outputSchema: {e}"))?),
        None => None,
    };
    Ok((input, output))
}
