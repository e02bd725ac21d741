//! [`Revocations`]: tokens and subjects refused regardless of their signature.
//!
//! Incident response revokes a token by its `jti` (until the token would have
//! expired anyway) or a whole subject (until restored). The verifier consults the
//! list on every request, including requests answered from its verified-token
//! cache, so a revocation takes effect immediately.

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;

use crate::principal::Principal;
use crate::util::now_secs;

/// Upper bound of revoked `jti`s held; past it, expired entries are purged first.
const MAX_JTI: usize = 1 << 20;

/// Revoked token ids and subjects.
#[derive(Debug, Default)]
pub struct Revocations {
    /// `jti` → expiry (seconds since the epoch) after which the entry is moot.
    jti: RwLock<HashMap<String, u64>>,
    /// `(issuer, subject)` pairs refused until restored.
    subjects: RwLock<HashSet<(String, String)>>,
}

/// Why a principal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The token's `jti` is revoked.
    Token,
    /// The subject is revoked.
    Subject,
}

impl Revocations {
    /// Revokes the token with id `jti` that expires at `until` (0: keep for a day).
    /// Returns `false` when the list is full of live entries (the caller must
    /// then refuse the subject instead; nothing is silently dropped).
    pub fn revoke_token(&self, jti: &str, until: u64) -> bool {
        let now = now_secs();
        let until = if until == 0 {
            now.saturating_add(86_400)
        } else {
            until
        };
        let mut m = self.jti.write();
        if m.len() >= MAX_JTI {
            m.retain(|_, exp| *exp > now);
            if m.len() >= MAX_JTI {
                return false;
            }
        }
        m.insert(jti.to_owned(), until);
        true
    }

    /// Refuses every token of `subject` from `issuer` until [`Self::restore_subject`].
    pub fn revoke_subject(&self, issuer: &str, subject: &str) {
        self.subjects
            .write()
            .insert((issuer.to_owned(), subject.to_owned()));
    }

    /// Lifts a subject revocation. Returns whether one was in place.
    pub fn restore_subject(&self, issuer: &str, subject: &str) -> bool {
        self.subjects
            .write()
            .remove(&(issuer.to_owned(), subject.to_owned()))
    }

    /// Replaces the whole list with `tokens` (`jti`, expiry) and `subjects`
    /// (issuer, subject): how a shared store's list is mirrored locally.
    pub fn replace(&self, tokens: Vec<(String, u64)>, subjects: Vec<(String, String)>) {
        let now = now_secs();
        *self.jti.write() = tokens
            .into_iter()
            .filter(|(_, exp)| *exp > now)
            .take(MAX_JTI)
            .collect();
        *self.subjects.write() = subjects.into_iter().collect();
    }

    /// Whether `p` is refused, and why.
    pub fn check(&self, p: &Principal) -> Option<Revoked> {
        {
            let s = self.subjects.read();
            if !s.is_empty() && s.contains(&(p.issuer.clone(), p.subject.clone())) {
                return Some(Revoked::Subject);
            }
        }
        if let Some(j) = &p.token_id {
            let m = self.jti.read();
            if m.get(j).is_some_and(|exp| *exp > now_secs()) {
                return Some(Revoked::Token);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(sub: &str, jti: Option<&str>) -> Principal {
        let mut p = Principal::anonymous();
        p.issuer = "https://idp.example".into();
        p.subject = sub.into();
        p.token_id = jti.map(str::to_owned);
        p
    }

    #[test]
    fn token_and_subject_revocation() {
        let r = Revocations::default();
        assert_eq!(r.check(&p("alice", Some("t1"))), None);
        assert!(r.revoke_token("t1", now_secs() + 60));
        assert_eq!(r.check(&p("alice", Some("t1"))), Some(Revoked::Token));
        assert_eq!(r.check(&p("alice", Some("t2"))), None);
        // An entry past its token's expiry no longer matters.
        assert!(r.revoke_token("old", now_secs() - 1));
        assert_eq!(r.check(&p("bob", Some("old"))), None);
        r.revoke_subject("https://idp.example", "bob");
        assert_eq!(r.check(&p("bob", None)), Some(Revoked::Subject));
        assert_eq!(r.check(&p("alice", None)), None);
        assert!(r.restore_subject("https://idp.example", "bob"));
        assert_eq!(r.check(&p("bob", None)), None);
    }
}
