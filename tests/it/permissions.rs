//! Permission management against the real server: the shapes the web app's 权限管理 page reads,
//! refusal for non-admins, and enforcement — the codes in a token gate the routes they name, and
//! a revoked grant stops working at once.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, as_refs, call, code, hash, insert_user, tokens};

const PW: &str = "permission-test-password";

fn claims(token: &str) -> Value {
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

async fn setup() -> (TestDb, TestServer) {
    let db = TestDb::migrated().await;
    insert_user(&db, "root", "admin", None, &hash(PW)).await;
    let m1 = insert_user(&db, "m1", "main_account", None, &hash(PW)).await;
    insert_user(&db, "s1", "sub_account", Some(m1), &hash(PW)).await;
    insert_user(&db, "ship", "shipper", Some(m1), &hash(PW)).await;
    let srv = TestServer::start(&as_refs(&db.env())).await;
    (db, srv)
}

async fn role_id(srv: &TestServer, admin: &str, name: &str) -> i64 {
    let (_, roles) = call(srv, Method::GET, "/permissions/roles", admin, None).await;
    roles
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["id"].as_i64())
        .unwrap_or_else(|| panic!("role {name} in {roles}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_permission_page_reads_its_shapes_and_only_admins_may() {
    let (_db, srv) = setup().await;
    let (admin, _) = tokens(&srv, "root", PW).await;

    let (status, roles) = call(&srv, Method::GET, "/permissions/roles", &admin, None).await;
    assert_eq!(status, 200, "{roles}");
    let names: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "admin",
            "main_account",
            "shipper",
            "sub_account",
            "extension"
        ]
    );
    for field in [
        "id",
        "name",
        "display_name",
        "description",
        "is_system",
        "is_active",
        "priority",
    ] {
        assert!(roles[0].get(field).is_some(), "{field} in {}", roles[0]);
    }
    // The operators read Chinese: every seeded role is described in Chinese (migration 0038).
    for role in roles.as_array().unwrap() {
        let text = role["description"].as_str().unwrap_or_default();
        assert!(
            text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "{role}"
        );
    }

    let (status, apis) = call(&srv, Method::GET, "/permissions/apis", &admin, None).await;
    assert_eq!(status, 200);
    let shops = apis
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "ozon.shops.list")
        .expect("ozon.shops.list is catalogued");
    assert_eq!(shops["http_method"], "GET");
    assert_eq!(shops["path_pattern"], "/api/ef/v1/ozon/shops");
    assert_eq!(shops["module"], "ozon");
    assert_eq!(shops["category"], "shops");
    for field in [
        "id",
        "name",
        "description",
        "is_public",
        "is_active",
        "sort_order",
    ] {
        assert!(shops.get(field).is_some(), "{field}");
    }
    let (_, only_ozon) = call(
        &srv,
        Method::GET,
        "/permissions/apis?module=ozon",
        &admin,
        None,
    )
    .await;
    assert!(
        only_ozon
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["module"] == "ozon")
    );

    let (status, modules) =
        call(&srv, Method::GET, "/permissions/apis/modules", &admin, None).await;
    assert_eq!(status, 200);
    assert!(
        modules["modules"]
            .as_array()
            .unwrap()
            .contains(&json!("ozon"))
    );

    let (status, tree) = call(&srv, Method::GET, "/permissions/apis/tree", &admin, None).await;
    assert_eq!(status, 200);
    let ozon = tree["tree"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "ozon")
        .expect("ozon module node");
    let shops_node = ozon["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "ozon.shops")
        .expect("category node");
    let leaf = shops_node["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == "ozon.shops.list")
        .expect("leaf");
    assert_eq!(leaf["is_leaf"], true);
    assert_eq!(leaf["method"], "GET");
    assert_eq!(leaf["path"], "/api/ef/v1/ozon/shops");

    // A custom role: create, duplicate, update, grants, delete.
    let (status, role) = call(
        &srv,
        Method::POST,
        "/permissions/roles",
        &admin,
        Some(json!({"name": "auditor", "display_name": "审计员", "priority": 30})),
    )
    .await;
    assert_eq!(status, 201, "{role}");
    assert_eq!(role["is_system"], false);
    let id = role["id"].as_i64().unwrap();
    let (status, b) = call(
        &srv,
        Method::POST,
        "/permissions/roles",
        &admin,
        Some(json!({"name": "auditor", "display_name": "again"})),
    )
    .await;
    assert_eq!(status, 409, "{b}");
    let (status, b) = call(
        &srv,
        Method::POST,
        "/permissions/roles",
        &admin,
        Some(json!({"name": "x", "display_name": "too short a name"})),
    )
    .await;
    assert_eq!(status, 422, "{b}");
    let (status, updated) = call(
        &srv,
        Method::PUT,
        &format!("/permissions/roles/{id}"),
        &admin,
        Some(json!({"description": "reads the log"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["description"], "reads the log");
    assert_eq!(updated["display_name"], "审计员");
    let (status, one) = call(
        &srv,
        Method::GET,
        &format!("/permissions/roles/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], "auditor");

    let path = format!("/permissions/roles/{id}/permissions");
    let (_, codes) = call(&srv, Method::GET, &path, &admin, None).await;
    assert_eq!(codes, json!({"permission_codes": []}));
    // The page sends the tree's module and category keys along with the leaves: ignored.
    let (status, set) = call(
        &srv,
        Method::PUT,
        &path,
        &admin,
        Some(json!({"permission_codes": ["audit", "audit.logs", "audit.logs.list", "audit.stats.list"]})),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["ok"], true);
    assert_eq!(set["count"], 2);
    let (_, codes) = call(&srv, Method::GET, &path, &admin, None).await;
    assert_eq!(
        codes["permission_codes"],
        json!(["audit.logs.list", "audit.stats.list"])
    );
    let (status, added) = call(
        &srv,
        Method::POST,
        &format!("{path}/system.info.list"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(added, json!({"ok": true, "message": "权限已添加"}));
    let (_, again) = call(
        &srv,
        Method::POST,
        &format!("{path}/system.info.list"),
        &admin,
        None,
    )
    .await;
    assert_eq!(again["message"], "权限已存在");
    let (status, _) = call(
        &srv,
        Method::POST,
        &format!("{path}/no.such.code"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, removed) = call(
        &srv,
        Method::DELETE,
        &format!("{path}/system.info.list"),
        &admin,
        None,
    )
    .await;
    assert_eq!(removed["ok"], true);
    let (_, absent) = call(
        &srv,
        Method::DELETE,
        &format!("{path}/system.info.list"),
        &admin,
        None,
    )
    .await;
    assert_eq!(absent["ok"], false);
    let (status, deleted) = call(
        &srv,
        Method::DELETE,
        &format!("/permissions/roles/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(deleted["ok"], true);
    let (status, _) = call(
        &srv,
        Method::GET,
        &format!("/permissions/roles/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // System roles stay; the admin role keeps permission management.
    let admin_role = role_id(&srv, &admin, "admin").await;
    let (status, b) = call(
        &srv,
        Method::DELETE,
        &format!("/permissions/roles/{admin_role}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 400, "{b}");
    assert_eq!(code(&b), "SYSTEM_ROLE");
    let (status, b) = call(
        &srv,
        Method::PUT,
        &format!("/permissions/roles/{admin_role}/permissions"),
        &admin,
        Some(json!({"permission_codes": []})),
    )
    .await;
    assert_eq!(status, 400, "{b}");
    assert_eq!(code(&b), "ADMIN_LOCKOUT");

    // API permissions: create, update, delete.
    let (status, p) = call(
        &srv,
        Method::POST,
        "/permissions/apis",
        &admin,
        Some(json!({"code": "reports.daily.list", "name": "日报", "module": "reports",
                    "category": "daily", "http_method": "GET", "path_pattern": "/api/ef/v1/reports/daily"})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let pid = p["id"].as_i64().unwrap();
    let (status, p) = call(
        &srv,
        Method::PUT,
        &format!("/permissions/apis/{pid}"),
        &admin,
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(p["is_active"], false);
    let (status, b) = call(
        &srv,
        Method::DELETE,
        &format!("/permissions/apis/{pid}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(b["ok"], true);
    let (status, scan) = call(&srv, Method::POST, "/permissions/scan", &admin, None).await;
    assert_eq!(status, 200);
    assert!(scan["total"].as_i64().unwrap() > 40, "{scan}");

    // Everyone else is refused, every route.
    for who in ["m1", "s1", "ship"] {
        let (t, _) = tokens(&srv, who, PW).await;
        for (method, path) in [
            (Method::GET, "/permissions/roles"),
            (Method::GET, "/permissions/apis/tree"),
            (Method::PUT, "/permissions/roles/1/permissions"),
            (Method::POST, "/permissions/roles"),
        ] {
            let body = (method != Method::GET)
                .then(|| json!({"permission_codes": [], "name": "zz", "display_name": "zz"}));
            let (status, b) = call(&srv, method.clone(), path, &t, body).await;
            assert_eq!(status, 403, "{who} {method} {path}: {b}");
        }
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_codes_in_a_token_gate_the_routes_they_name() {
    let (_db, srv) = setup().await;
    let (admin, _) = tokens(&srv, "root", PW).await;
    let main_role = role_id(&srv, &admin, "main_account").await;

    let (m1, _) = tokens(&srv, "m1", PW).await;
    let granted: Vec<Value> = claims(&m1)["permissions"].as_array().unwrap().clone();
    assert!(granted.contains(&json!("ozon.shops.list")), "{granted:?}");
    assert!(!granted.contains(&json!("permissions.roles.list")));
    let (status, _) = call(&srv, Method::GET, "/ozon/shops", &m1, None).await;
    assert_eq!(status, 200);
    // A shipper's token names only scan shipping among the shop routes.
    let (ship, _) = tokens(&srv, "ship", PW).await;
    let (status, b) = call(&srv, Method::GET, "/ozon/products", &ship, None).await;
    assert_eq!(status, 403, "{b}");
    assert_eq!(code(&b), "INSUFFICIENT_PERMISSIONS");
    assert!(
        b["error"]["detail"]["message"]
            .as_str()
            .unwrap()
            .contains("ozon.products.list"),
        "{b}"
    );

    // Revoking the grant stops the token that still names the code, at once.
    let grant = format!("/permissions/roles/{main_role}/permissions/ozon.shops.list");
    let (status, _) = call(&srv, Method::DELETE, &grant, &admin, None).await;
    assert_eq!(status, 200);
    let (status, b) = call(&srv, Method::GET, "/ozon/shops", &m1, None).await;
    assert_eq!(status, 403, "{b}");
    assert_eq!(code(&b), "INSUFFICIENT_PERMISSIONS");
    // Other routes of the role still work.
    let (status, _) = call(&srv, Method::GET, "/ozon/products", &m1, None).await;
    assert_eq!(status, 200);

    // A token minted without the code stays without it after the grant returns, until refreshed.
    let (m1_new, m1_refresh) = tokens(&srv, "m1", PW).await;
    assert!(
        !claims(&m1_new)["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("ozon.shops.list"))
    );
    let (status, _) = call(&srv, Method::POST, &grant, &admin, None).await;
    assert_eq!(status, 200);
    let (status, b) = call(&srv, Method::GET, "/ozon/shops", &m1_new, None).await;
    assert_eq!(status, 403, "{b}");
    let r = srv
        .client()
        .post(srv.https_url("/api/ef/v1/auth/refresh"))
        .json(&json!({"refresh_token": m1_refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let pair: Value = r.json().await.unwrap();
    let refreshed = pair["access_token"].as_str().unwrap();
    let (status, _) = call(&srv, Method::GET, "/ozon/shops", refreshed, None).await;
    assert_eq!(status, 200);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_is_judged_by_its_owners_role() {
    let (db, srv) = setup().await;
    let m1: i64 = db
        .client()
        .await
        .query_one("SELECT id FROM users WHERE username = 'm1'", &[])
        .await
        .unwrap()
        .get(0);
    crate::common::insert_shop(&db, 501, m1).await;
    db.client()
        .await
        .execute(
            "INSERT INTO user_shops (user_id, shop_id) VALUES ($1, 501)",
            &[&m1],
        )
        .await
        .unwrap();
    let (admin, _) = tokens(&srv, "root", PW).await;
    let (owner, _) = tokens(&srv, "m1", PW).await;
    let (status, created) = call(
        &srv,
        Method::POST,
        "/api-keys/",
        &owner,
        Some(json!({"name": "script"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let with_key = |path: &'static str| {
        let (srv, key) = (&srv, key.clone());
        async move {
            let r = srv
                .client()
                .get(srv.https_url(&format!("/api/ef/v1{path}")))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or_default())
        }
    };
    let (status, b) = with_key("/ozon/shops").await;
    assert_eq!(status, 200, "{b}");
    let main_role = role_id(&srv, &admin, "main_account").await;
    let (status, _) = call(
        &srv,
        Method::DELETE,
        &format!("/permissions/roles/{main_role}/permissions/ozon.shops.list"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, b) = with_key("/ozon/shops").await;
    assert_eq!(status, 403, "{b}");
    assert_eq!(code(&b), "INSUFFICIENT_PERMISSIONS");
    let (status, _) = with_key("/ozon/products").await;
    assert_eq!(status, 200);
    srv.stop().await;
}
