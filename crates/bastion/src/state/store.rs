//! Where session records live: in this process (`embedded`) or in Redis
//! (`redis`), so several gateway instances behind a load balancer with no
//! affinity serve the same sessions.
//!
//! With Redis the store is authoritative: an instance that has no live context
//! for a session rebuilds one from the record (its upstream connections open on
//! demand), a session deleted or invalidated on one instance is gone for all of
//! them on their next request, and the idle timeout is the record's TTL
//! (refreshed by every access, `GETEX`, one round trip).
//!
//! Invariants:
//! - keys hold only digests of session ids and principals, never the ids;
//! - every value carries an HMAC-SHA256 under the keyring's store key, bound to
//!   its key name, so a value edited or moved in Redis is refused (C3.6);
//! - any store failure is an error the caller turns into 503 (fail closed); the
//!   connection manager reconnects by itself when Redis returns.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A session as stored (enough to rebuild its context anywhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Principal binding key (issuer and subject).
    pub principal: String,
    /// OAuth client id at creation.
    pub client_id: Option<String>,
    /// Scopes at creation.
    pub scopes: Vec<String>,
    /// Origin at creation.
    pub origin: Option<String>,
    /// User-Agent at creation.
    pub user_agent: Option<String>,
    /// Client address at creation.
    pub client_ip: Option<String>,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Negotiated protocol revision.
    pub version: String,
    /// The client's declared capabilities.
    pub capabilities: serde_json::Value,
    /// The client's `clientInfo`.
    pub client_info: serde_json::Value,
}

/// Store failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or answered an error.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A value failed its integrity check.
    #[error("session record failed its integrity check")]
    Tampered,
}

/// The configured backend: the embedded store or Redis, each honouring
/// [`Store`]; the gateway holds one of these.
#[derive(Debug)]
pub enum Backend {
    /// Sessions in this process; durable state (revocations) in SQLite.
    Embedded(Sqlite),
    /// Redis, shared by every instance.
    Redis(Box<RedisStore>),
}

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    /// A token id (`jti`).
    Token,
    /// A principal (issuer and subject).
    Subject,
}

impl RevocationKind {
    fn tag(self) -> &'static str {
        match self {
            RevocationKind::Token => "t",
            RevocationKind::Subject => "s",
        }
    }
}

/// Revocations as loaded: (`jti`, until) and principal keys.
pub type RevocationList = (Vec<(String, u64)>, Vec<String>);

/// The embedded backend's durable part: a SQLite file (rusqlite, bundled),
/// opened on first use. Without a path, durable state stays in memory.
///
/// SQLite is synchronous (and `synchronous = FULL` waits for the disk), so
/// every statement runs on tokio's blocking pool, never on an async worker:
/// a slow or full disk delays the requests that need the database, not every
/// request the worker would have served.
#[derive(Debug, Clone)]
pub struct Sqlite {
    inner: std::sync::Arc<SqliteInner>,
}

#[derive(Debug)]
struct SqliteInner {
    path: Option<std::path::PathBuf>,
    conn: parking_lot::Mutex<Option<rusqlite::Connection>>,
}

impl Sqlite {
    /// A store at `path` (`None`: nothing persisted).
    pub fn new(path: Option<std::path::PathBuf>) -> Self {
        Sqlite {
            inner: std::sync::Arc::new(SqliteInner {
                path,
                conn: parking_lot::Mutex::new(None),
            }),
        }
    }

    /// Runs `f` on the open database (created on first use), on the blocking
    /// pool. `Ok(None)`: there is no database file.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<Option<T>, StoreError> {
        if self.inner.path.is_none() {
            return Ok(None);
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.run(f))
            .await
            .map_err(|e| StoreError::Unavailable(format!("SQLite task failed: {e}")))?
    }
}

impl SqliteInner {
    fn run<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let fail = |e: rusqlite::Error| StoreError::Unavailable(format!("SQLite: {e}"));
        let mut guard = self.conn.lock();
        if guard.is_none() {
            let c = rusqlite::Connection::open(path).map_err(fail)?;
            c.busy_timeout(Duration::from_secs(2)).map_err(fail)?;
            c.execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 CREATE TABLE IF NOT EXISTS revocations (
                     kind TEXT NOT NULL, value TEXT NOT NULL, until INTEGER NOT NULL,
                     PRIMARY KEY (kind, value));
                 CREATE TABLE IF NOT EXISTS pins (
                     key TEXT PRIMARY KEY, rev INTEGER NOT NULL, body TEXT NOT NULL);",
            )
            .map_err(fail)?;
            *guard = Some(c);
        }
        match guard.as_ref() {
            Some(c) => f(c).map(Some).map_err(fail),
            None => Ok(None),
        }
    }
}

/// What the gateway keeps beyond one request, whoever holds it: the contract
/// both backends honour (the embedded SQLite file and Redis), and all that
/// integrity, revocation and incident response may assume of a store.
///
/// Every method fails with [`StoreError::Unavailable`] rather than block or
/// guess, and a value that fails its integrity check is never returned as
/// good; callers fail closed on an error.
pub trait Store: Send + Sync {
    /// Records a revocation durably (and, with Redis, for every instance).
    fn add_revocation(
        &self,
        kind: RevocationKind,
        value: &str,
        until: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes a revocation; returns whether there was one.
    fn remove_revocation(
        &self,
        kind: RevocationKind,
        value: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every live revocation.
    fn revocations(&self) -> impl Future<Output = Result<RevocationList, StoreError>> + Send;

    /// Every tool-integrity record (a Redis entry that fails its integrity
    /// check is left out and logged: the item then counts as never seen, so
    /// it is quarantined rather than trusted).
    fn pins_load(&self) -> impl Future<Output = Result<Vec<PinRow>, StoreError>> + Send;

    /// Writes `body` as revision `expected + 1` of `key` if the stored
    /// revision is still `expected` (0: absent). `false`: someone else wrote
    /// first; reload and retry. Without a database file the write is
    /// accepted (the caller's memory is the only copy).
    fn pin_cas(
        &self,
        key: &str,
        expected: u64,
        body: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A number that changes whenever another instance writes a record
    /// (Redis); the embedded store has one writer, so it is constant.
    fn pins_generation(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl Store for Sqlite {
    async fn add_revocation(
        &self,
        kind: RevocationKind,
        value: &str,
        until: u64,
    ) -> Result<(), StoreError> {
        let (tag, value) = (kind.tag(), value.to_owned());
        let until = i64::try_from(until).unwrap_or(i64::MAX);
        self.with(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO revocations (kind, value, until) VALUES (?1, ?2, ?3)",
                rusqlite::params![tag, value, until],
            )
        })
        .await
        .map(|_| ())
    }

    async fn remove_revocation(
        &self,
        kind: RevocationKind,
        value: &str,
    ) -> Result<bool, StoreError> {
        let (tag, value) = (kind.tag(), value.to_owned());
        Ok(self
            .with(move |c| {
                c.execute(
                    "DELETE FROM revocations WHERE kind = ?1 AND value = ?2",
                    rusqlite::params![tag, value],
                )
            })
            .await?
            .unwrap_or(0)
            > 0)
    }

    async fn revocations(&self) -> Result<RevocationList, StoreError> {
        let now = crate::state::store::now() as i64;
        let rows = self
            .with(move |c| {
                let mut st = c.prepare(
                    "SELECT kind, value, until FROM revocations WHERE kind = 's' OR until > ?1",
                )?;
                let rows = st
                    .query_map([now], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        let mut out: RevocationList = (Vec::new(), Vec::new());
        for (k, v, u) in rows.unwrap_or_default() {
            if k == "s" {
                out.1.push(v);
            } else {
                out.0.push((v, u.max(0) as u64));
            }
        }
        Ok(out)
    }

    async fn pins_load(&self) -> Result<Vec<PinRow>, StoreError> {
        Ok(self
            .with(|c| {
                let mut st = c.prepare("SELECT key, rev, body FROM pins")?;
                let rows = st
                    .query_map([], |r| {
                        Ok(PinRow {
                            key: r.get(0)?,
                            rev: r.get::<_, i64>(1)?.max(0) as u64,
                            body: r.get(2)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?
            .unwrap_or_default())
    }

    async fn pin_cas(&self, key: &str, expected: u64, body: &str) -> Result<bool, StoreError> {
        let (key, body) = (key.to_owned(), body.to_owned());
        let (next, expected_i) = (
            i64::try_from(expected.saturating_add(1)).unwrap_or(i64::MAX),
            i64::try_from(expected).unwrap_or(i64::MAX),
        );
        let n = self
            .with(move |c| {
                if expected == 0 {
                    c.execute(
                        "INSERT OR IGNORE INTO pins (key, rev, body) VALUES (?1, 1, ?2)",
                        rusqlite::params![key, body],
                    )
                } else {
                    c.execute(
                        "UPDATE pins SET rev = ?3, body = ?2 WHERE key = ?1 AND rev = ?4",
                        rusqlite::params![key, body, next, expected_i],
                    )
                }
            })
            .await?;
        Ok(n.is_none_or(|n| n == 1))
    }

    async fn pins_generation(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

impl Store for Backend {
    async fn add_revocation(
        &self,
        kind: RevocationKind,
        value: &str,
        until: u64,
    ) -> Result<(), StoreError> {
        match self {
            Backend::Embedded(db) => db.add_revocation(kind, value, until).await,
            Backend::Redis(r) => r.add_revocation(kind, value, until).await,
        }
    }

    async fn remove_revocation(
        &self,
        kind: RevocationKind,
        value: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Backend::Embedded(db) => db.remove_revocation(kind, value).await,
            Backend::Redis(r) => r.remove_revocation(kind, value).await,
        }
    }

    async fn revocations(&self) -> Result<RevocationList, StoreError> {
        match self {
            Backend::Embedded(db) => db.revocations().await,
            Backend::Redis(r) => r.revocations().await,
        }
    }

    async fn pins_load(&self) -> Result<Vec<PinRow>, StoreError> {
        match self {
            Backend::Embedded(db) => db.pins_load().await,
            Backend::Redis(r) => r.pins_load().await,
        }
    }

    async fn pin_cas(&self, key: &str, expected: u64, body: &str) -> Result<bool, StoreError> {
        match self {
            Backend::Embedded(db) => db.pin_cas(key, expected, body).await,
            Backend::Redis(r) => r.pin_cas(key, expected, body).await,
        }
    }

    async fn pins_generation(&self) -> Result<u64, StoreError> {
        match self {
            Backend::Embedded(db) => db.pins_generation().await,
            Backend::Redis(r) => r.pins_generation().await,
        }
    }
}

/// One stored tool-integrity record: its key, revision and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRow {
    /// Record key.
    pub key: String,
    /// Revision (bumped by every write; compare-and-set guards it).
    pub rev: u64,
    /// The record (JSON).
    pub body: String,
}

fn now() -> u64 {
    bastion_auth::now_secs()
}

/// Hex SHA-256.
pub fn digest(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Redis backend.
pub struct RedisStore {
    client: redis::Client,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    prefix: String,
    keys: Vec<(String, [u8; 32])>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
        "connection refused or lost"
    } else {
        "command failed"
    };
    StoreError::Unavailable(kind.to_owned())
}

impl RedisStore {
    /// A store for `url` (not connected until first use).
    pub fn new(
        url: &str,
        prefix: &str,
        keyring: &crate::state::keyring::Keyring,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|_| StoreError::Unavailable("invalid Redis URL".into()))?;
        Ok(RedisStore {
            client,
            conn: tokio::sync::OnceCell::new(),
            prefix: prefix.to_owned(),
            keys: keyring.derive_all(crate::state::keyring::Purpose::Store),
            timeout: Duration::from_secs(2),
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        self.conn
            .get_or_try_init(|| async {
                ConnectionManager::new_with_config(self.client.clone(), cfg).await
            })
            .await
            .cloned()
            .map_err(unavailable)
    }

    fn session_key(&self, sid: &str) -> String {
        format!("{}s:{}", self.prefix, digest(sid))
    }

    fn principal_key(&self, principal: &str) -> String {
        format!("{}p:{}", self.prefix, digest(principal))
    }

    fn mac(key: &[u8; 32], name: &str, body: &str) -> Vec<u8> {
        let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
            return Vec::new();
        };
        m.update(name.as_bytes());
        m.update(&[0]);
        m.update(body.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    /// `kid.mac.body`: the body with its HMAC, bound to the key name.
    fn seal(&self, name: &str, body: &str) -> String {
        let Some((kid, key)) = self.keys.first() else {
            return String::new();
        };
        let mac =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Self::mac(key, name, body));
        format!("{kid}.{mac}.{body}")
    }

    fn open<'a>(&self, name: &str, value: &'a str) -> Result<&'a str, StoreError> {
        let mut parts = value.splitn(3, '.');
        let (Some(kid), Some(mac), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StoreError::Tampered);
        };
        let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| StoreError::Tampered)?;
        let key = self
            .keys
            .iter()
            .find(|(id, _)| id == kid)
            .map(|(_, k)| k)
            .ok_or(StoreError::Tampered)?;
        let m = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| StoreError::Tampered)?;
        let mut m = m;
        m.update(name.as_bytes());
        m.update(&[0]);
        m.update(body.as_bytes());
        // `verify_slice` compares in constant time.
        m.verify_slice(&mac).map_err(|_| StoreError::Tampered)?;
        Ok(body)
    }

    /// Stores a new session and enforces the principal's cap across instances;
    /// returns the digests of sessions evicted to make room.
    pub async fn put_session(
        &self,
        sid: &str,
        rec: &SessionRecord,
        idle: Duration,
        cap: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn().await?;
        let key = self.session_key(sid);
        let body =
            serde_json::to_string(rec).map_err(|_| StoreError::Unavailable("encoding".into()))?;
        let pkey = self.principal_key(&rec.principal);
        let (_, _, _, count): ((), (), (), usize) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(self.seal(&key, &body))
            .arg("EX")
            .arg(idle.as_secs().max(1))
            .cmd("ZADD")
            .arg(&pkey)
            .arg(rec.created)
            .arg(digest(sid))
            .cmd("EXPIRE")
            .arg(&pkey)
            .arg(idle.as_secs().max(1).saturating_mul(24))
            .cmd("ZCARD")
            .arg(&pkey)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        if count <= cap {
            return Ok(Vec::new());
        }
        let evicted: Vec<(String, f64)> = redis::cmd("ZPOPMIN")
            .arg(&pkey)
            .arg(count.saturating_sub(cap))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for (d, _) in evicted {
            let _: () = redis::cmd("DEL")
                .arg(format!("{}s:{d}", self.prefix))
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            out.push(d);
        }
        Ok(out)
    }

    /// The session's record (refreshing its idle TTL), `None` if it does not
    /// exist (deleted, invalidated, evicted or idle too long).
    pub async fn get_session(
        &self,
        sid: &str,
        idle: Duration,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut c = self.conn().await?;
        let key = self.session_key(sid);
        let v: Option<String> = redis::cmd("GETEX")
            .arg(&key)
            .arg("EX")
            .arg(idle.as_secs().max(1))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        let Some(v) = v else { return Ok(None) };
        let body = self.open(&key, &v)?;
        serde_json::from_str(body)
            .map(Some)
            .map_err(|_| StoreError::Tampered)
    }

    fn revocations_key(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    fn pins_key(&self) -> String {
        format!("{}pins", self.prefix)
    }

    fn pins_gen_key(&self) -> String {
        format!("{}pins:gen", self.prefix)
    }

    /// Deletes a session.
    pub async fn delete_session(&self, sid: &str, principal: &str) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let (n, _): (usize, usize) = redis::pipe()
            .cmd("DEL")
            .arg(self.session_key(sid))
            .cmd("ZREM")
            .arg(self.principal_key(principal))
            .arg(digest(sid))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    /// Deletes every session of a principal; returns how many there were.
    pub async fn invalidate_principal(&self, principal: &str) -> Result<usize, StoreError> {
        let mut c = self.conn().await?;
        let pkey = self.principal_key(principal);
        let all: Vec<String> = redis::cmd("ZRANGE")
            .arg(&pkey)
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        let mut p = redis::pipe();
        p.atomic();
        for d in &all {
            p.cmd("DEL").arg(format!("{}s:{d}", self.prefix)).ignore();
        }
        p.cmd("DEL").arg(&pkey).ignore();
        let _: () = p.query_async(&mut c).await.map_err(unavailable)?;
        Ok(all.len())
    }
}

impl Store for RedisStore {
    async fn pins_load(&self) -> Result<Vec<PinRow>, StoreError> {
        let mut c = self.conn().await?;
        let key = self.pins_key();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        let revs: HashMap<&str, u64> = all
            .iter()
            .filter_map(|(f, v)| Some((f.strip_suffix("#rev")?, v.parse().ok()?)))
            .collect();
        let mut out = Vec::new();
        for (field, v) in &all {
            if field.ends_with("#rev") {
                continue;
            }
            let rev = revs.get(field.as_str()).copied().unwrap_or(0);
            // The revision is bound into the MAC, so an old body replayed
            // under a newer revision is refused too.
            let bound = format!("{key}\u{0}{field}\u{0}{rev}");
            match self.open(&bound, v) {
                Ok(body) => out.push(PinRow {
                    key: field.clone(),
                    rev,
                    body: body.to_owned(),
                }),
                Err(_) => tracing::warn!(
                    "ignoring a tool-integrity record that fails its integrity check"
                ),
            }
        }
        Ok(out)
    }

    async fn pin_cas(&self, field: &str, expected: u64, body: &str) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let key = self.pins_key();
        let rev = expected.saturating_add(1);
        let bound = format!("{key}\u{0}{field}\u{0}{rev}");
        let script = redis::Script::new(
            r"local cur = redis.call('HGET', KEYS[1], ARGV[1] .. '#rev') or '0'
              if cur ~= ARGV[2] then return 0 end
              redis.call('HSET', KEYS[1], ARGV[1], ARGV[3], ARGV[1] .. '#rev', ARGV[4])
              redis.call('INCR', KEYS[2])
              return 1",
        );
        let n: i64 = script
            .key(&key)
            .key(self.pins_gen_key())
            .arg(field)
            .arg(expected.to_string())
            .arg(self.seal(&bound, body))
            .arg(rev.to_string())
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    async fn pins_generation(&self) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let g: Option<u64> = redis::cmd("GET")
            .arg(self.pins_gen_key())
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(g.unwrap_or(0))
    }

    async fn add_revocation(
        &self,
        kind: RevocationKind,
        value: &str,
        until: u64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let key = self.revocations_key();
        let field = format!("{}:{value}", kind.tag());
        let bound = format!("{key}\u{0}{field}");
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg(&field)
            .arg(self.seal(&bound, &until.to_string()))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn remove_revocation(
        &self,
        kind: RevocationKind,
        value: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let n: usize = redis::cmd("HDEL")
            .arg(self.revocations_key())
            .arg(format!("{}:{value}", kind.tag()))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    /// Every revocation whose integrity checks out (a forged entry is ignored:
    /// it could only refuse someone, but it is not ours).
    async fn revocations(&self) -> Result<RevocationList, StoreError> {
        let mut c = self.conn().await?;
        let key = self.revocations_key();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        let now = now();
        let mut out: RevocationList = (Vec::new(), Vec::new());
        for (field, v) in all {
            let bound = format!("{key}\u{0}{field}");
            let Ok(body) = self.open(&bound, &v) else {
                tracing::warn!("ignoring a revocation entry that fails its integrity check");
                continue;
            };
            let until: u64 = body.parse().unwrap_or(0);
            match field.split_once(':') {
                Some(("s", who)) => out.1.push(who.to_owned()),
                Some(("t", jti)) if until > now => out.0.push((jti.to_owned(), until)),
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_pins_compare_and_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = Backend::Embedded(Sqlite::new(Some(path.clone())));
        assert!(s.pin_cas("k", 0, "one").await.unwrap());
        // A second creation and a stale revision both lose.
        assert!(!s.pin_cas("k", 0, "other").await.unwrap());
        assert!(s.pin_cas("k", 1, "two").await.unwrap());
        assert!(!s.pin_cas("k", 1, "stale").await.unwrap());
        let again = Backend::Embedded(Sqlite::new(Some(path)));
        let rows = again.pins_load().await.unwrap();
        assert_eq!(
            rows,
            vec![PinRow {
                key: "k".into(),
                rev: 2,
                body: "two".into()
            }]
        );
    }

    #[tokio::test]
    async fn embedded_revocations_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = Backend::Embedded(Sqlite::new(Some(path.clone())));
        s.add_revocation(RevocationKind::Subject, "iss alice", 0)
            .await
            .unwrap();
        s.add_revocation(RevocationKind::Token, "jti-1", now() + 60)
            .await
            .unwrap();
        s.add_revocation(RevocationKind::Token, "old", now() - 1)
            .await
            .unwrap();
        drop(s);
        let again = Backend::Embedded(Sqlite::new(Some(path)));
        let (tokens, subjects) = again.revocations().await.unwrap();
        assert_eq!(subjects, ["iss alice"]);
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].0, "jti-1");
        assert!(
            again
                .remove_revocation(RevocationKind::Subject, "iss alice")
                .await
                .unwrap()
        );
        assert!(again.revocations().await.unwrap().1.is_empty());
        // Without a path nothing is persisted, and nothing fails.
        let mem = Backend::Embedded(Sqlite::new(None));
        mem.add_revocation(RevocationKind::Subject, "x y", 0)
            .await
            .unwrap();
        assert!(mem.revocations().await.unwrap().1.is_empty());
    }

    #[test]
    fn values_are_bound_to_their_key_and_tampering_is_detected() {
        let kr = crate::state::keyring::Keyring::random();
        let s = RedisStore::new("redis://127.0.0.1:1/", "t:", &kr).unwrap();
        let v = s.seal("t:s:a", r#"{"x":1}"#);
        assert_eq!(s.open("t:s:a", &v).unwrap(), r#"{"x":1}"#);
        assert!(
            matches!(s.open("t:s:b", &v), Err(StoreError::Tampered)),
            "moved"
        );
        let edited = v.replace(r#""x":1"#, r#""x":2"#);
        assert!(
            matches!(s.open("t:s:a", &edited), Err(StoreError::Tampered)),
            "edited"
        );
        assert!(matches!(
            s.open("t:s:a", "garbage"),
            Err(StoreError::Tampered)
        ));
        let other = RedisStore::new(
            "redis://127.0.0.1:1/",
            "t:",
            &crate::state::keyring::Keyring::random(),
        )
        .unwrap();
        assert!(
            matches!(other.open("t:s:a", &v), Err(StoreError::Tampered)),
            "other keyring"
        );
    }
}
