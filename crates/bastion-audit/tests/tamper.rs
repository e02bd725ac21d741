//! The chain shows every kind of tampering and names the first bad record; it
//! continues across restarts and rotation; a torn tail is reported, not lost.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bastion_audit::{Fsync, Signer, VerifyOptions, Writer, WriterConfig, verify};
use serde_json::{Value, json};

fn writer(path: &Path, key: &str, every: u64, rotate: u64) -> Writer {
    Writer::open(WriterConfig {
        path: path.to_owned(),
        signer: Signer::from_text(key).unwrap(),
        checkpoint_every: every,
        checkpoint_idle: Duration::from_secs(60),
        fsync: Fsync::Batch,
        rotate_bytes: rotate,
        max_queue: 100_000,
    })
    .unwrap()
}

fn write_events(w: &Writer, from: u64, n: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut last = 0;
    for i in from..from.saturating_add(n) {
        last = w.append(json!({"kind": "request", "n": i, "principal": "alice"}));
    }
    rt.block_on(w.wait_durable(last));
}

fn key() -> (String, Vec<u8>) {
    let (s, text) = Signer::generate().unwrap();
    let public = bastion_audit::chain::parse_public(&s.public()).unwrap();
    (text, public)
}

fn opts(public: &[u8]) -> VerifyOptions {
    VerifyOptions {
        keys: vec![public.to_vec()],
        ..VerifyOptions::default()
    }
}

/// A closed log of 30 events with a checkpoint every 10 records.
fn fixture(dir: &Path) -> (PathBuf, Vec<u8>, String) {
    let (text, public) = key();
    let p = dir.join("audit.jsonl");
    let w = writer(&p, &text, 10, 1 << 30);
    write_events(&w, 0, 30);
    w.close();
    (p, public, text)
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn put(p: &Path, l: &[String]) {
    std::fs::write(p, l.join("\n") + "\n").unwrap();
}

#[test]
fn an_untouched_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (p, public, _) = fixture(dir.path());
    let r = verify(std::slice::from_ref(&p), &opts(&public));
    assert!(r.ok(), "{:?}", r.problem);
    assert_eq!(r.records, 30);
    assert_eq!(r.checkpoints, 3, "every 10 records, the last at close");
    // Without a pinned key: consistent, still verifies.
    assert!(verify(&[p], &VerifyOptions::default()).ok());
}

#[test]
fn every_kind_of_tampering_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (p, public, _) = fixture(dir.path());
    let orig = lines(&p);
    let check = |l: Vec<String>, line: u64, what: &str| {
        put(&p, &l);
        let r = verify(std::slice::from_ref(&p), &opts(&public));
        let pr = r.problem.unwrap_or_else(|| panic!("{what}: not detected"));
        assert_eq!(pr.line, line, "{what}: {pr}");
        pr.to_string()
    };
    // Edit one byte of record 5 (line 6): its hash no longer chains into line 7
    // (or, where the edit breaks canonical form, the line itself is refused).
    let mut l = orig.clone();
    l[5] = l[5].replace("alice", "alicf");
    let m = check(l, 7, "edited byte");
    assert!(m.contains("altered"), "{m}");
    // Delete line 4.
    let mut l = orig.clone();
    l.remove(3);
    let m = check(l, 4, "deleted line");
    assert!(m.contains("deleted"), "{m}");
    // Swap lines 3 and 4.
    let mut l = orig.clone();
    l.swap(2, 3);
    let m = check(l, 3, "swapped lines");
    assert!(
        m.contains("records deleted") || m.contains("reordered"),
        "{m}"
    );
    // Insert a copy of line 2 after it.
    let mut l = orig.clone();
    l.insert(2, orig[1].clone());
    check(l, 3, "inserted line");
    // Truncate the tail (the final checkpoint and a record before it).
    let mut l = orig.clone();
    l.truncate(orig.len() - 2);
    let m = check(l, orig.len() as u64 - 2, "truncated tail");
    assert!(m.contains("does not end with a checkpoint"), "{m}");
    // Cut in the middle of the last line.
    put(&p, &orig);
    let data = std::fs::read(&p).unwrap();
    std::fs::write(&p, &data[..data.len() - 10]).unwrap();
    let r = verify(std::slice::from_ref(&p), &opts(&public));
    assert!(r.problem.unwrap().what.contains("incomplete"));
    // Forge a checkpoint: the right shape, signed by another key.
    let (other, _) = key();
    let forger = Signer::from_text(&other).unwrap();
    let mut l = orig.clone();
    let cp: Value = serde_json::from_str(&l[10]).unwrap();
    let seq = cp["seq"].as_u64().unwrap();
    let prev = cp["prev"].as_str().unwrap();
    l[10] = String::from_utf8(forger.checkpoint_line(seq, prev).unwrap()).unwrap();
    // (The forged line hashes differently, so fix the next record's prev to
    // isolate the signature check: the key is what gives it away.)
    let mut next: Value = serde_json::from_str(&l[11]).unwrap();
    next["prev"] = Value::from(bastion_audit::chain::hash(l[10].as_bytes()));
    l[11] = String::from_utf8(bastion_audit::canonical::to_vec(&next).unwrap()).unwrap();
    let m = check(l.clone(), 11, "forged checkpoint (other key)");
    assert!(m.contains("untrusted key"), "{m}");
    // The same signature bytes altered, with the right key embedded.
    let mut l = orig.clone();
    let mut cp: Value = serde_json::from_str(&l[10]).unwrap();
    let sig = cp["checkpoint"]["sig"].as_str().unwrap().to_owned();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    cp["checkpoint"]["sig"] = Value::from(format!("{flipped}{}", &sig[1..]));
    l[10] = String::from_utf8(bastion_audit::canonical::to_vec(&cp).unwrap()).unwrap();
    let m = check(l, 11, "altered signature");
    assert!(
        m.contains("does not verify") || m.contains("altered"),
        "{m}"
    );
    // Restored: verifies again.
    put(&p, &orig);
    assert!(verify(&[p], &opts(&public)).ok());
}

#[test]
fn the_chain_continues_across_restarts_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (text, public) = key();
    let p = dir.path().join("audit.jsonl");
    // Small files: several rotations.
    for round in 0..3 {
        let w = writer(&p, &text, 7, 2_000);
        write_events(&w, round * 40, 40);
        w.close();
    }
    let rotated = bastion_audit::writer::rotated(&p);
    assert!(rotated.len() >= 3, "{rotated:?}");
    let mut all: Vec<PathBuf> = rotated.iter().map(|(_, f)| f.clone()).collect();
    all.push(p.clone());
    // Any order on the command line.
    all.reverse();
    let r = verify(&all, &opts(&public));
    assert!(r.ok(), "{:?}", r.problem);
    assert_eq!(r.records, 120);
    // A rotated file in the middle goes missing: found.
    let missing: Vec<PathBuf> = all
        .iter()
        .filter(|f| **f != rotated[1].1)
        .cloned()
        .collect();
    let r = verify(&missing, &opts(&public));
    assert!(r.problem.unwrap().what.contains("deleted"));
    // Only the newest files (older ones removed by retention): --partial.
    let newest = vec![rotated.last().unwrap().1.clone(), p.clone()];
    assert!(!verify(&newest, &opts(&public)).ok());
    let r = verify(
        &newest,
        &VerifyOptions {
            partial: true,
            ..opts(&public)
        },
    );
    assert!(r.ok(), "{:?}", r.problem);
}

#[test]
fn a_torn_tail_after_a_crash_is_moved_aside_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (p, public, text) = fixture(dir.path());
    // A crash in the middle of a write.
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::io::Write::write_all(&mut f, br#"{"event":{"kind":"req"#).unwrap();
    drop(f);
    let w = writer(&p, &text, 10, 1 << 30);
    write_events(&w, 100, 3);
    w.close();
    let r = verify(std::slice::from_ref(&p), &opts(&public));
    assert!(r.ok(), "{:?}", r.problem);
    let all = std::fs::read_to_string(&p).unwrap();
    assert!(
        all.contains("torn last record from an earlier crash"),
        "{all}"
    );
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        br#"{"event":{"kind":"req"#
    );
    // A crash after a whole record but before its newline: the record is kept.
    let before = lines(&p).len();
    let last_hash = bastion_audit::chain::hash(lines(&p).last().unwrap().as_bytes());
    let seq = r.records + r.checkpoints;
    let whole = bastion_audit::chain::event_line(seq, &last_hash, &json!({"kind": "x"})).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::io::Write::write_all(&mut f, &whole).unwrap();
    drop(f);
    let w = writer(&p, &text, 10, 1 << 30);
    w.close();
    assert!(verify(std::slice::from_ref(&p), &opts(&public)).ok());
    assert_eq!(
        lines(&p).len(),
        before + 2,
        "the record and a closing checkpoint"
    );
}

#[test]
fn a_queue_past_its_bound_reports_unhealthy_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (text, public) = key();
    let p = dir.path().join("audit.jsonl");
    // A sync per record keeps the writer slower than the appender.
    let w = Writer::open(WriterConfig {
        path: p.clone(),
        signer: Signer::from_text(&text).unwrap(),
        checkpoint_every: 1000,
        checkpoint_idle: Duration::from_secs(60),
        fsync: Fsync::Always,
        rotate_bytes: 1 << 30,
        max_queue: 8,
    })
    .unwrap();
    let mut last = 0;
    let mut saw_unhealthy = false;
    for i in 0..300 {
        last = w.append(json!({"kind": "request", "n": i}));
        saw_unhealthy |= !w.healthy();
    }
    assert!(
        saw_unhealthy,
        "300 appends against a syncing writer must exceed 8 queued"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(w.wait_durable(last));
    assert!(w.healthy(), "drained: healthy again");
    w.close();
    let r = verify(std::slice::from_ref(&p), &opts(&public));
    assert!(r.ok(), "{:?}", r.problem);
    assert_eq!(r.records, 300, "nothing dropped");
}

#[test]
fn a_record_numbered_u64_max_ends_the_chain_instead_of_wrapping() {
    let dir = tempfile::tempdir().unwrap();
    let (text, public) = key();
    let p = dir.path().join("audit.jsonl");
    let mut last =
        bastion_audit::chain::event_line(u64::MAX, "x", &json!({"kind": "request"})).unwrap();
    last.push(b'\n');
    std::fs::write(&p, &last).unwrap();
    // The verifier refuses it (even for a partial, live log) ...
    let r = verify(
        std::slice::from_ref(&p),
        &VerifyOptions {
            partial: true,
            open_tail: true,
            ..opts(&public)
        },
    );
    assert_eq!(
        r.problem.map(|p| (p.seq, p.what)),
        Some((Some(u64::MAX), "sequence number out of range".to_owned()))
    );
    // ... and the writer does not continue from it at record 0.
    let e = Writer::open(WriterConfig {
        path: p.clone(),
        signer: Signer::from_text(&text).unwrap(),
        checkpoint_every: 10,
        checkpoint_idle: Duration::from_secs(60),
        fsync: Fsync::Batch,
        rotate_bytes: 1 << 30,
        max_queue: 100,
    })
    .unwrap_err();
    assert!(e.to_string().contains("has no successor"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), last, "the log is untouched");
}
