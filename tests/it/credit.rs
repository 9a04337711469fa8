//! The credit ledger through the real server and real PostgreSQL: the balance every role gets
//! (a sub-account's and a shipper's is the main account's), admin-only recharges that a retry
//! does not repeat, 100 concurrent consumes that never overdraw and never lose a movement,
//! refunds bounded by what was charged, the history's paging and filters inside its tenant,
//! prices, the threshold and the mute — and money as decimal strings throughout.

use std::collections::HashMap;
use std::str::FromStr;

use crate::common::{TestDb, TestServer, as_refs, call, code, hash, insert_user, tokens};
use euraflow::auth::Actor;
use euraflow::credit::{self, Charge, ChargeError, Refund};
use euraflow::domain::{DomainError, Work};
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const PW: &str = "credit-test-password";

struct World {
    db: TestDb,
    srv: TestServer,
    ids: HashMap<&'static str, i64>,
    tok: HashMap<&'static str, String>,
}

/// Admin `root`; main account `m1` with sub-account `s1` and shipper `p1`; main account `m2`.
async fn world() -> World {
    let db = TestDb::migrated().await;
    let mut ids = HashMap::new();
    ids.insert(
        "root",
        insert_user(&db, "root", "admin", None, &hash(PW)).await,
    );
    let m1 = insert_user(&db, "m1", "main_account", None, &hash(PW)).await;
    ids.insert("m1", m1);
    ids.insert(
        "s1",
        insert_user(&db, "s1", "sub_account", Some(m1), &hash(PW)).await,
    );
    ids.insert(
        "p1",
        insert_user(&db, "p1", "shipper", Some(m1), &hash(PW)).await,
    );
    ids.insert(
        "m2",
        insert_user(&db, "m2", "main_account", None, &hash(PW)).await,
    );
    let mut env = db.env();
    // 100 tasks at once share 20 connections: every consume is in flight together, the
    // database sees 20 at a time, and the tests stay within PostgreSQL's connection limit.
    env.push(("EF__DB_POOL_SIZE".into(), "20".into()));
    env.push(("EF__DB_MAX_OVERFLOW".into(), "0".into()));
    let srv = TestServer::start(&as_refs(&env)).await;
    let mut tok = HashMap::new();
    for name in ["root", "m1", "s1", "p1", "m2"] {
        tok.insert(name, tokens(&srv, name, PW).await.0);
    }
    World { db, srv, ids, tok }
}

impl World {
    async fn call(&self, who: &str, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        call(&self.srv, m, path, &self.tok[who], body).await
    }

    async fn get(&self, who: &str, path: &str) -> Value {
        let (s, b) = self.call(who, Method::GET, path, None).await;
        assert_eq!(s, 200, "{who} GET {path}: {b}");
        b
    }

    async fn recharge(&self, user: &str, amount: &str) -> Value {
        let (s, b) = self
            .call(
                "root",
                Method::POST,
                "/admin/credit/recharge",
                Some(json!({"user_id": self.ids[user], "amount": amount})),
            )
            .await;
        assert_eq!(s, 200, "recharge {user}: {b}");
        b
    }

    /// One consume in its own transaction, as a feature would make it.
    async fn consume(
        &self,
        user: &str,
        units: u32,
        key: Option<&str>,
    ) -> Result<credit::Consumed, ChargeError> {
        let mut client = self.srv.state().db().get().await.expect("a connection");
        let mut work = Work::begin(&mut client).await.expect("begin");
        let charge = Charge {
            user_id: self.ids[user],
            module: "print_label".into(),
            units,
            idempotency_key: key.map(str::to_owned),
            details: json!({"posting_numbers": ["1234-0001-1"]}),
            notes: None,
        };
        let done = credit::consume(&mut work, &Actor::system("test"), &charge).await?;
        let _ = work.commit().await.expect("commit");
        Ok(done)
    }

    async fn refund(
        &self,
        consume_id: i64,
        amount: Option<&str>,
    ) -> Result<credit::Refunded, DomainError> {
        let mut client = self.srv.state().db().get().await.expect("a connection");
        let mut work = Work::begin(&mut client).await.expect("begin");
        let r = Refund {
            consume_id,
            amount: amount.map(|a| Decimal::from_str(a).unwrap()),
            idempotency_key: None,
            notes: Some("label failed".into()),
        };
        let done = credit::refund(&mut work, &Actor::system("test"), &r).await?;
        let _ = work.commit().await.expect("commit");
        Ok(done)
    }

    async fn balance_of(&self, who: &str) -> String {
        self.get(who, "/credit/balance").await["balance"]
            .as_str()
            .expect("balance is a string")
            .to_owned()
    }
}

#[tokio::test]
async fn every_role_gets_a_balance_and_sub_accounts_and_shippers_see_their_main_accounts() {
    let w = world().await;
    for who in ["root", "m1", "s1", "p1", "m2"] {
        let b = w.get(who, "/credit/balance").await;
        assert_eq!(b["balance"], "0.0000", "{who}: {b}");
        assert_eq!(b["total_recharged"], "0.0000");
        assert_eq!(b["total_consumed"], "0.0000");
        assert_eq!(b["low_balance_threshold"], "100.0000");
        assert_eq!(b["is_low_balance"], true);
        assert_eq!(b["low_balance_alert_muted"], false);
        assert_eq!(b["credit_name"], "积分");
        let owner = if matches!(who, "s1" | "p1") {
            "m1"
        } else {
            who
        };
        assert_eq!(b["account_user_id"], w.ids[owner], "{who}");
        assert_eq!(b["account_username"], owner);
    }
    // Reading never creates accounts.
    let n: i64 =
        w.db.client()
            .await
            .query_one("SELECT count(*) FROM credit_accounts", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 0);

    w.recharge("m1", "250.5").await;
    for who in ["m1", "s1", "p1"] {
        let b = w.get(who, "/credit/balance").await;
        assert_eq!(b["balance"], "250.5000", "{who}");
        assert_eq!(b["is_low_balance"], false);
    }
    assert_eq!(w.balance_of("m2").await, "0.0000");
    // The shipper pays from the main account (the original's shippers spent their own).
    w.consume("p1", 2, None).await.unwrap();
    assert_eq!(w.balance_of("m1").await, "248.5000");
    let b = w.get("s1", "/credit/balance").await;
    assert_eq!(b["total_consumed"], "2.0000");
}

#[tokio::test]
async fn recharges_are_admin_only_exact_and_a_retry_with_its_key_recharges_once() {
    let w = world().await;
    let body = json!({"user_id": w.ids["m1"], "amount": "10"});
    for who in ["m1", "s1", "p1"] {
        let (s, b) = w
            .call(
                who,
                Method::POST,
                "/admin/credit/recharge",
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, 403, "{who}: {b}");
        for path in [
            "/admin/credit/accounts",
            "/admin/credit/recharge-records",
            "/admin/credit/module-configs",
        ] {
            let (s, _) = w.call(who, Method::GET, path, None).await;
            assert_eq!(s, 403, "{who} {path}");
        }
        let (s, _) = w
            .call(
                who,
                Method::PUT,
                &format!("/admin/credit/accounts/{}/threshold", w.ids["m1"]),
                Some(json!({"threshold": "1"})),
            )
            .await;
        assert_eq!(s, 403);
    }
    assert_eq!(w.balance_of("m1").await, "0.0000");

    // The same key, sequentially and then ten at once: one recharge.
    let send =
        |key: &'static str| {
            let req = w
            .srv
            .client()
            .post(w.srv.https_url("/api/ef/v1/admin/credit/recharge"))
            .bearer_auth(&w.tok["root"])
            .header("Idempotency-Key", key)
            .json(&json!({"user_id": w.ids["m1"], "amount": "100.1234", "payment_method": "wechat",
                          "payment_amount_cny": "100.12", "notes": "first"}));
            async move {
                let r = req.send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
    // Ten at once: they take turns on the account, and the nine after the first find it.
    let at_once = futures_util::future::join_all((0..10).map(|_| send("order-1"))).await;
    let (s, first) = at_once[0].clone();
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["amount"], "100.1234");
    assert_eq!(first["balance_before"], "0.0000");
    assert_eq!(first["balance_after"], "100.1234");
    let (s, retry) = send("order-1").await;
    assert_eq!(s, 200);
    for (s, b) in at_once.iter().chain([&(s, retry)]) {
        assert_eq!(*s, 200, "{b}");
        assert_eq!(b["transaction_id"], first["transaction_id"]);
        assert_eq!(b["balance_after"], "100.1234");
    }
    assert_eq!(w.balance_of("m1").await, "100.1234");
    let (s, _) = send("order-2").await;
    assert_eq!(s, 200);
    assert_eq!(w.balance_of("m1").await, "200.2468");
    // A key used for another amount is a mistake, not a replay.
    let (s, b) = w
        .call(
            "root",
            Method::POST,
            "/admin/credit/recharge",
            Some(json!({"user_id": w.ids["m1"], "amount": "5", "idempotency_key": "order-1"})),
        )
        .await;
    // The body key is scoped like the header: "order-1" was used with 100.1234.
    assert_eq!(
        (s, code(&b).as_str()),
        (409, "IDEMPOTENCY_KEY_REUSED"),
        "{b}"
    );

    // A wechat order number recharges once even without a key.
    let paid = json!({"user_id": w.ids["m2"], "amount": "30", "payment_method": "alipay",
                      "payment_order_no": "ALI-2026-0001"});
    let (_, a) = w
        .call(
            "root",
            Method::POST,
            "/admin/credit/recharge",
            Some(paid.clone()),
        )
        .await;
    let (_, b) = w
        .call("root", Method::POST, "/admin/credit/recharge", Some(paid))
        .await;
    assert_eq!(a["transaction_id"], b["transaction_id"]);
    assert_eq!(w.balance_of("m2").await, "30.0000");

    // A sub-account or shipper is recharged through its main account.
    for who in ["s1", "p1"] {
        let (s, b) = w
            .call(
                "root",
                Method::POST,
                "/admin/credit/recharge",
                Some(json!({"user_id": w.ids[who], "amount": "1"})),
            )
            .await;
        assert_eq!(
            (s, code(&b).as_str()),
            (400, "RECHARGE_MAIN_ACCOUNT"),
            "{b}"
        );
        assert!(b.to_string().contains("m1"), "{b}");
    }
    // Amounts are exact decimals: refused, not rounded.
    for bad in ["0", "-5", "1.00001", "abc", "1e3", "20000000000"] {
        let (s, b) = w
            .call(
                "root",
                Method::POST,
                "/admin/credit/recharge",
                Some(json!({"user_id": w.ids["m1"], "amount": bad})),
            )
            .await;
        assert_eq!(s, 422, "{bad}: {b}");
        assert!(
            !b.to_string().contains(bad) || bad == "0",
            "{bad} echoed: {b}"
        );
    }
    let (s, b) = w
        .call(
            "root",
            Method::POST,
            "/admin/credit/recharge",
            Some(json!({"user_id": w.ids["m1"], "amount": "1", "payment_method": "cash"})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    let (s, _) = w
        .call(
            "root",
            Method::POST,
            "/admin/credit/recharge",
            Some(json!({"user_id": 999_999, "amount": "1"})),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(w.balance_of("m1").await, "200.2468");

    // The records say who approved each recharge; the audit log has them too.
    let r = w
        .get(
            "root",
            &format!("/admin/credit/recharge-records?user_id={}", w.ids["m1"]),
        )
        .await;
    assert_eq!(r["total"], 2, "{r}");
    let item = &r["items"][1];
    assert_eq!(item["username"], "m1");
    assert_eq!(item["approved_by"], w.ids["root"]);
    assert_eq!(item["approved_by_username"], "root");
    assert_eq!(item["payment_method"], "wechat");
    assert_eq!(item["payment_amount_cny"], "100.12");
    assert_eq!(item["notes"], "first");
    let audited: i64 =
        w.db.client()
            .await
            .query_one(
                "SELECT count(*) FROM audit_logs WHERE module = 'credit' AND action = 'recharge'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(audited, 3);
}

#[tokio::test]
async fn a_hundred_concurrent_consumes_never_overdraw_and_never_lose_a_movement() {
    let w = world().await;
    w.recharge("m1", "60.5").await;
    // m1, its sub-account and its shipper all spend the same balance at once.
    let tasks = (0..100).map(|i| {
        let who = ["m1", "s1", "p1"][i % 3];
        w.consume(who, 1, None)
    });
    let started = std::time::Instant::now();
    let results = futures_util::future::join_all(tasks).await;
    // A figure, not a limit: how long the hundred took, taking turns on one row.
    eprintln!(
        "100 concurrent consumes on one account over 20 connections: {:?}",
        started.elapsed()
    );
    let mut ok = 0;
    let mut short = 0;
    for r in results {
        match r {
            Ok(c) => {
                assert!(c.transaction_id.is_some());
                ok += 1;
            }
            Err(ChargeError::Insufficient(s)) => {
                assert_eq!(s.required, Decimal::ONE);
                assert!(s.balance < Decimal::ONE, "refused with {} left", s.balance);
                short += 1;
            }
            Err(e) => panic!("consume failed: {e}"),
        }
    }
    assert_eq!((ok, short), (60, 40));
    let b = w.get("m1", "/credit/balance").await;
    assert_eq!(b["balance"], "0.5000");
    assert_eq!(b["total_consumed"], "60.0000");

    // Every movement is there, and each starts where the previous one ended.
    let rows = w
        .db
        .client()
        .await
        .query(
            "SELECT transaction_type, amount, balance_before, balance_after FROM credit_transactions ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 61);
    let mut last = Decimal::ZERO;
    for r in &rows {
        let (before, amount, after): (Decimal, Decimal, Decimal) = (r.get(2), r.get(1), r.get(3));
        assert_eq!(before, last);
        assert_eq!(after, before + amount);
        assert!(after >= Decimal::ZERO);
        last = after;
    }
    assert_eq!(last, Decimal::from_str("0.5").unwrap());
    let consumes = rows
        .iter()
        .filter(|r| r.get::<_, String>(0) == "consume")
        .count();
    assert_eq!(consumes, 60);

    // Idempotent consumes: a key far longer than the column, used 20 times at once, charges once.
    w.recharge("m2", "10").await;
    let key = format!(
        "print:{}",
        (0..40)
            .map(|i| format!("12345678-{i:04}-1"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(key.len() > 64);
    let same =
        futures_util::future::join_all((0..20).map(|_| w.consume("m2", 3, Some(&key)))).await;
    let first = same[0].as_ref().unwrap().transaction_id;
    for r in &same {
        assert_eq!(r.as_ref().unwrap().transaction_id, first);
    }
    assert_eq!(
        same.iter()
            .filter(|r| !r.as_ref().unwrap().replayed)
            .count(),
        1
    );
    assert_eq!(w.balance_of("m2").await, "7.0000");
    // The same key for another charge is refused, not replayed.
    match w.consume("m2", 2, Some(&key)).await {
        Err(ChargeError::Domain(e)) => assert_eq!(e.code(), "IDEMPOTENCY_KEY_REUSED"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn refunds_give_back_at_most_what_a_consume_cost() {
    let w = world().await;
    w.recharge("m1", "10").await;
    let c = w.consume("s1", 4, None).await.unwrap();
    let id = c.transaction_id.unwrap();
    assert_eq!(w.balance_of("m1").await, "6.0000");

    let r = w.refund(id, Some("1.5")).await.unwrap();
    assert_eq!(r.amount.to_string(), "1.5");
    assert_eq!(w.balance_of("m1").await, "7.5000");
    match w.refund(id, Some("3")).await {
        Err(e) => assert_eq!(e.code(), "REFUND_TOO_LARGE"),
        Ok(r) => panic!("refunded more than was charged: {r:?}"),
    }
    let rest = w.refund(id, None).await.unwrap();
    assert_eq!(rest.amount, Decimal::from_str("2.5").unwrap());
    match w.refund(id, None).await {
        Err(e) => assert_eq!(e.code(), "ALREADY_REFUNDED"),
        Ok(r) => panic!("refunded twice: {r:?}"),
    }
    // Only consumes are refunded.
    let recharge_id = w.get("root", "/admin/credit/recharge-records").await["items"][0]["id"]
        .as_i64()
        .unwrap();
    match w.refund(recharge_id, None).await {
        Err(e) => assert_eq!(e.code(), "NOT_A_CONSUME"),
        Ok(r) => panic!("{r:?}"),
    }
    let b = w.get("m1", "/credit/balance").await;
    assert_eq!(b["balance"], "10.0000");
    assert_eq!(b["total_consumed"], "0.0000");
    // The sub-account sees its consume and the refunds of it.
    let t = w
        .get("s1", "/credit/transactions?transaction_type=refund")
        .await;
    assert_eq!(t["total"], 2, "{t}");
    assert_eq!(t["items"][0]["amount"], "2.5000");
    assert_eq!(t["items"][0]["module"], "print_label");
    assert_eq!(t["items"][0]["details"]["refund_of"], id);
}

#[tokio::test]
async fn the_history_pages_filters_and_stays_inside_its_tenant() {
    let w = world().await;
    w.recharge("m1", "100").await;
    w.recharge("m2", "100").await;
    for _ in 0..3 {
        w.consume("m1", 1, None).await.unwrap();
    }
    for _ in 0..2 {
        w.consume("s1", 2, None).await.unwrap();
    }
    w.consume("m2", 5, None).await.unwrap();

    let all = w.get("m1", "/credit/transactions").await;
    assert_eq!(all["total"], 6, "{all}");
    assert_eq!(all["page"], 1);
    assert_eq!(all["page_size"], 20);
    let items = all["items"].as_array().unwrap();
    // Newest first; amounts signed; decimal strings; operators named.
    assert_eq!(items[0]["operator_username"], "s1");
    assert_eq!(items[0]["amount"], "-2.0000");
    assert_eq!(items[5]["transaction_type"], "recharge");
    assert_eq!(items[5]["amount"], "100.0000");
    assert_eq!(items[5]["balance_before"], "0.0000");
    assert_eq!(items[5]["operator_username"], "root");
    for it in items {
        for f in ["amount", "balance_before", "balance_after"] {
            assert!(it[f].is_string(), "{f}: {it}");
        }
        // Another tenant's movements never appear.
        assert_ne!(it["operator_username"], "m2");
    }

    let p = w.get("m1", "/credit/transactions?page=2&page_size=4").await;
    assert_eq!(
        (p["total"].as_i64(), p["items"].as_array().unwrap().len()),
        (Some(6), 2)
    );
    let c = w
        .get(
            "m1",
            "/credit/transactions?transaction_type=consume&module=print_label",
        )
        .await;
    assert_eq!(c["total"], 5);
    let r = w
        .get(
            "m1",
            "/credit/transactions?transaction_type=recharge&module=",
        )
        .await;
    assert_eq!(r["total"], 1);
    let today = chrono::Utc::now().date_naive();
    let t = w
        .get(
            "m1",
            &format!("/credit/transactions?start_date={today}&end_date={today}"),
        )
        .await;
    assert_eq!(t["total"], 6);
    let later = today.succ_opt().unwrap();
    let f = w
        .get("m1", &format!("/credit/transactions?start_date={later}"))
        .await;
    assert_eq!(f["total"], 0);

    // A sub-account sees its own movements only.
    let s = w.get("s1", "/credit/transactions").await;
    assert_eq!(s["total"], 2);
    // The other tenant sees its own account, nothing of m1's.
    let o = w.get("m2", "/credit/transactions").await;
    assert_eq!(o["total"], 2);
    assert_eq!(w.balance_of("m2").await, "95.0000");

    for bad in [
        "page=0",
        "page_size=101",
        "page_size=0",
        "transaction_type=gift",
        "start_date=2026-13-01",
        "end_date=yesterday",
    ] {
        let (s, b) = w
            .call(
                "m1",
                Method::GET,
                &format!("/credit/transactions?{bad}"),
                None,
            )
            .await;
        assert_eq!(s, 422, "{bad}: {b}");
    }

    // The history outlives its operators: deleting the sub-account that consumed works, and
    // its movements stay with an unknown operator.
    let (s, b) = w
        .call(
            "m1",
            Method::DELETE,
            &format!("/auth/users/{}", w.ids["s1"]),
            None,
        )
        .await;
    assert!(s == 200 || s == 204, "delete s1: {s} {b}");
    let after = w.get("m1", "/credit/transactions").await;
    assert_eq!(after["total"], 6);
    assert_eq!(after["items"][0]["operator_user_id"], 0);
    assert_eq!(after["items"][0]["operator_username"], "未知");
    assert_eq!(after["items"][0]["amount"], "-2.0000");
    assert_eq!(w.balance_of("m1").await, "93.0000");
}

#[tokio::test]
async fn prices_threshold_mute_and_the_admin_lists() {
    let w = world().await;
    let m = w.get("s1", "/credit/module-configs").await;
    assert_eq!(
        m["items"],
        json!([{"module_key": "print_label", "module_name": "打印快递面单", "cost_per_unit": "1.0000",
                "unit_description": "个面单", "is_enabled": true}])
    );
    let (s, _) = w
        .call(
            "m1",
            Method::PUT,
            "/admin/credit/module-configs/print_label",
            Some(json!({"cost_per_unit": "9"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = w
        .call(
            "root",
            Method::PUT,
            "/admin/credit/module-configs/print_label",
            Some(json!({"cost_per_unit": "2.5", "unit_description": "张"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["cost_per_unit"], "2.5000");
    assert_eq!(v["unit_description"], "张");
    assert_eq!(v["module_name"], "打印快递面单");
    assert!(v["id"].is_i64() && v["updated_at"].is_string());
    let (s, _) = w
        .call(
            "root",
            Method::PUT,
            "/admin/credit/module-configs/print_label",
            Some(json!({"cost_per_unit": "-1"})),
        )
        .await;
    assert_eq!(s, 422);
    let (s, _) = w
        .call(
            "root",
            Method::PUT,
            "/admin/credit/module-configs/nope",
            Some(json!({"is_enabled": false})),
        )
        .await;
    assert_eq!(s, 404);

    w.recharge("m1", "20").await;
    // The estimate uses the new price and the shared balance.
    let (s, e) = w
        .call(
            "s1",
            Method::POST,
            "/credit/calculate",
            Some(json!({"module": "print_label", "posting_numbers": ["a", "b", "c"]})),
        )
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["total_cost"], "7.5000");
    assert_eq!(e["unit_cost"], "2.5000");
    assert_eq!(e["billable_count"], 3);
    assert_eq!(e["current_balance"], "20.0000");
    assert_eq!(e["sufficient"], true);
    let c = w.consume("m1", 2, None).await.unwrap();
    assert_eq!(c.cost.to_string(), "5.0000");
    // A disabled module costs nothing and writes nothing.
    w.call(
        "root",
        Method::PUT,
        "/admin/credit/module-configs/print_label",
        Some(json!({"is_enabled": false})),
    )
    .await;
    let free = w.consume("m1", 2, None).await.unwrap();
    assert_eq!(free.transaction_id, None);
    assert_eq!(w.balance_of("m1").await, "15.0000");

    // Threshold (admins), then the sub-account mutes the shared alert until the next recharge.
    let (s, t) = w
        .call(
            "root",
            Method::PUT,
            &format!("/admin/credit/accounts/{}/threshold", w.ids["m1"]),
            Some(json!({"user_id": w.ids["m1"], "threshold": "50"})),
        )
        .await;
    assert_eq!((s, &t), (200, &json!({"ok": true, "threshold": "50.0000"})));
    let (s, _) = w
        .call(
            "root",
            Method::PUT,
            &format!("/admin/credit/accounts/{}/threshold", w.ids["s1"]),
            Some(json!({"threshold": "50"})),
        )
        .await;
    assert_eq!(s, 400);
    let b = w.get("m1", "/credit/balance").await;
    assert_eq!(b["low_balance_threshold"], "50.0000");
    assert_eq!(b["is_low_balance"], true);
    // The web app posts the mute without a body.
    let r = w
        .srv
        .client()
        .post(w.srv.https_url("/api/ef/v1/credit/mute-alert"))
        .bearer_auth(&w.tok["s1"])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"muted": true}));
    assert_eq!(
        w.get("m1", "/credit/balance").await["low_balance_alert_muted"],
        true
    );
    w.recharge("m1", "1").await;
    assert_eq!(
        w.get("m1", "/credit/balance").await["low_balance_alert_muted"],
        false
    );

    // The admin's account list: holders only (no sub-accounts or shippers of a main account),
    // accounts that never moved included, with their children counted.
    let a = w.get("root", "/admin/credit/accounts").await;
    let names: Vec<&str> = a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["username"].as_str().unwrap())
        .collect();
    assert_eq!(a["total"], 3, "{a}");
    assert_eq!(names, ["m2", "m1", "root"]);
    let m1 = &a["items"][1];
    assert_eq!(m1["balance"], "16.0000");
    assert_eq!(m1["total_recharged"], "21.0000");
    assert_eq!(m1["sub_accounts_count"], 2);
    assert_eq!(m1["low_balance_threshold"], "50.0000");
    assert_eq!(a["items"][0]["id"], 0);
    assert_eq!(a["items"][0]["balance"], "0.0000");
    let one = w
        .get("root", "/admin/credit/accounts?search=M1&role=main_account")
        .await;
    assert_eq!(one["total"], 1);
    let none = w.get("root", "/admin/credit/accounts?search=%25").await;
    assert_eq!(none["total"], 0, "a % in the search matches a %: {none}");
    let (s, _) = w
        .call(
            "root",
            Method::GET,
            "/admin/credit/accounts?role=boss",
            None,
        )
        .await;
    assert_eq!(s, 422);

    // Each change left its audit row, with who made it.
    let rows =
        w.db.client()
            .await
            .query(
                "SELECT action, username, count(*) FROM audit_logs WHERE module = 'credit'
              GROUP BY action, username ORDER BY action, username",
                &[],
            )
            .await
            .unwrap();
    let got: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want = [
        ("consume", "system:test", 1),
        ("mute_alert", "s1", 1),
        ("recharge", "root", 2),
        ("set_threshold", "root", 1),
        ("update_module_config", "root", 2),
    ];
    assert_eq!(
        got,
        want.map(|(a, u, n)| (a.to_owned(), u.to_owned(), n))
            .to_vec()
    );
}

/// `print_label` estimates leave out labels printed before, counting only the caller's own
/// postings: another tenant's printed posting is billed as a first print (and so reveals nothing),
/// a posting named twice is one label, and `exclude_reprints: false` bills every one.
#[tokio::test]
async fn print_estimates_free_reprints_of_the_callers_own_postings_only() {
    let w = world().await;
    crate::common::insert_shop(&w.db, 9101, w.ids["m1"]).await;
    crate::common::insert_shop(&w.db, 9102, w.ids["m2"]).await;
    let c = w.db.client().await;
    for (shop, number, printed) in [
        (9101i64, "1000-0001-1", 1i32),
        (9101, "1000-0002-1", 0),
        (9102, "2000-0001-1", 2),
    ] {
        c.execute(
            "INSERT INTO ozon_postings (shop_id, posting_number, status, label_print_count)
             VALUES ($1, $2, 'awaiting_deliver', $3)",
            &[&shop, &number, &printed],
        )
        .await
        .expect("insert a posting");
    }
    w.recharge("m1", "2").await;
    let estimate = |who: &'static str, body: Value| {
        let w = &w;
        async move {
            let (s, e) = w
                .call(who, Method::POST, "/credit/calculate", Some(body))
                .await;
            assert_eq!(s, 200, "{who}: {e}");
            (
                e["billable_count"].as_i64().unwrap(),
                e["reprint_count"].as_i64().unwrap(),
                e["total_cost"].as_str().unwrap().to_owned(),
                e["sufficient"].as_bool().unwrap(),
            )
        }
    };
    let batch = json!([
        "1000-0001-1",
        "1000-0002-1",
        "2000-0001-1",
        "1000-0001-1",
        "9999-0001-1"
    ]);
    assert_eq!(
        estimate(
            "m1",
            json!({"module": "print_label", "posting_numbers": batch})
        )
        .await,
        (3, 1, "3.0000".to_owned(), false),
        "4 distinct postings, one of m1's printed before; m2's printed one is billed"
    );
    assert_eq!(
        estimate(
            "m1",
            json!({"module": "print_label", "posting_numbers": batch, "exclude_reprints": false})
        )
        .await,
        (4, 0, "4.0000".to_owned(), false)
    );
    assert_eq!(
        estimate(
            "m2",
            json!({"module": "print_label", "posting_numbers": batch})
        )
        .await,
        (3, 1, "3.0000".to_owned(), false),
        "m2 sees only its own reprint"
    );
    assert_eq!(
        estimate(
            "root",
            json!({"module": "print_label", "posting_numbers": batch})
        )
        .await,
        (2, 2, "2.0000".to_owned(), false),
        "an admin sees every shop (and has no points of its own)"
    );
    // Other modules have no reprints: one unit per posting.
    let (s, e) = w
        .call(
            "root",
            Method::PUT,
            "/admin/credit/module-configs/print_label",
            Some(json!({"cost_per_unit": "0.5"})),
        )
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(
        estimate(
            "m1",
            json!({"module": "print_label", "posting_numbers": ["1000-0001-1"]})
        )
        .await,
        (0, 1, "0.0000".to_owned(), true),
        "a reprint alone costs nothing"
    );
    let long = "9".repeat(101);
    let (s, e) = w
        .call(
            "m1",
            Method::POST,
            "/credit/calculate",
            Some(json!({"module": "print_label", "posting_numbers": [long]})),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    let (s, e) = w
        .call(
            "m1",
            Method::POST,
            "/credit/calculate",
            Some(json!({"module": "print_label", "posting_numbers": ["  "]})),
        )
        .await;
    assert_eq!(s, 422, "{e}");
}
