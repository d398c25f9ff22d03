//! The grant store under attack and under concurrency: a code redeems once (also when many
//! redemptions race), a replay revokes what the first redemption started, refresh tokens
//! rotate once and their reuse revokes the family (RFC 9700 §4.14), lifetimes hold.

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use latchkey::store::grants::{self, CodeRow, FamilyRow, Issued, Redemption, Rotation};
use latchkey::store::Store;

/// A server's database with an organization, a client and a person, and a store on it.
struct Fixture {
    _server: TestServer,
    store: Store,
    client_id: String,
    org_id: String,
    user_id: String,
}

async fn fixture() -> Fixture {
    let server = TestServer::start().await;
    let org_id = server.org("acme");
    let c = server.cli_json(&[
        "client",
        "create",
        "--org",
        &org_id,
        "--name",
        "web",
        "--grant-types",
        "authorization_code,refresh_token",
        "--redirect-uri",
        "https://app.acme.test/cb",
    ]);
    let user = server.person(&org_id, "ada", "long enough pw", &[]);
    let url = latchkey::config::DatabaseUrl::parse(&server.db.url).unwrap();
    Fixture {
        store: Store::open(&url, 16).unwrap(),
        client_id: c["client_id"].as_str().unwrap().to_string(),
        org_id,
        user_id: user["id"].as_str().unwrap().to_string(),
        _server: server,
    }
}

impl Fixture {
    fn code(&self, hash: &str, expires_at: i64) -> CodeRow {
        CodeRow {
            code_hash: hash.into(),
            client_id: self.client_id.clone(),
            org_id: self.org_id.clone(),
            user_id: self.user_id.clone(),
            redirect_uri: "https://app.acme.test/cb".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            nonce: Some("n-0S6_WzA2Mj".into()),
            scope: "openid offline_access".into(),
            auth_time: now(),
            expires_at,
            used_at: None,
            family_id: None,
            access_jti: None,
            access_exp: None,
        }
    }

    fn family(&self, id: &str, expires_at: i64) -> FamilyRow {
        FamilyRow {
            id: id.into(),
            client_id: self.client_id.clone(),
            org_id: self.org_id.clone(),
            user_id: self.user_id.clone(),
            scope: "openid offline_access".into(),
            auth_time: now(),
            created_at: now(),
            expires_at,
            revoked_at: None,
        }
    }

    fn issued(&self, n: usize) -> Issued {
        Issued {
            family_id: Some(format!("fam-{n}")),
            access_jti: format!("jti-{n}"),
            access_exp: now() + 900,
        }
    }
}

fn is_revoked(store: &Store, jti: &str) -> bool {
    use diesel::prelude::*;
    use latchkey::store::schema::revoked_tokens::dsl as r;
    let mut conn = store.conn().unwrap();
    let n: i64 = r::revoked_tokens
        .filter(r::jti.eq(jti))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    n == 1
}

#[actix_web::test]
async fn a_code_redeems_once_and_a_replay_revokes_what_the_first_redemption_started() {
    let f = fixture().await;
    let mut conn = f.store.conn().unwrap();
    grants::insert_code(&mut conn, &f.code("code-1", now() + 60)).unwrap();
    let first = f.issued(1);
    let Redemption::Fresh(row) =
        grants::redeem_code(&mut conn, "code-1", now(), &first, None).unwrap()
    else {
        panic!("the first redemption wins");
    };
    assert_eq!(row.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
    grants::start_family(
        &mut conn,
        &f.family("fam-1", now() + 86400),
        "rt-1",
        now() + 3600,
    )
    .unwrap();

    match grants::redeem_code(&mut conn, "code-1", now(), &f.issued(2), None).unwrap() {
        Redemption::Replayed { client_id } => assert_eq!(client_id, f.client_id),
        other => panic!("a second redemption is a replay: {other:?}"),
    }
    assert!(
        grants::family(&mut conn, "fam-1")
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some(),
        "the family the first redemption started is revoked"
    );
    assert!(is_revoked(&f.store, "jti-1"), "and its access token");
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "rt-1",
            "rt-1b",
            ("jti-rt-1b", now() + 900),
            now(),
            3600,
            0
        )
        .unwrap(),
        Rotation::Invalid
    ));

    // Unknown and expired codes.
    assert!(matches!(
        grants::redeem_code(&mut conn, "nope", now(), &f.issued(3), None).unwrap(),
        Redemption::Invalid
    ));
    grants::insert_code(&mut conn, &f.code("code-old", now() - 1)).unwrap();
    assert!(matches!(
        grants::redeem_code(&mut conn, "code-old", now(), &f.issued(4), None).unwrap(),
        Redemption::Invalid
    ));
}

#[actix_web::test]
async fn racing_redemptions_of_one_code_have_exactly_one_winner() {
    let f = fixture().await;
    for round in 0..3 {
        let hash = format!("race-{round}");
        grants::insert_code(&mut f.store.conn().unwrap(), &f.code(&hash, now() + 60)).unwrap();
        let barrier = Arc::new(Barrier::new(8));
        let family_template = f.family("template", now() + 86400);
        let family_template = &family_template;
        let results: Vec<Redemption> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (barrier, store, hash, issued) = (
                        barrier.clone(),
                        f.store.clone(),
                        hash.clone(),
                        f.issued(round * 10 + i),
                    );
                    s.spawn(move || {
                        let mut conn = store.conn().unwrap();
                        barrier.wait();
                        // Each racer would start its own family with the claim.
                        let family = grants::NewFamily {
                            family: FamilyRow {
                                id: issued.family_id.clone().unwrap(),
                                ..family_template.clone()
                            },
                            token_hash: format!("rt-{}", issued.access_jti),
                            idle_expires_at: now() + 3600,
                        };
                        grants::redeem_code(&mut conn, &hash, now(), &issued, Some(&family))
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let fresh: Vec<&CodeRow> = results
            .iter()
            .filter_map(|r| {
                if let Redemption::Fresh(c) = r {
                    Some(c.as_ref())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(fresh.len(), 1, "exactly one winner: {results:?}");
        assert_eq!(
            results
                .iter()
                .filter(|r| matches!(r, Redemption::Replayed { .. }))
                .count(),
            7
        );
        // The losers revoked the winner's refresh family, created in the claim's own
        // transaction, so no racing replay can miss it…
        let winner_family = fresh[0].family_id.clone().unwrap();
        let family = grants::family(&mut f.store.conn().unwrap(), &winner_family)
            .unwrap()
            .expect("the winner's family exists");
        assert!(
            family.revoked_at.is_some(),
            "the winner's family is revoked by the replays"
        );
        // …and the winner's access token.
        assert!(is_revoked(
            &f.store,
            fresh[0].access_jti.as_deref().unwrap()
        ));
    }
}

#[actix_web::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_whole_family() {
    let f = fixture().await;
    let mut conn = f.store.conn().unwrap();
    grants::start_family(
        &mut conn,
        &f.family("fam", now() + 86400),
        "rt-a",
        now() + 3600,
    )
    .unwrap();
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "rt-a",
            "rt-b",
            ("jti-rt-b", now() + 900),
            now(),
            3600,
            0
        )
        .unwrap(),
        Rotation::Rotated(_)
    ));
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "rt-b",
            "rt-c",
            ("jti-rt-c", now() + 900),
            now(),
            3600,
            0
        )
        .unwrap(),
        Rotation::Rotated(_)
    ));
    // An attacker replays the stolen first token.
    match grants::rotate_refresh(
        &mut conn,
        "rt-a",
        "rt-x",
        ("jti-rt-x", now() + 900),
        now(),
        3600,
        0,
    )
    .unwrap()
    {
        Rotation::Reused { family_id } => assert_eq!(family_id, "fam"),
        other => panic!("reuse is detected: {other:?}"),
    }
    // The legitimate holder's current token is dead too.
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "rt-c",
            "rt-d",
            ("jti-rt-d", now() + 900),
            now(),
            3600,
            0
        )
        .unwrap(),
        Rotation::Invalid
    ));
    assert!(
        matches!(
            grants::rotate_refresh(
                &mut conn,
                "rt-x",
                "rt-y",
                ("jti-rt-y", now() + 900),
                now(),
                3600,
                0
            )
            .unwrap(),
            Rotation::Invalid
        ),
        "nor the attacker's"
    );
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "unknown",
            "z",
            ("jti-z", now() + 900),
            now(),
            3600,
            0
        )
        .unwrap(),
        Rotation::Invalid
    ));
}

#[actix_web::test]
async fn racing_rotations_of_one_refresh_token_have_one_winner_and_revoke_the_family() {
    let f = fixture().await;
    grants::start_family(
        &mut f.store.conn().unwrap(),
        &f.family("fam-race", now() + 86400),
        "rt-0",
        now() + 3600,
    )
    .unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let results: Vec<Rotation> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (barrier, store) = (barrier.clone(), f.store.clone());
                s.spawn(move || {
                    let mut conn = store.conn().unwrap();
                    barrier.wait();
                    grants::rotate_refresh(
                        &mut conn,
                        "rt-0",
                        &format!("rt-new-{i}"),
                        (&format!("jti-{i}"), now() + 900),
                        now(),
                        3600,
                        0,
                    )
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Rotation::Rotated(_)))
            .count(),
        1,
        "{results:?}"
    );
    assert!(
        results.iter().any(|r| matches!(r, Rotation::Reused { .. })),
        "the racing reuse is detected: {results:?}"
    );
    let mut conn = f.store.conn().unwrap();
    assert!(grants::family(&mut conn, "fam-race")
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
}

#[actix_web::test]
async fn the_grace_window_lifetimes_and_revocation_hold() {
    let f = fixture().await;
    let mut conn = f.store.conn().unwrap();
    // A retry within the grace window (a lost response) is not reuse.
    grants::start_family(
        &mut conn,
        &f.family("fam-g", now() + 86400),
        "g-1",
        now() + 3600,
    )
    .unwrap();
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "g-1",
            "g-2",
            ("jti-g-2", now() + 900),
            now(),
            3600,
            30
        )
        .unwrap(),
        Rotation::Rotated(_)
    ));
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "g-1",
            "g-2b",
            ("jti-g-2b", now() + 900),
            now(),
            3600,
            30
        )
        .unwrap(),
        Rotation::Rotated(_)
    ));
    // The retry retired the successor it replaces: the family has one live token (g-2b).
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "g-2b",
            "g-4",
            ("jti-g-4", now() + 900),
            now(),
            3600,
            30,
        )
        .unwrap(),
        Rotation::Rotated(_)
    ));
    // …and after the window, reuse is reuse.
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "g-1",
            "g-3",
            ("jti-g-3", now() + 900),
            now() + 31,
            3600,
            30
        )
        .unwrap(),
        Rotation::Reused { .. }
    ));

    // Absolute lifetime.
    grants::start_family(
        &mut conn,
        &f.family("fam-abs", now() + 10),
        "a-1",
        now() + 3600,
    )
    .unwrap();
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "a-1",
            "a-2",
            ("jti-a-2", now() + 900),
            now() + 11,
            3600,
            0
        )
        .unwrap(),
        Rotation::Invalid
    ));
    // Idle lifetime.
    grants::start_family(
        &mut conn,
        &f.family("fam-idle", now() + 86400),
        "i-1",
        now() + 100,
    )
    .unwrap();
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "i-1",
            "i-2",
            ("jti-i-2", now() + 900),
            now() + 101,
            3600,
            0
        )
        .unwrap(),
        Rotation::Invalid
    ));

    // RFC 7009: a client revokes the family of its own refresh token, not another client's.
    grants::start_family(
        &mut conn,
        &f.family("fam-r", now() + 86400),
        "r-1",
        now() + 3600,
    )
    .unwrap();
    assert!(!grants::revoke_by_token(&mut conn, "r-1", "another-client", now()).unwrap());
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "r-1",
            "r-2",
            ("jti-r-2", now() + 900),
            now(),
            3600,
            0
        )
        .unwrap(),
        Rotation::Rotated(_)
    ));
    assert!(grants::revoke_by_token(&mut conn, "r-2", &f.client_id, now()).unwrap());
    assert!(matches!(
        grants::rotate_refresh(
            &mut conn,
            "r-2",
            "r-3",
            ("jti-r-3", now() + 900),
            now(),
            3600,
            0
        )
        .unwrap(),
        Rotation::Invalid
    ));
}
