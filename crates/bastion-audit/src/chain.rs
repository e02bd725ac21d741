//! The record format, checkpoint signing, and verification.
//!
//! A log is one chain of lines, possibly spread over rotated files. Each line
//! is the canonical JSON of one record:
//!
//! ```text
//! {"event":{…},"prev":"<hex SHA-256 of the previous line>","seq":N,"v":1}
//! {"checkpoint":{"key":"<base64 Ed25519 public key>","kid":"…","sig":"<base64>"},"prev":"…","seq":N,"v":1}
//! ```
//!
//! `seq` counts from 0 with no gap; the first record's `prev` is 64 zeros.
//! A checkpoint's signature covers the record without `sig` (canonical, after
//! the domain-separation prefix [`CHECKPOINT_DOMAIN`]); since `prev` chains
//! every earlier line, a checkpoint vouches for the whole log before it.

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::canonical;

/// Record format version.
pub const VERSION: u64 = 1;

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Prefix of every signed checkpoint message.
pub const CHECKPOINT_DOMAIN: &[u8] = b"mcp-bastion audit checkpoint v1\n";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Hex SHA-256 of a line (without its newline).
pub fn hash(line: &[u8]) -> String {
    hex(&Sha256::digest(line))
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len().saturating_mul(2));
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// The canonical line of an event record.
pub fn event_line(
    seq: u64,
    prev: &str,
    event: &Value,
) -> Result<Vec<u8>, canonical::CanonicalError> {
    canonical::to_vec(&json!({"v": VERSION, "seq": seq, "prev": prev, "event": event}))
}

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a key this trail can use.
    #[error(
        "the audit signing key must be an Ed25519 key: base64 PKCS#8, a PEM \"PRIVATE KEY\", or a base64 32-byte seed"
    )]
    Format,
    /// A public key that does not parse.
    #[error("a public key is written ed25519:<base64 of 32 bytes>")]
    Public,
}

/// The checkpoint signer.
pub struct Signer {
    pair: Ed25519KeyPair,
    kid: String,
    public: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A key id: the first 8 bytes of the SHA-256 of the public key, in hex.
pub fn key_id(public: &[u8]) -> String {
    hex(Sha256::digest(public).get(..8).unwrap_or_default())
}

impl Signer {
    /// Parses a private key: base64 PKCS#8, PEM `PRIVATE KEY`, or a base64 seed.
    pub fn from_text(text: &str) -> Result<Signer, KeyError> {
        let t = text.trim();
        let body: String = if t.starts_with("-----BEGIN") {
            t.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<Vec<_>>()
                .concat()
        } else {
            t.to_owned()
        };
        let bytes = B64.decode(body.trim()).map_err(|_| KeyError::Format)?;
        let pair = if bytes.len() == 32 {
            Ed25519KeyPair::from_seed_unchecked(&bytes).map_err(|_| KeyError::Format)?
        } else {
            Ed25519KeyPair::from_pkcs8(&bytes)
                .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&bytes))
                .map_err(|_| KeyError::Format)?
        };
        Ok(Signer::from_pair(pair))
    }

    /// A new random key and its base64 PKCS#8 text (to store).
    pub fn generate() -> Result<(Signer, String), KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Format)?;
        let text = B64.encode(doc.as_ref());
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| KeyError::Format)?;
        Ok((Signer::from_pair(pair), text))
    }

    fn from_pair(pair: Ed25519KeyPair) -> Signer {
        let pk = pair.public_key().as_ref().to_vec();
        Signer {
            kid: key_id(&pk),
            public: B64.encode(&pk),
            pair,
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as `ed25519:<base64>` (what `verify --key` takes).
    pub fn public(&self) -> String {
        format!("ed25519:{}", self.public)
    }

    /// A detached signature (base64) over `msg` exactly as given; used for
    /// signed tool manifests, which other Ed25519 tools can also sign.
    pub fn sign_detached(&self, msg: &[u8]) -> String {
        B64.encode(self.pair.sign(msg).as_ref())
    }

    /// The canonical line of a checkpoint at `seq` after the line hashed `prev`.
    pub fn checkpoint_line(
        &self,
        seq: u64,
        prev: &str,
    ) -> Result<Vec<u8>, canonical::CanonicalError> {
        let unsigned = json!({"v": VERSION, "seq": seq, "prev": prev,
            "checkpoint": {"kid": self.kid, "key": self.public}});
        let mut msg = CHECKPOINT_DOMAIN.to_vec();
        canonical::write(&unsigned, &mut msg)?;
        let sig = B64.encode(self.pair.sign(&msg).as_ref());
        canonical::to_vec(&json!({"v": VERSION, "seq": seq, "prev": prev,
            "checkpoint": {"kid": self.kid, "key": self.public, "sig": sig}}))
    }
}

/// Parses `ed25519:<base64>` into raw public key bytes.
pub fn parse_public(s: &str) -> Result<Vec<u8>, KeyError> {
    let b = s.trim().strip_prefix("ed25519:").ok_or(KeyError::Public)?;
    let bytes = B64.decode(b).map_err(|_| KeyError::Public)?;
    if bytes.len() != 32 {
        return Err(KeyError::Public);
    }
    Ok(bytes)
}

/// Whether `sig` (base64) is `public`'s Ed25519 signature of `msg`.
pub fn verify_detached(public: &[u8], msg: &[u8], sig: &str) -> bool {
    let Ok(sig) = B64.decode(sig.trim()) else {
        return false;
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public)
        .verify(msg, &sig)
        .is_ok()
}

/// Where verification found the first problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line in it (0: the file as a whole).
    pub line: u64,
    /// The sequence number expected there, when known.
    pub seq: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(s) = self.seq {
            write!(f, " (record {s})")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Event records verified.
    pub records: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Files read, in chain order.
    pub files: Vec<PathBuf>,
    /// Key ids that signed the checkpoints.
    pub keys: Vec<String>,
    /// The sequence number of the last checkpoint.
    pub last_checkpoint: Option<u64>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl Report {
    /// Whether every record and checkpoint verified.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Options of `verify`.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Trusted public keys (raw 32 bytes). Empty: the checkpoints must all be
    /// signed by the one key they carry (consistency only, not authenticity).
    pub keys: Vec<Vec<u8>>,
    /// Accept a log whose last record is not a checkpoint (a live log).
    pub open_tail: bool,
    /// Accept a chain that does not start at record 0 (older files removed).
    pub partial: bool,
}

fn first_seq(path: &Path) -> Option<u64> {
    let f = std::fs::File::open(path).ok()?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut line).ok()?;
    serde_json::from_str::<Value>(&line)
        .ok()?
        .get("seq")?
        .as_u64()
}

/// Verifies the chain spread over `paths` (any order: files are put in chain
/// order by their first record). Stops at the first problem.
pub fn verify(paths: &[PathBuf], opts: &VerifyOptions) -> Report {
    let mut files: Vec<(Option<u64>, PathBuf)> =
        paths.iter().map(|p| (first_seq(p), p.clone())).collect();
    files.sort_by_key(|(s, _)| s.unwrap_or(u64::MAX));
    let mut r = Report {
        files: files.iter().map(|(_, p)| p.clone()).collect(),
        ..Report::default()
    };
    let mut expect_seq: Option<u64> = None;
    let mut prev = String::new();
    let mut last_was_checkpoint = false;
    let mut last_file = PathBuf::new();
    let mut last_line = 0u64;
    let mut embedded_key: Option<String> = None;
    for (_, path) in &files {
        last_file = path.clone();
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                r.problem = Some(Problem {
                    file: path.clone(),
                    line: 0,
                    seq: expect_seq,
                    what: format!("cannot read: {e}"),
                });
                return r;
            }
        };
        if !data.is_empty() && data.last() != Some(&b'\n') {
            let line = (data.iter().filter(|b| **b == b'\n').count() as u64).saturating_add(1);
            r.problem = Some(Problem {
                file: path.clone(),
                line,
                seq: None,
                what: "the last line is incomplete (torn write or truncation)".into(),
            });
            return r;
        }
        for (i, raw) in data.split(|b| *b == b'\n').enumerate() {
            let lineno = (i as u64).saturating_add(1);
            if raw.is_empty() {
                // Only the split after the final newline is empty.
                continue;
            }
            last_line = lineno;
            let fail = |what: String, seq: Option<u64>| Problem {
                file: path.clone(),
                line: lineno,
                seq,
                what,
            };
            let Ok(v) = serde_json::from_slice::<Value>(raw) else {
                r.problem = Some(fail("not a JSON record".into(), expect_seq));
                return r;
            };
            let Some(seq) = v.get("seq").and_then(Value::as_u64) else {
                r.problem = Some(fail("no sequence number".into(), expect_seq));
                return r;
            };
            let vprev = v.get("prev").and_then(Value::as_str).unwrap_or("");
            match expect_seq {
                None => {
                    if seq != 0 && !opts.partial {
                        r.problem = Some(fail(
                            format!(
                                "the chain starts at record {seq}, not 0 (records deleted, or pass --partial for a log whose older files were removed)"
                            ),
                            Some(0),
                        ));
                        return r;
                    }
                    if seq == 0 && vprev != GENESIS {
                        r.problem = Some(fail("record 0 does not start the chain".into(), Some(0)));
                        return r;
                    }
                }
                Some(want) => {
                    if seq != want {
                        let what = if seq > want {
                            format!("expected record {want}, found {seq}: records deleted")
                        } else {
                            format!(
                                "expected record {want}, found {seq}: records reordered, inserted or repeated"
                            )
                        };
                        r.problem = Some(fail(what, Some(want)));
                        return r;
                    }
                    if vprev != prev {
                        r.problem = Some(fail(
                            "prev is not the hash of the line before: that line was altered, or this one inserted".into(),
                            Some(want),
                        ));
                        return r;
                    }
                }
            }
            match canonical::to_vec(&v) {
                Ok(c) if c == raw => {}
                _ => {
                    r.problem = Some(fail("not in canonical form (edited)".into(), Some(seq)));
                    return r;
                }
            }
            if v.get("v").and_then(Value::as_u64) != Some(VERSION) {
                r.problem = Some(fail("unknown record version".into(), Some(seq)));
                return r;
            }
            if let Some(cp) = v.get("checkpoint") {
                if let Err(what) = check_checkpoint(&v, cp, opts, &mut embedded_key) {
                    r.problem = Some(fail(what, Some(seq)));
                    return r;
                }
                let kid = cp
                    .get("kid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if !r.keys.contains(&kid) {
                    r.keys.push(kid);
                }
                r.checkpoints = r.checkpoints.saturating_add(1);
                r.last_checkpoint = Some(seq);
                last_was_checkpoint = true;
            } else if v.get("event").is_some_and(Value::is_object) {
                r.records = r.records.saturating_add(1);
                last_was_checkpoint = false;
            } else {
                r.problem = Some(fail("neither an event nor a checkpoint".into(), Some(seq)));
                return r;
            }
            prev = hash(raw);
            // No chain reaches 2^64 records: a record numbered u64::MAX has no
            // successor and is refused rather than wrapped back to 0.
            let Some(next) = seq.checked_add(1) else {
                r.problem = Some(fail("sequence number out of range".into(), Some(seq)));
                return r;
            };
            expect_seq = Some(next);
        }
    }
    if expect_seq.is_none() {
        r.problem = Some(Problem {
            file: last_file,
            line: 0,
            seq: None,
            what: "no records".into(),
        });
    } else if !last_was_checkpoint && !opts.open_tail {
        r.problem = Some(Problem {
            file: last_file,
            line: last_line,
            seq: expect_seq.map(|s| s.saturating_sub(1)),
            what: format!(
                "the log does not end with a checkpoint: records after {} are not covered by a signature (truncated, or the gateway is still running or crashed: --open-tail accepts that)",
                r.last_checkpoint
                    .map_or("the start".to_owned(), |c| format!("record {c}"))
            ),
        });
    }
    r
}

fn check_checkpoint(
    v: &Value,
    cp: &Value,
    opts: &VerifyOptions,
    embedded: &mut Option<String>,
) -> Result<(), String> {
    let s = |k: &str| cp.get(k).and_then(Value::as_str).unwrap_or("");
    let key_b64 = s("key");
    let key = B64
        .decode(key_b64)
        .map_err(|_| "checkpoint key is not base64".to_owned())?;
    if s("kid") != key_id(&key) {
        return Err("checkpoint kid does not match its key".into());
    }
    if opts.keys.is_empty() {
        match embedded {
            None => *embedded = Some(key_b64.to_owned()),
            Some(k) if k == key_b64 => {}
            Some(_) => {
                return Err(
                    "checkpoints signed by different keys; pass --key for each trusted key".into(),
                );
            }
        }
    } else if !opts.keys.contains(&key) {
        return Err(format!(
            "checkpoint signed by an untrusted key (kid {})",
            s("kid")
        ));
    }
    let sig = B64
        .decode(s("sig"))
        .map_err(|_| "checkpoint signature is not base64".to_owned())?;
    let mut unsigned: Map<String, Value> = v.as_object().cloned().unwrap_or_default();
    let mut inner = cp.as_object().cloned().unwrap_or_default();
    inner.remove("sig");
    unsigned.insert("checkpoint".into(), Value::Object(inner));
    let mut msg = CHECKPOINT_DOMAIN.to_vec();
    canonical::write(&Value::Object(unsigned), &mut msg).map_err(|e| format!("checkpoint: {e}"))?;
    UnparsedPublicKey::new(&signature::ED25519, &key)
        .verify(&msg, &sig)
        .map_err(|_| "checkpoint signature does not verify (forged or altered)".to_owned())
}
