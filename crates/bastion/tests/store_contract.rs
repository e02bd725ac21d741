//! The `Store` contract, checked the same way on both backends: the embedded
//! SQLite file and Redis (a real `redis-server` on a free loopback port).
//! What integrity, revocation and incident response assume of a store holds
//! on each: compare-and-set on pins loses to a concurrent writer, revocations
//! are durable and removable, an expired token revocation is gone, and a
//! store that cannot answer says so (fails closed) and answers again by
//! itself once it is back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is the test failing"
)]

#[path = "common/redis_server.rs"]
mod redis_server;

use bastion::state::keyring::Keyring;
use bastion::state::store::{PinRow, RedisStore, RevocationKind, Sqlite, Store, StoreError};

/// Everything a store must do, on a store that starts empty.
async fn honours_the_contract(s: &impl Store, name: &str) {
    // Pins: create, lose a second creation, update, lose a stale update.
    assert!(s.pin_cas("k", 0, "one").await.unwrap(), "{name}: create");
    assert!(
        !s.pin_cas("k", 0, "other").await.unwrap(),
        "{name}: second create"
    );
    assert!(s.pin_cas("k", 1, "two").await.unwrap(), "{name}: update");
    assert!(
        !s.pin_cas("k", 1, "stale").await.unwrap(),
        "{name}: stale update"
    );
    assert!(
        s.pin_cas("j", 0, "three").await.unwrap(),
        "{name}: other key"
    );
    let mut rows = s.pins_load().await.unwrap();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        rows,
        vec![
            PinRow {
                key: "j".into(),
                rev: 1,
                body: "three".into()
            },
            PinRow {
                key: "k".into(),
                rev: 2,
                body: "two".into()
            },
        ],
        "{name}: what was written, at its revision"
    );
    s.pins_generation().await.unwrap();

    // Revocations: a principal for good, a token until its expiry, one
    // already expired (not returned), removal.
    let now = bastion_auth::now_secs();
    let later = now.saturating_add(3600);
    s.add_revocation(RevocationKind::Subject, "iss alice", 0)
        .await
        .unwrap();
    s.add_revocation(RevocationKind::Token, "jti-live", later)
        .await
        .unwrap();
    s.add_revocation(RevocationKind::Token, "jti-old", now.saturating_sub(10))
        .await
        .unwrap();
    let (tokens, subjects) = s.revocations().await.unwrap();
    assert_eq!(subjects, ["iss alice"], "{name}: subjects");
    assert_eq!(
        tokens,
        [("jti-live".to_owned(), later)],
        "{name}: live tokens only"
    );
    assert!(
        s.remove_revocation(RevocationKind::Subject, "iss alice")
            .await
            .unwrap(),
        "{name}: removed"
    );
    assert!(
        !s.remove_revocation(RevocationKind::Subject, "iss alice")
            .await
            .unwrap(),
        "{name}: nothing left to remove"
    );
    assert!(s.revocations().await.unwrap().1.is_empty(), "{name}");
}

/// Every method of a store that cannot answer is `Unavailable`, never a
/// stale or empty success the caller would trust.
async fn refuses_when_down(s: &impl Store, name: &str) {
    let down = |r: Result<(), StoreError>, what: &str| {
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "{name}: {what} must fail closed, got {r:?}"
        );
    };
    down(s.pin_cas("k", 0, "x").await.map(drop), "pin_cas");
    down(s.pins_load().await.map(drop), "pins_load");
    down(s.revocations().await.map(drop), "revocations");
    down(
        s.add_revocation(RevocationKind::Token, "t", 1).await,
        "add_revocation",
    );
    down(
        s.remove_revocation(RevocationKind::Token, "t")
            .await
            .map(drop),
        "remove_revocation",
    );
}

#[tokio::test]
async fn the_embedded_store_honours_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sqlite::new(Some(dir.path().join("state.db")));
    honours_the_contract(&s, "sqlite").await;
    // Durable: a new handle on the same file sees the same rows.
    let again = Sqlite::new(Some(dir.path().join("state.db")));
    assert_eq!(again.pins_load().await.unwrap().len(), 2);

    // A file that cannot be opened (its directory is gone) fails closed.
    let gone = dir.path().join("no-such-dir").join("state.db");
    refuses_when_down(&Sqlite::new(Some(gone)), "sqlite, unopenable").await;
}

#[tokio::test]
async fn redis_honours_the_contract_fails_closed_and_recovers() {
    let port = redis_server::free_port();
    let mut server = redis_server::Redis::start(port);
    let url = format!("redis://127.0.0.1:{port}/");
    let s = RedisStore::new(&url, "contract:", &Keyring::random()).unwrap();
    honours_the_contract(&s, "redis").await;

    // Another keyring's store (another deployment sharing the server) gets
    // nothing it could trust from these values.
    let other = RedisStore::new(&url, "contract:", &Keyring::random()).unwrap();
    assert!(
        other.pins_load().await.unwrap().is_empty(),
        "values sealed under another keyring are not returned as good"
    );

    server.stop();
    refuses_when_down(&s, "redis, stopped").await;

    // Back on the same port: the same handle answers again by itself
    // (nothing persisted: the server started empty).
    let _server = redis_server::Redis::start(port);
    let mut ok = false;
    for _ in 0..50 {
        if s.pins_load().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "the store recovers once Redis is back");
    assert!(s.pin_cas("k", 0, "again").await.unwrap());
}
