//! Clone identity against the real server, PostgreSQL and Redis: an admin acts as a main account
//! for 30 minutes — the tokens and their claims, the restrictions, the audit rows with both
//! identities, refresh that stays a clone and ends at the deadline (the original's escape),
//! restore to the admin's own session, and one clone per admin.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, as_refs, call, code, hash, insert_user, tokens};

const PW: &str = "clone-test-password";

struct World {
    db: TestDb,
    srv: TestServer,
    root: i64,
    m1: i64,
    m2: i64,
    s1: i64,
}

async fn world() -> World {
    let db = TestDb::migrated().await;
    let root = insert_user(&db, "root", "admin", None, &hash(PW)).await;
    let m1 = insert_user(&db, "m1", "main_account", None, &hash(PW)).await;
    let m2 = insert_user(&db, "m2", "main_account", None, &hash(PW)).await;
    let s1 = insert_user(&db, "s1", "sub_account", Some(m1), &hash(PW)).await;
    let srv = TestServer::start(&as_refs(&db.env())).await;
    World {
        db,
        srv,
        root,
        m1,
        m2,
        s1,
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64"),
    )
    .expect("JSON claims")
}

async fn refresh(srv: &TestServer, refresh_token: &str) -> (u16, Value) {
    let r = srv
        .client()
        .post(srv.https_url("/api/ef/v1/auth/refresh"))
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await
        .expect("refresh");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn clone_of(w: &World, admin_token: &str, target: i64) -> (String, String, Value) {
    let (status, body) = call(
        &w.srv,
        Method::POST,
        &format!("/auth/clone/{target}"),
        admin_token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_clones_a_main_account_acts_within_limits_and_restores() {
    let w = world().await;
    let (admin, _) = tokens(&w.srv, "root", PW).await;

    // Only admins clone, and only main accounts.
    let (m1_token, _) = tokens(&w.srv, "m1", PW).await;
    let (status, body) = call(
        &w.srv,
        Method::POST,
        &format!("/auth/clone/{}", w.m2),
        &m1_token,
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        &w.srv,
        Method::POST,
        &format!("/auth/clone/{}", w.s1),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "INVALID_CLONE_TARGET");
    let (status, _) = call(&w.srv, Method::POST, "/auth/clone/999999", &admin, None).await;
    assert_eq!(status, 404);

    let (clone, _, body) = clone_of(&w, &admin, w.m1).await;
    assert_eq!(body["token_type"], "bearer");
    let session = &body["clone_session"];
    assert_eq!(session["original_user"]["username"], "root");
    assert_eq!(session["original_user"]["id"], w.root);
    assert_eq!(session["cloned_user"]["username"], "m1");
    assert_eq!(session["cloned_user"]["role"], "main_account");
    assert!(session["cloned_user"]["shop_ids"].is_array());
    let remaining = session["remaining_seconds"].as_u64().unwrap();
    assert!((1790..=1800).contains(&remaining), "{remaining}");
    let c = claims(&clone);
    assert_eq!(c["is_cloned"], true);
    assert_eq!(c["sub"], w.m1.to_string());
    assert_eq!(c["original_user_id"], w.root);
    assert_eq!(c["original_username"], "root");
    assert_eq!(c["clone_session_id"], session["session_id"]);
    assert!(c["exp"].as_u64().unwrap() <= c["clone_expires_at"].as_u64().unwrap());

    // Acting as the seller.
    let (status, me) = call(&w.srv, Method::GET, "/auth/me", &clone, None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["username"], "m1");
    let (status, st) = call(&w.srv, Method::GET, "/auth/clone/status", &clone, None).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["is_cloned"], true);
    assert_eq!(st["cloned_user"]["id"], w.m1);
    assert_eq!(st["original_user"]["id"], w.root);
    let (status, shops) = call(&w.srv, Method::GET, "/ozon/shops", &clone, None).await;
    assert_eq!(status, 200, "{shops}");
    let (status, users) = call(&w.srv, Method::GET, "/auth/users", &clone, None).await;
    assert_eq!(status, 200, "{users}");

    // Restricted while cloned.
    for (method, path, body) in [
        (Method::GET, "/system/info", None),
        (Method::GET, "/account-levels", None),
        (Method::GET, "/permissions/roles", None),
        (Method::POST, "/api-keys/", Some(json!({"name": "escape"}))),
        (
            Method::PUT,
            "/auth/me/password",
            Some(json!({"current_password": PW, "new_password": "another-password"})),
        ),
        (Method::POST, &format!("/auth/clone/{}", w.m2), None),
    ] {
        let (status, b) = call(&w.srv, method.clone(), path, &clone, body).await;
        assert_eq!(status, 403, "{method} {path}: {b}");
        assert_eq!(code(&b), "CLONE_RESTRICTED", "{method} {path}");
    }

    // A write as the seller is audited with both identities.
    let (status, created) = call(
        &w.srv,
        Method::POST,
        "/auth/users",
        &clone,
        Some(json!({"username": "helper1", "password": "helper-password", "role": "sub_account"})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["parent_user_id"], w.m1);
    let client = w.db.client().await;
    let rows = client
        .query(
            "SELECT module, action, user_id, username, original_user_id, original_username, notes
               FROM audit_logs WHERE original_user_id IS NOT NULL ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    assert!(
        seen.contains(&("clone".into(), "request".into())),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(m, a)| m == "user" && a == "create"),
        "the service's own audit row names both: {seen:?}"
    );
    for r in &rows {
        assert_eq!(r.get::<_, Option<i32>>(2), Some(w.m1 as i32));
        assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("m1"));
        assert_eq!(r.get::<_, Option<i32>>(4), Some(w.root as i32));
        assert_eq!(r.get::<_, Option<String>>(5).as_deref(), Some("root"));
    }
    let request_note: String = rows
        .iter()
        .find(|r| r.get::<_, String>(1) == "request")
        .map(|r| r.get::<_, Option<String>>(6).unwrap_or_default())
        .unwrap();
    assert!(
        request_note.contains("POST") && request_note.contains("/auth/users"),
        "{request_note}"
    );
    let started: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE module = 'clone' AND action = 'start'
               AND user_id = $1 AND record_id = $2",
            &[&(w.root as i32), &w.m1.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(started, 1);
    // The admin sees the same in /audit/logs.
    let (status, log) = call(
        &w.srv,
        Method::GET,
        "/audit/logs?module=clone",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    assert!(
        log["data"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["action"] == "request" && i["original_username"] == "root"),
        "{log}"
    );

    // Restore: the admin's own session again; the clone token is dead.
    let (status, back) = call(&w.srv, Method::POST, "/auth/clone/restore", &clone, None).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["user"]["username"], "root");
    let restored = back["access_token"].as_str().unwrap().to_owned();
    let rc = claims(&restored);
    assert!(rc.get("is_cloned").is_none(), "{rc}");
    assert_eq!(rc["sub"], w.root.to_string());
    let (status, me) = call(&w.srv, Method::GET, "/auth/me", &restored, None).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "root");
    let (status, st) = call(&w.srv, Method::GET, "/auth/clone/status", &restored, None).await;
    assert_eq!(status, 200);
    assert_eq!(st["is_cloned"], false);
    let (status, _) = call(&w.srv, Method::GET, "/auth/me", &clone, None).await;
    assert_eq!(
        status, 401,
        "the clone token must stop working after restore"
    );
    // Restoring a token that is no clone is refused.
    let (status, body) = call(&w.srv, Method::POST, "/auth/clone/restore", &restored, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "NOT_CLONED");
    // The refreshed admin session works with its new refresh token.
    let (status, pair) = refresh(&w.srv, back["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{pair}");
    w.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_refresh_stays_a_clone_and_ends_at_the_deadline() {
    let w = world().await;
    let (admin, _) = tokens(&w.srv, "root", PW).await;
    let (clone, clone_refresh, body) = clone_of(&w, &admin, w.m1).await;
    let deadline = claims(&clone)["clone_expires_at"].as_u64().unwrap();
    assert!(claims(&clone_refresh)["exp"].as_u64().unwrap() <= deadline);

    // The original's escape: refreshing a clone gave a normal 7-day token of the seller.
    let (status, pair) = refresh(&w.srv, &clone_refresh).await;
    assert_eq!(status, 200, "{pair}");
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let next_refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    let a = claims(&access);
    assert_eq!(a["is_cloned"], true, "{a}");
    assert_eq!(a["original_user_id"], w.root);
    assert_eq!(a["clone_expires_at"].as_u64().unwrap(), deadline);
    assert!(a["exp"].as_u64().unwrap() <= deadline);
    assert!(claims(&next_refresh)["exp"].as_u64().unwrap() <= deadline);
    let (status, _) = call(&w.srv, Method::GET, "/system/info", &access, None).await;
    assert_eq!(status, 403, "a refreshed clone keeps its restrictions");

    // A token that claims the clone but is past its deadline is refused, whatever its exp says
    // (signed with the server's own key, as a longer-lived token would be).
    let mut late: euraflow::auth::tokens::AccessClaims = serde_json::from_value(a.clone()).unwrap();
    late.clone_expires_at = Some(euraflow::auth::tokens::now_s() - 1);
    late.exp = euraflow::auth::tokens::now_s() + 3600;
    let late = w.srv.state().auth().keys.sign(&late).unwrap();
    let (status, b) = call(&w.srv, Method::GET, "/auth/me", &late, None).await;
    assert_eq!(status, 401, "{b}");
    assert_eq!(code(&b), "CLONE_EXPIRED");

    // At the deadline the clone cannot be refreshed any more.
    w.db.client()
        .await
        .execute(
            "UPDATE user_login_sessions SET expires_at = now() - interval '1 second'
              WHERE clone_id::text = $1",
            &[&body["clone_session"]["session_id"].as_str().unwrap()],
        )
        .await
        .unwrap();
    let (status, b) = refresh(&w.srv, &next_refresh).await;
    assert_eq!(status, 401, "{b}");
    assert_eq!(code(&b), "SESSION_EXPIRED");
    w.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clone_per_admin_and_the_sellers_own_login_is_untouched() {
    let w = world().await;
    let (admin, _) = tokens(&w.srv, "root", PW).await;
    let (first, first_refresh, _) = clone_of(&w, &admin, w.m1).await;
    // The seller logging in does not end the admin's clone, nor the clone the seller's session.
    let (seller, _) = tokens(&w.srv, "m1", PW).await;
    let (status, _) = call(&w.srv, Method::GET, "/auth/me", &first, None).await;
    assert_eq!(status, 200);

    let (second, _, _) = clone_of(&w, &admin, w.m2).await;
    let (status, b) = call(&w.srv, Method::GET, "/auth/me", &first, None).await;
    assert_eq!(
        status, 401,
        "the first clone ends when the second opens: {b}"
    );
    let (status, _) = refresh(&w.srv, &first_refresh).await;
    assert_eq!(status, 401);
    let (status, me) = call(&w.srv, Method::GET, "/auth/me", &second, None).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "m2");
    let (status, _) = call(&w.srv, Method::GET, "/auth/me", &seller, None).await;
    assert_eq!(status, 200, "the seller's own session is not a clone");

    // The admin logging out ends the clone opened from that login.
    let r = w
        .srv
        .client()
        .post(w.srv.https_url("/api/ef/v1/auth/logout"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (status, _) = call(&w.srv, Method::GET, "/auth/me", &second, None).await;
    assert_eq!(status, 401, "the clone must end with the admin's login");
    let (admin, _) = tokens(&w.srv, "root", PW).await;

    // Parallel starts still leave one.
    let mut tasks = Vec::new();
    for target in [w.m1, w.m2, w.m1, w.m2] {
        let srv_client = w.srv.client();
        let url = w.srv.https_url(&format!("/api/ef/v1/auth/clone/{target}"));
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            srv_client
                .post(url)
                .bearer_auth(admin)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    let active: i64 =
        w.db.client()
            .await
            .query_one(
                "SELECT count(*) FROM user_login_sessions
              WHERE cloned_by = $1 AND is_active AND expires_at > now()",
                &[&w.root],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(active, 1);
    w.srv.stop().await;
}
