//! Hardening of identity (issue 17, item 6): a non-admin cannot tell which user ids exist, a
//! session token is good only for the user it was started for, and a token without a session is
//! refused — with Redis and without it. The tokens below are signed with the server's real key,
//! as an attacker who learnt it could.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, as_refs, code, hash, insert_user, tokens};

async fn call(
    srv: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = srv
        .client()
        .request(method, srv.https_url(&format!("/api/ef/v1{path}")))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// A main account probing ids: another account's user, an admin and an id that does not exist
/// all answer the same 404 `USER_NOT_FOUND`, on every user route (before: 403 for existing ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_admin_cannot_tell_existing_user_ids_from_missing_ones() {
    let db = TestDb::migrated().await;
    let root_id = insert_user(&db, "root", "admin", None, &hash("root-password")).await;
    let m1 = insert_user(&db, "m1", "main_account", None, &hash("m1-password")).await;
    let m2 = insert_user(&db, "m2", "main_account", None, &hash("m2-password")).await;
    let s2 = insert_user(&db, "s2", "sub_account", Some(m2), &hash("s2-password")).await;
    let s1 = insert_user(&db, "s1", "sub_account", Some(m1), &hash("s1-password")).await;
    let srv = TestServer::start(&as_refs(&db.env())).await;
    let (m1_token, _) = tokens(&srv, "m1", "m1-password").await;
    let missing = 987_654_321;
    let routes = |id: i64| {
        [
            (
                Method::PUT,
                format!("/auth/users/{id}"),
                Some(json!({"permissions": ["x"]})),
            ),
            (Method::DELETE, format!("/auth/users/{id}"), None),
            (
                Method::PATCH,
                format!("/auth/users/{id}/password"),
                Some(json!({"new_password": "a-new-password"})),
            ),
            (Method::GET, format!("/auth/users/{id}/quota"), None),
        ]
    };
    for (method, path, body) in routes(missing) {
        let (status, answer) = call(&srv, method.clone(), &path, &m1_token, body).await;
        assert_eq!(
            (status, code(&answer).as_str()),
            (404, "USER_NOT_FOUND"),
            "{method} {path}: {answer}"
        );
    }
    for id in [m2, s2, root_id] {
        for (method, path, body) in routes(id) {
            let (status, answer) = call(&srv, method.clone(), &path, &m1_token, body).await;
            assert_eq!(
                (status, code(&answer).as_str()),
                (404, "USER_NOT_FOUND"),
                "{method} {path} (exists, not m1's): {answer}"
            );
        }
    }
    // Its own child it does see.
    let (status, _) = call(
        &srv,
        Method::GET,
        &format!("/auth/users/{s1}/quota"),
        &m1_token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    srv.stop().await;
}

/// Claims of a real access token, re-signed after `edit` with the server's key.
fn forge(srv_secret: &str, access: &str, edit: impl FnOnce(&mut Value)) -> String {
    use base64::Engine;
    let payload = access.split('.').nth(1).unwrap();
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    edit(&mut claims);
    euraflow::auth::tokens::TokenKeys::new(
        &euraflow::config::Secret::new(srv_secret.to_owned()),
        std::time::Duration::from_secs(600),
        std::time::Duration::from_secs(600),
    )
    .sign(&claims)
    .unwrap()
}

async fn sessions_are_bound(redis_down: bool) {
    let db = TestDb::migrated().await;
    let alice = insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let bob = insert_user(&db, "bob", "admin", None, &hash("bob-password")).await;
    let secret = euraflow::config::generate_secret();
    let mut env = db.env();
    env.push(("EF__SECRET_KEY".into(), secret.clone()));
    let srv = TestServer::start(&as_refs(&env)).await;
    let (access, _) = tokens(&srv, "alice", "alice-password").await;
    assert_eq!(
        call(&srv, Method::GET, "/auth/me", &access, None).await.0,
        200
    );
    // Alice's live session under bob's id (an admin): refused, not bob.
    let as_bob = forge(&secret, &access, |c| {
        c["sub"] = json!(bob.to_string());
        c["username"] = json!("bob");
        c["role"] = json!("admin");
    });
    // The same claims without a session.
    let sessionless = forge(&secret, &access, |c| {
        c.as_object_mut().unwrap().remove("session_token");
    });
    let null_session = forge(&secret, &access, |c| c["session_token"] = Value::Null);
    let srv = if redis_down {
        srv.stop().await;
        env.extend(
            [("EF__REDIS_PORT", "1"), ("EF__REDIS_TIMEOUT", "300ms")]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let srv = TestServer::start(&as_refs(&env)).await;
        assert_eq!(
            call(&srv, Method::GET, "/auth/me", &access, None).await.0,
            200,
            "alice's own token still works"
        );
        srv
    } else {
        srv
    };
    let (status, body) = call(&srv, Method::GET, "/auth/me", &as_bob, None).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (401, "SESSION_EXPIRED"),
        "a session of user {alice} used as {bob}: {body}"
    );
    for (what, token) in [
        ("no session claim", &sessionless),
        ("a null session", &null_session),
    ] {
        let (status, body) = call(&srv, Method::GET, "/auth/me", token, None).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (401, "INVALID_TOKEN"),
            "{what}: {body}"
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_works_only_for_its_user_and_tokens_need_one() {
    sessions_are_bound(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_session_works_only_for_its_user_and_tokens_need_one() {
    sessions_are_bound(true).await;
}
