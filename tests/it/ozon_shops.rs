//! Ozon shops through the real server against real PostgreSQL and Redis and the fake Ozon over
//! real HTTP: adding a shop (links, quotas, duplicate Client-Ids), the key stored as ciphertext
//! only, the connection test telling the truth, and every shop route refusing another tenant.

use crate::common;
use crate::common::{TestDb, TestServer, as_refs, call, code, hash, insert_user, tokens};
use euraflow::ozon::fake::{FakeConfig, FakeOzon};
use reqwest::Method;
use serde_json::{Value, json};

const PW: &str = "shop-test-password";

struct World {
    db: TestDb,
    srv: TestServer,
    fake: FakeOzon,
    /// main account m1 (level with max_shops 2), its sub-account s1, another tenant m2, admin.
    m1: String,
    s1: String,
    m2: String,
    root: String,
    ids: std::collections::HashMap<&'static str, i64>,
}

async fn world() -> World {
    let db = TestDb::migrated().await;
    let fake = FakeOzon::start(FakeConfig {
        shops: 3,
        products: 5,
        postings: 0,
        call_log_capacity: 1000,
    })
    .await
    .unwrap();
    let client = db.client().await;
    let level: i64 = client
        .query_one(
            "INSERT INTO account_levels (name, max_sub_accounts, max_shops) VALUES ('small', 5, 2) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut ids = std::collections::HashMap::new();
    ids.insert(
        "root",
        insert_user(&db, "root", "admin", None, &hash(PW)).await,
    );
    let m1 = insert_user(&db, "m1", "main_account", None, &hash(PW)).await;
    client
        .execute(
            "UPDATE users SET account_level_id = $2 WHERE id = $1",
            &[&m1, &level],
        )
        .await
        .unwrap();
    ids.insert("m1", m1);
    ids.insert(
        "s1",
        insert_user(&db, "s1", "sub_account", Some(m1), &hash(PW)).await,
    );
    ids.insert(
        "m2",
        insert_user(&db, "m2", "main_account", None, &hash(PW)).await,
    );
    let mut env = db.env();
    env.push(("EF__OZON_API_BASE_URL".into(), fake.base_url()));
    let srv = TestServer::start(&as_refs(&env)).await;
    let m1 = tokens(&srv, "m1", PW).await.0;
    let s1 = tokens(&srv, "s1", PW).await.0;
    let m2 = tokens(&srv, "m2", PW).await.0;
    let root = tokens(&srv, "root", PW).await.0;
    World {
        db,
        srv,
        fake,
        m1,
        s1,
        m2,
        root,
        ids,
    }
}

fn shop_body(w: &World, shop: usize, name: &str) -> Value {
    let c = w.fake.handle().credentials(shop);
    json!({
        "shop_name": name,
        "shop_name_cn": format!("{name}店"),
        "client_id": c.client_id,
        "api_key": c.api_key.expose(),
        "platform": "ozon",
        "config": {},
    })
}

async fn add(w: &World, token: &str, shop: usize, name: &str) -> (u16, Value) {
    call(
        &w.srv,
        Method::POST,
        "/ozon/shops",
        token,
        Some(shop_body(w, shop, name)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_shop_links_its_people_and_keeps_only_ciphertext() {
    let w = world().await;
    let (status, shop) = add(&w, &w.m1, 0, "Moscow").await;
    assert_eq!(status, 200, "{shop}");
    let id = shop["id"].as_i64().unwrap();
    assert_eq!(shop["api_credentials"]["api_key"], "******");
    assert_eq!(shop["display_name"], "Moscow店");
    assert_eq!(shop["status"], "active");

    // The creator, every admin — and not the other tenant — are linked.
    let linked: Vec<i64> =
        w.db.client()
            .await
            .query(
                "SELECT user_id FROM user_shops WHERE shop_id = $1 ORDER BY user_id",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    let mut expected = vec![w.ids["root"], w.ids["m1"]];
    expected.sort();
    assert_eq!(linked, expected);

    // /auth/me carries it at once, and the selector list shows it.
    let (_, me) = call(&w.srv, Method::GET, "/auth/me", &w.m1, None).await;
    assert_eq!(me["shop_ids"], json!([id]));
    // The admin linked to it sees it in its own /auth/me too (an empty or null list opens the
    // web app's 当前没有添加店铺 modal on every admin page).
    let (_, me) = call(&w.srv, Method::GET, "/auth/me", &w.root, None).await;
    assert_eq!(me["shop_ids"], json!([id]), "{me}");
    let (_, list) = call(&w.srv, Method::GET, "/ozon/shops", &w.m1, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["shop_name_cn"], "Moscow店");
    assert!(list["data"][0].get("api_credentials").is_none());
    let (_, none) = call(&w.srv, Method::GET, "/ozon/shops", &w.m2, None).await;
    assert_eq!(none["data"], json!([]));

    // The stored key is ciphertext, bound to its Client-Id; the plain key is nowhere in the table.
    let plain = w.fake.handle().credentials(0).api_key.expose().to_owned();
    let stored: String =
        w.db.client()
            .await
            .query_one("SELECT api_key_enc FROM ozon_shops WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
    assert!(stored.starts_with("ef1:"), "{stored}");
    assert!(!stored.contains(&plain));
    let dump: String =
        w.db.client()
            .await
            .query_one(
                "SELECT row_to_json(s)::text FROM ozon_shops s WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
    assert!(!dump.contains(&plain));

    // The management page: owner, can_edit, masked credentials; the connection test works.
    let (_, mgmt) = call(&w.srv, Method::GET, "/ozon/shops/management", &w.m1, None).await;
    assert_eq!(mgmt["data"][0]["can_edit"], true);
    assert_eq!(mgmt["data"][0]["owner_username"], "m1");
    assert_eq!(mgmt["data"][0]["api_credentials"]["api_key"], "******");
    let (status, t) = call(
        &w.srv,
        Method::POST,
        &format!("/ozon/shops/{id}/test-connection"),
        &w.m1,
        None,
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["success"], true, "{t}");
    assert!(
        t["details"]["test_info"]["products_count"]
            .as_i64()
            .unwrap()
            > 0,
        "{t}"
    );
    w.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_quotas_and_a_wrong_key() {
    let w = world().await;
    assert_eq!(add(&w, &w.m1, 0, "One").await.0, 200);
    let (status, body) = add(&w, &w.m1, 0, "One again").await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "SHOP_EXISTS"),
        "{body}"
    );
    let (status, body) = add(&w, &w.m2, 0, "Stolen").await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "SHOP_BINDIED"),
        "{body}"
    );
    let (status, body) = add(&w, &w.m1, 1, "One").await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "SHOP_NAME_EXISTS"),
        "{body}"
    );

    // The level allows 2 shops; the sub-account's shop counts against its main account, and its
    // main account sees it.
    let (status, sub_shop) = add(&w, &w.s1, 1, "Sub").await;
    assert_eq!(status, 200, "{sub_shop}");
    let (status, body) = add(&w, &w.m1, 2, "Three").await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "QUOTA_EXCEEDED"),
        "{body}"
    );
    let (_, list) = call(&w.srv, Method::GET, "/ozon/shops", &w.m1, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");

    // Ozon refuses a wrong key: the test says so (the original said "successful").
    let sub_id = sub_shop["id"].as_i64().unwrap();
    let (status, _) = call(
        &w.srv,
        Method::PUT,
        &format!("/ozon/shops/{sub_id}"),
        &w.s1,
        Some(json!({"api_credentials": {"api_key": "wrong-key-entirely"}})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, t) = call(
        &w.srv,
        Method::POST,
        &format!("/ozon/shops/{sub_id}/test-connection"),
        &w.s1,
        None,
    )
    .await;
    assert_eq!(t["success"], false, "{t}");
    assert_eq!(t["message"], "Authentication failed", "{t}");
    // Sending the mask back keeps the key; the right key makes the test pass again.
    let right = w.fake.handle().credentials(1).api_key.expose().to_owned();
    for key in ["******", right.as_str()] {
        let (status, _) = call(
            &w.srv,
            Method::PUT,
            &format!("/ozon/shops/{sub_id}"),
            &w.s1,
            Some(json!({"shop_name": "Sub", "api_credentials": {"api_key": key}, "config": {"webhook_url": ""}})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let (_, t) = call(
        &w.srv,
        Method::POST,
        &format!("/ozon/shops/{sub_id}/test-connection"),
        &w.m1,
        None,
    )
    .await;
    assert_eq!(t["success"], true, "{t}");
    w.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shop_route_refuses_another_tenant() {
    let w = world().await;
    let (_, shop) = add(&w, &w.m1, 0, "Mine").await;
    let id = shop["id"].as_i64().unwrap();
    let put = json!({"shop_name": "Hijacked", "api_credentials": {"api_key": "attacker-key"}});
    for (method, path, body) in [
        (Method::PUT, format!("/ozon/shops/{id}"), Some(put.clone())),
        (Method::DELETE, format!("/ozon/shops/{id}"), None),
        (
            Method::POST,
            format!("/ozon/shops/{id}/test-connection"),
            None,
        ),
    ] {
        let (status, b) = call(&w.srv, method.clone(), &path, &w.m2, body.clone()).await;
        assert_eq!(
            (status, code(&b).as_str()),
            (404, "SHOP_NOT_FOUND"),
            "{method} {path}: {b}"
        );
        // Linked-read users may look but not change.
        let (status, b) = call(&w.srv, method.clone(), &path, &w.s1, body).await;
        assert_eq!(status, 404, "s1 is not linked: {method} {path}: {b}");
    }
    // The admin may; the owner still has the shop untouched by the refused calls.
    let (_, mgmt) = call(&w.srv, Method::GET, "/ozon/shops/management", &w.root, None).await;
    assert_eq!(mgmt["data"][0]["shop_name"], "Mine");
    assert_eq!(mgmt["data"][0]["can_edit"], true);
    // Another tenant's sub-account cannot be given a shop: to m2 it does not exist (the same 404
    // as a missing id, so ids cannot be probed).
    let (status, b) = call(
        &w.srv,
        Method::PUT,
        &format!("/auth/users/{}", w.ids["s1"]),
        &w.m2,
        Some(json!({"shop_ids": [id]})),
    )
    .await;
    assert_eq!((status, code(&b).as_str()), (404, "USER_NOT_FOUND"), "{b}");
    // A sub-account linked by its main account reads it but cannot change it.
    let (status, b) = call(
        &w.srv,
        Method::PUT,
        &format!("/auth/users/{}", w.ids["s1"]),
        &w.m1,
        Some(json!({"shop_ids": [id]})),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let (_, list) = call(&w.srv, Method::GET, "/ozon/shops", &w.s1, None).await;
    assert_eq!(list["data"][0]["id"], id);
    let (status, b) = call(
        &w.srv,
        Method::DELETE,
        &format!("/ozon/shops/{id}"),
        &w.s1,
        None,
    )
    .await;
    assert_eq!((status, code(&b).as_str()), (403, "SHOP_READ_ONLY"), "{b}");
    // An unknown task is a terminal failure, never "not found" forever.
    let (status, t) = call(&w.srv, Method::GET, "/ozon/sync/status/999999", &w.m1, None).await;
    assert_eq!(status, 200);
    assert_eq!(t["data"]["status"], "failed", "{t}");
    let (_, t) = call(
        &w.srv,
        Method::GET,
        "/ozon/sync/status/not-a-task",
        &w.m1,
        None,
    )
    .await;
    assert_eq!(t["data"]["status"], "failed", "{t}");

    // The owner deletes it; its links go with it.
    let (status, _) = call(
        &w.srv,
        Method::DELETE,
        &format!("/ozon/shops/{id}"),
        &w.m1,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let links: i64 =
        w.db.client()
            .await
            .query_one("SELECT count(*) FROM user_shops WHERE shop_id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
    assert_eq!(links, 0);
    w.srv.stop().await;
}

/// Rotating the data key re-encrypts every stored Api-Key in one transaction, leaves only the new
/// key in the file, and a server started with the new key uses the shops as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_data_key_re_encrypts_every_stored_key() {
    let w = world().await;
    let (_, shop) = add(&w, &w.m1, 0, "Rotated").await;
    let id = shop["id"].as_i64().unwrap();
    let stored = |db: &TestDb| {
        let db_name = db.name.clone();
        async move {
            common::admin_client(&db_name)
                .await
                .query_one("SELECT api_key_enc FROM ozon_shops WHERE id = $1", &[&id])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let before = stored(&w.db).await;
    let key_file = w.srv.dir.path().join(".euraflow-dev/data_key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();

    let mut env = w.db.env();
    env.push(("EF__REDIS_PREFIX".into(), "test:rotate:".into()));
    let out = std::process::Command::new(common::BIN)
        .args(["--dev", "secrets", "rotate-data-key"])
        .current_dir(w.srv.dir.path())
        .env_clear()
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 stored credential(s) re-encrypted"));
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(new_key.trim(), old_key.trim());
    assert_eq!(
        new_key.split_whitespace().count(),
        1,
        "only the new key is left"
    );
    let after = stored(&w.db).await;
    assert_ne!(
        before.split(':').nth(1),
        after.split(':').nth(1),
        "sealed with another key"
    );
    w.srv.stop().await;

    // A server with only the new key still talks to Ozon for the shop.
    env.push(("EF__DATA_KEY".into(), new_key.trim().to_owned()));
    env.push(("EF__OZON_API_BASE_URL".into(), w.fake.base_url()));
    let srv = TestServer::start(&as_refs(&env)).await;
    let m1 = tokens(&srv, "m1", PW).await.0;
    let (_, t) = call(
        &srv,
        Method::POST,
        &format!("/ozon/shops/{id}/test-connection"),
        &m1,
        None,
    )
    .await;
    assert_eq!(t["success"], true, "{t}");
    srv.stop().await;
}
