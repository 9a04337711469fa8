//! The role matrix, route by route: who may create, see, edit, delete and reset whom; quotas;
//! account states (suspended, disabled, inherited by sub-accounts); admin-only routes; and the
//! audit log recording each action with where it came from.

use crate::common::{self, TestDb, TestServer, as_refs, call, code, hash, insert_user, tokens};
use reqwest::Method;
use serde_json::json;

struct World {
    db: TestDb,
    srv: TestServer,
    root: String, // the user named "admin"
    ops: String,  // a second admin
    m1: String,   // main account
    s1: String,   // m1's sub-account
    sh1: String,  // m1's shipper
    m2: String,   // another main account
    ids: std::collections::HashMap<&'static str, i64>,
}

const PW: &str = "matrix-password";

async fn world() -> World {
    let db = TestDb::migrated().await;
    let h = hash(PW);
    let mut ids = std::collections::HashMap::new();
    ids.insert("admin", insert_user(&db, "admin", "admin", None, &h).await);
    ids.insert("ops", insert_user(&db, "ops", "admin", None, &h).await);
    let m1 = insert_user(&db, "m1", "main_account", None, &h).await;
    ids.insert("m1", m1);
    ids.insert(
        "s1",
        insert_user(&db, "s1", "sub_account", Some(m1), &h).await,
    );
    ids.insert(
        "sh1",
        insert_user(&db, "sh1", "shipper", Some(m1), &h).await,
    );
    let m2 = insert_user(&db, "m2", "main_account", None, &h).await;
    ids.insert("m2", m2);
    ids.insert(
        "s2",
        insert_user(&db, "s2", "sub_account", Some(m2), &h).await,
    );
    let srv = TestServer::start(&as_refs(&db.env())).await;
    let t = |n: &'static str| {
        let srv = &srv;
        async move { tokens(srv, n, PW).await.0 }
    };
    World {
        root: t("admin").await,
        ops: t("ops").await,
        m1: t("m1").await,
        s1: t("s1").await,
        sh1: t("sh1").await,
        m2: t("m2").await,
        db,
        srv,
        ids,
    }
}

fn new_user(name: &str, role: &str) -> serde_json::Value {
    json!({"username": name, "password": "new-user-password", "role": role})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_users() {
    let w = world().await;
    let s = &w.srv;
    let cases: [(&str, &String, &str, u16, &str); 8] = [
        ("admin creates main", &w.root, "main_account", 200, ""),
        ("admin creates shipper", &w.root, "shipper", 200, ""),
        (
            "admin may not create admin",
            &w.root,
            "admin",
            403,
            "INVALID_ROLE",
        ),
        ("main creates sub", &w.m1, "sub_account", 200, ""),
        ("main creates shipper", &w.m1, "shipper", 200, ""),
        (
            "main may not create main",
            &w.m1,
            "main_account",
            403,
            "INVALID_ROLE",
        ),
        (
            "sub may not create",
            &w.s1,
            "sub_account",
            403,
            "INSUFFICIENT_PERMISSIONS",
        ),
        (
            "shipper may not create",
            &w.sh1,
            "sub_account",
            403,
            "INSUFFICIENT_PERMISSIONS",
        ),
    ];
    for (i, (what, token, role, status, err)) in cases.iter().enumerate() {
        let (got, body) = call(
            s,
            Method::POST,
            "/auth/users",
            token,
            Some(new_user(&format!("new_{i}"), role)),
        )
        .await;
        assert_eq!(got, *status, "{what}: {body}");
        if *status == 200 {
            assert_eq!(body["role"], *role, "{what}");
        } else {
            assert_eq!(code(&body), *err, "{what}: {body}");
        }
    }
    // A main account's new users are its children.
    let (_, body) = call(
        s,
        Method::POST,
        "/auth/users",
        &w.m1,
        Some(new_user("child_x", "sub_account")),
    )
    .await;
    assert_eq!(body["parent_user_id"], w.ids["m1"]);
    // Phone numbers are an admin's business.
    let mut with_phone = new_user("child_phone", "sub_account");
    with_phone["phone"] = json!("13812345678");
    let (status, body) = call(
        s,
        Method::POST,
        "/auth/users",
        &w.m1,
        Some(with_phone.clone()),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (403, "PHONE_ADMIN_ONLY"));
    with_phone["role"] = json!("main_account");
    let (status, body) = call(
        s,
        Method::POST,
        "/auth/users",
        &w.root,
        Some(with_phone.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["phone"], "138****5678");
    with_phone["username"] = json!("other_phone");
    let (status, body) = call(s, Method::POST, "/auth/users", &w.root, Some(with_phone)).await;
    assert_eq!((status, code(&body).as_str()), (409, "PHONE_EXISTS"));
    let (status, body) = call(
        s,
        Method::POST,
        "/auth/users",
        &w.root,
        Some(new_user("ops", "main_account")),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (409, "USERNAME_EXISTS"));
    w.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_come_from_the_account_level() {
    let w = world().await;
    let (status, level) = call(
        &w.srv,
        Method::POST,
        "/account-levels",
        &w.root,
        Some(json!({"name": "tiny", "max_sub_accounts": 3})),
    )
    .await;
    assert_eq!(status, 201, "{level}");
    let lid = level["id"].as_i64().unwrap();
    let (status, _) = call(
        &w.srv,
        Method::PUT,
        &format!("/auth/users/{}", w.ids["m1"]),
        &w.root,
        Some(json!({"account_level_id": lid})),
    )
    .await;
    assert_eq!(status, 200);
    // m1 has s1 and sh1 already: one more fits, the next does not.
    assert_eq!(
        call(
            &w.srv,
            Method::POST,
            "/auth/users",
            &w.m1,
            Some(new_user("third", "sub_account"))
        )
        .await
        .0,
        200
    );
    let (status, body) = call(
        &w.srv,
        Method::POST,
        "/auth/users",
        &w.m1,
        Some(new_user("fourth", "sub_account")),
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "QUOTA_EXCEEDED"),
        "{body}"
    );
    // Only admins manage levels; a level in use cannot be deleted.
    assert_eq!(
        call(&w.srv, Method::GET, "/account-levels", &w.m1, None)
            .await
            .0,
        403
    );
    let (status, body) = call(
        &w.srv,
        Method::DELETE,
        &format!("/account-levels/{lid}"),
        &w.root,
        None,
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (400, "LEVEL_IN_USE"));
    let (status, body) = call(
        &w.srv,
        Method::POST,
        "/account-levels",
        &w.root,
        Some(json!({"name": "tiny"})),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (409, "LEVEL_EXISTS"));
    w.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_sees_edits_deletes_and_resets_whom() {
    let w = world().await;
    let s = &w.srv;
    let id = |n: &str| w.ids[n];
    let names = |v: &serde_json::Value| {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&call(s, Method::GET, "/auth/users", &w.root, None).await.1).len(),
        7
    );
    assert_eq!(
        names(&call(s, Method::GET, "/auth/users", &w.m1, None).await.1),
        ["m1", "s1", "sh1"]
    );
    assert_eq!(
        names(&call(s, Method::GET, "/auth/users", &w.s1, None).await.1),
        ["s1"]
    );

    let edit = |token: &String, who: &str| {
        let path = format!("/auth/users/{}", id(who));
        let token = token.clone();
        async move {
            call(
                s,
                Method::PUT,
                &path,
                &token,
                Some(json!({"permissions": ["x"]})),
            )
            .await
        }
    };
    assert_eq!(edit(&w.root, "m1").await.0, 200);
    assert_eq!(edit(&w.m1, "s1").await.0, 200);
    // Another main account's child does not exist for m1 (404, as a missing id: issue 17).
    assert_eq!(edit(&w.m1, "s2").await.0, 404, "not m1's child");
    assert_eq!(edit(&w.m1, "m1").await.0, 403, "self goes through /auth/me");
    assert_eq!(edit(&w.s1, "s1").await.0, 403);
    assert_eq!(edit(&w.m2, "s1").await.0, 404);
    assert_eq!(edit(&w.root, "admin").await.0, 403);
    let (status, body) = call(
        s,
        Method::PUT,
        &format!("/auth/users/{}", id("s1")),
        &w.m1,
        Some(json!({"role": "main_account"})),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (403, "INVALID_ROLE"));
    let (status, _) = call(
        s,
        Method::PUT,
        &format!("/auth/users/{}", id("ops")),
        &w.root,
        Some(json!({"role": "admin", "account_level_id": null})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        s,
        Method::PUT,
        "/auth/users/999999",
        &w.root,
        Some(json!({})),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (404, "USER_NOT_FOUND"));

    let reset = |token: &String, who: &str| {
        let path = format!("/auth/users/{}/password", id(who));
        let token = token.clone();
        async move {
            call(
                s,
                Method::PATCH,
                &path,
                &token,
                Some(json!({"new_password": "a-new-password"})),
            )
            .await
        }
    };
    let (status, body) = reset(&w.ops, "admin").await;
    assert_eq!(
        (status, code(&body).as_str()),
        (403, "CANNOT_RESET_ADMIN_PASSWORD")
    );
    assert_eq!(
        reset(&w.ops, "m1").await.0,
        403,
        "other admins only their children"
    );
    assert_eq!(
        reset(&w.m1, "s1").await.0,
        403,
        "password resets are for admins"
    );
    assert_eq!(
        reset(&w.root, "ops").await.0,
        204,
        "the user named admin resets anyone"
    );
    // A reset ends the target's sessions: the old token is dead, the new password works.
    let (status, body) = call(s, Method::GET, "/auth/me", &w.ops, None).await;
    assert_eq!((status, code(&body).as_str()), (401, "SESSION_EXPIRED"));
    assert_eq!(common::login(s, "ops", "a-new-password").await.0, 200);

    assert_eq!(
        call(
            s,
            Method::DELETE,
            &format!("/auth/users/{}", id("s2")),
            &w.m1,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            s,
            Method::DELETE,
            &format!("/auth/users/{}", id("sh1")),
            &w.m1,
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            s,
            Method::DELETE,
            &format!("/auth/users/{}", id("m2")),
            &w.root,
            None
        )
        .await
        .0,
        204
    );
    // m2's child went with it, and its token no longer works.
    let left: i64 =
        w.db.client()
            .await
            .query_one(
                "SELECT count(*) FROM users WHERE username IN ('m2','s2','sh1')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(left, 0);
    assert_eq!(call(s, Method::GET, "/auth/me", &w.m2, None).await.0, 401);
    w.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_states_block_writes_or_everything_and_sub_accounts_inherit() {
    let w = world().await;
    let s = &w.srv;
    let settings = call(s, Method::GET, "/settings", &w.root, None).await.1;
    // Suspend m1: m1 and its sub-account may read, not write; the shipper does not inherit.
    let (status, _) = call(
        s,
        Method::PUT,
        &format!("/auth/users/{}", w.ids["m1"]),
        &w.root,
        Some(json!({"account_status": "suspended"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(call(s, Method::GET, "/auth/me", &w.s1, None).await.0, 200);
    let (status, body) = call(
        s,
        Method::PUT,
        "/auth/me",
        &w.s1,
        Some(json!({"username": "s1_renamed"})),
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (403, "ACCOUNT_WRITE_FORBIDDEN"),
        "{body}"
    );
    let (status, body) = call(
        s,
        Method::POST,
        "/auth/users",
        &w.m1,
        Some(new_user("blocked", "sub_account")),
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (403, "ACCOUNT_WRITE_FORBIDDEN")
    );
    assert_eq!(
        call(
            s,
            Method::PUT,
            "/auth/me",
            &w.sh1,
            Some(json!({"username": "sh1_renamed"}))
        )
        .await
        .0,
        200
    );
    let _ = settings;

    // Expire m1: its sub-account can no longer log in (inherited expiry).
    let (status, _) = call(
        s,
        Method::PUT,
        &format!("/auth/users/{}", w.ids["m1"]),
        &w.root,
        Some(json!({"account_status": "active", "expires_at": "2020-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = common::login(s, "s1", PW).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (403, "ACCOUNT_DISABLED"),
        "{body}"
    );

    // Disable m2: sessions end at once, login is refused.
    let (status, _) = call(
        s,
        Method::PUT,
        &format!("/auth/users/{}", w.ids["m2"]),
        &w.root,
        Some(json!({"account_status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(s, Method::GET, "/auth/me", &w.m2, None).await;
    assert_eq!((status, code(&body).as_str()), (401, "SESSION_EXPIRED"));
    let (status, body) = common::login(s, "m2", PW).await;
    assert_eq!((status, code(&body).as_str()), (403, "ACCOUNT_DISABLED"));
    // Deactivated (is_active = false): login refused too.
    call(
        s,
        Method::PUT,
        &format!("/auth/users/{}", w.ids["sh1"]),
        &w.root,
        Some(json!({"is_active": false})),
    )
    .await;
    let (status, body) = common::login(s, "sh1_renamed", PW).await;
    assert_eq!((status, code(&body).as_str()), (401, "USER_INACTIVE"));
    w.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_each_action_with_its_origin() {
    let w = world().await;
    let s = &w.srv;
    let r = s
        .client()
        .post(s.https_url("/api/ef/v1/auth/users"))
        .bearer_auth(&w.m1)
        .header("user-agent", "audit-test/1.0")
        .json(&new_user("audited", "sub_account"))
        .send()
        .await
        .unwrap();
    let trace = r.headers()["x-trace-id"].to_str().unwrap().to_owned();
    let created: serde_json::Value = r.json().await.unwrap();
    let cid = created["id"].as_i64().unwrap();
    call(
        s,
        Method::PUT,
        &format!("/auth/users/{cid}"),
        &w.m1,
        Some(json!({"account_status": "suspended"})),
    )
    .await;
    call(
        s,
        Method::PATCH,
        &format!("/auth/users/{cid}/password"),
        &w.root,
        Some(json!({"new_password": "another-password"})),
    )
    .await;
    call(
        s,
        Method::DELETE,
        &format!("/auth/users/{cid}"),
        &w.m1,
        None,
    )
    .await;
    common::login(s, "m1", "wrong-password").await;

    assert_eq!(
        call(s, Method::GET, "/audit/logs", &w.m1, None).await.0,
        403,
        "admins only"
    );
    let (status, page) = call(s, Method::GET, "/audit/logs?page_size=200", &w.root, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["ok"], true);
    let items = page["data"]["items"].as_array().unwrap();
    let find = |action: &str| {
        items
            .iter()
            .find(|i| i["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {page}"))
    };
    let create = find("create");
    assert_eq!(create["username"], "m1");
    assert_eq!(create["record_id"], cid.to_string());
    assert_eq!(create["ip_address"], "127.0.0.1");
    assert_eq!(create["user_agent"], "audit-test/1.0");
    assert_eq!(create["request_id"], trace);
    let update = find("update");
    assert_eq!(
        update["changes"]["account_status"],
        json!({"old": "active", "new": "suspended"})
    );
    find("reset_password");
    find("delete");
    find("login");
    find("login_failed");
    assert!(
        !page.to_string().contains("another-password"),
        "a password reached the audit log"
    );
    // Cursor paging.
    let (_, first) = call(s, Method::GET, "/audit/logs?page_size=2", &w.root, None).await;
    assert_eq!(first["data"]["has_more"], true);
    let cursor = first["data"]["next_cursor"].as_i64().unwrap();
    let (_, second) = call(
        s,
        Method::GET,
        &format!("/audit/logs?page_size=2&cursor={cursor}"),
        &w.root,
        None,
    )
    .await;
    assert!(second["data"]["items"][0]["id"].as_i64().unwrap() < cursor);
    let (status, stats) = call(s, Method::GET, "/audit/stats", &w.root, None).await;
    assert_eq!(status, 200);
    assert!(stats["data"]["logins"].as_i64().unwrap() >= 6);
    w.srv.stop().await;
}

/// The rest of the matrix: account levels are for admins only (every verb); API keys and
/// settings need a shop (`require_shops()`, 403 `NO_SHOPS`; admins see all shops), and a key is
/// its owner's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_keys_and_settings_by_role() {
    let w = world().await;
    let s = &w.srv;
    let (status, levels) = call(s, Method::GET, "/account-levels", &w.root, None).await;
    assert_eq!(status, 200);
    let lid = levels[0]["id"].as_i64().unwrap();
    let level = format!("/account-levels/{lid}");
    assert_eq!(call(s, Method::GET, &level, &w.ops, None).await.0, 200);
    for (who, t) in [("m1", &w.m1), ("s1", &w.s1), ("sh1", &w.sh1)] {
        for (method, path, body) in [
            (Method::GET, "/account-levels", None),
            (Method::GET, level.as_str(), None),
            (Method::POST, "/account-levels", Some(json!({"name": "x"}))),
            (Method::PUT, level.as_str(), Some(json!({"alias": "x"}))),
            (Method::DELETE, level.as_str(), None),
        ] {
            let (status, body) = call(s, method.clone(), path, t, body).await;
            assert_eq!(status, 403, "{who} {method} {path}: {body}");
        }
        // No shop yet: no keys, no settings.
        for (method, path, body) in [
            (Method::GET, "/api-keys/", None),
            (Method::POST, "/api-keys/", Some(json!({"name": "k"}))),
            (Method::GET, "/settings", None),
        ] {
            let (status, body) = call(s, method.clone(), path, t, body).await;
            assert_eq!(
                (status, code(&body).as_str()),
                (403, "NO_SHOPS"),
                "{who} {method} {path}: {body}"
            );
        }
    }
    // Admins have every shop.
    assert_eq!(
        call(s, Method::GET, "/api-keys/", &w.root, None).await.0,
        200
    );
    assert_eq!(
        call(s, Method::GET, "/settings", &w.root, None).await.0,
        200
    );

    // With a shop, m2 manages its own keys; nobody else's key is visible or deletable to it.
    for (user, shop) in [("m1", 1_i64), ("m2", 2)] {
        common::insert_shop(&w.db, shop, w.ids[user]).await;
        w.db.client()
            .await
            .execute(
                "INSERT INTO user_shops (user_id, shop_id) VALUES ($1, $2)",
                &[&w.ids[user], &shop],
            )
            .await
            .unwrap();
    }
    let m1 = tokens(s, "m1", PW).await.0;
    let m2 = tokens(s, "m2", PW).await.0;
    let (status, k1) = call(
        s,
        Method::POST,
        "/api-keys/",
        &m1,
        Some(json!({"name": "m1 key"})),
    )
    .await;
    assert_eq!(status, 201, "{k1}");
    let (status, k2) = call(
        s,
        Method::POST,
        "/api-keys/",
        &m2,
        Some(json!({"name": "m2 key"})),
    )
    .await;
    assert_eq!(status, 201, "{k2}");
    let (_, list) = call(s, Method::GET, "/api-keys/", &m2, None).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["m2 key"]);
    let k1_id = k1["key_id"].as_i64().unwrap();
    for (method, path) in [
        (Method::DELETE, format!("/api-keys/{k1_id}")),
        (Method::PUT, format!("/api-keys/{k1_id}/regenerate")),
    ] {
        let (status, body) = call(s, method.clone(), &path, &m2, None).await;
        assert_eq!(status, 404, "m2 {method} {path}: {body}");
    }
    let (status, _) = call(s, Method::GET, "/settings", &m2, None).await;
    assert_eq!(status, 200);
    // m1 can still delete its own key.
    let (status, _) = call(s, Method::DELETE, &format!("/api-keys/{k1_id}"), &m1, None).await;
    assert_eq!(status, 204);
    w.srv.stop().await;
}

/// `GET /auth/users/{id}/quota`, what the user page shows a main account: its sub-accounts and
/// shops (its own and its children's) against its level. Children see their main account's
/// quota; other tenants get the 404 of a missing id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_count_against_the_main_account_and_stay_within_the_tenant() {
    let w = world().await;
    let s = &w.srv;
    let (m1, s1) = (w.ids["m1"], w.ids["s1"]);
    let c = w.db.client().await;
    c.execute(
        "INSERT INTO account_levels (name, max_sub_accounts, max_shops) VALUES ('tiny-q', 4, 3)",
        &[],
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE users SET account_level_id = (SELECT id FROM account_levels WHERE name = 'tiny-q')
          WHERE id = $1",
        &[&m1],
    )
    .await
    .unwrap();
    common::insert_shop(&w.db, 9101, m1).await;
    common::insert_shop(&w.db, 9102, s1).await;
    common::insert_shop(&w.db, 9103, w.ids["m2"]).await;
    let expected =
        json!({"sub_accounts_count": 2, "max_sub_accounts": 4, "shops_count": 2, "max_shops": 3});
    for (who, token, id) in [
        ("m1 itself", &w.m1, m1),
        ("m1's sub-account, about itself", &w.s1, s1),
        ("m1's sub-account, about m1", &w.s1, m1),
        ("an admin", &w.root, m1),
        ("m1 about its sub-account", &w.m1, s1),
    ] {
        let (st, body) = call(
            s,
            Method::GET,
            &format!("/auth/users/{id}/quota"),
            token,
            None,
        )
        .await;
        if who == "m1's sub-account, about m1" {
            // A sub-account sees only itself (its quota is m1's, through its own id).
            assert_eq!(st, 404, "{who}: {body}");
            continue;
        }
        assert_eq!(st, 200, "{who}: {body}");
        assert_eq!(body, expected, "{who}");
    }
    // Another tenant, and a missing id: the same 404.
    let (st, body) = call(
        s,
        Method::GET,
        &format!("/auth/users/{m1}/quota"),
        &w.m2,
        None,
    )
    .await;
    assert_eq!(
        (st, code(&body).as_str()),
        (404, "USER_NOT_FOUND"),
        "{body}"
    );
    let (st, body) = call(s, Method::GET, "/auth/users/987654/quota", &w.m2, None).await;
    assert_eq!(
        (st, code(&body).as_str()),
        (404, "USER_NOT_FOUND"),
        "{body}"
    );
    // An account without a level has no limits.
    c.execute(
        "UPDATE users SET account_level_id = NULL WHERE id = $1",
        &[&w.ids["m2"]],
    )
    .await
    .unwrap();
    let (st, body) = call(
        s,
        Method::GET,
        &format!("/auth/users/{}/quota", w.ids["m2"]),
        &w.m2,
        None,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["max_shops"], serde_json::Value::Null, "{body}");
    assert_eq!(body["shops_count"], 1, "{body}");

    // An admin cannot make a sub-account without its main account.
    let (st, body) = call(
        s,
        Method::POST,
        "/auth/users",
        &w.root,
        Some(new_user("orphan", "sub_account")),
    )
    .await;
    assert_eq!(
        (st, code(&body).as_str()),
        (400, "PARENT_REQUIRED"),
        "{body}"
    );
    let mut with_parent = new_user("adopted", "sub_account");
    with_parent["parent_user_id"] = json!(m1);
    let (st, body) = call(s, Method::POST, "/auth/users", &w.root, Some(with_parent)).await;
    assert_eq!(st, 200, "{body}");
    w.srv.stop().await;
}
