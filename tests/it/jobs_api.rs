//! `/sync-services` and `/jobs` over HTTPS with real roles: reads for any logged-in user, changes
//! for admins only, and the queue behind them.

use crate::common::{TestDb, TestServer, as_refs, call, code, hash, insert_user, tokens};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_services_and_jobs_through_the_api() {
    let db = TestDb::migrated().await;
    insert_user(&db, "admin", "admin", None, &hash("admin-password")).await;
    insert_user(&db, "owner", "main_account", None, &hash("owner-password")).await;
    let id: i32 = db
        .client()
        .await
        .query_one(
            "INSERT INTO sync_services (service_key, service_name, celery_task_name, service_type, schedule_config, is_enabled, config_json)
             VALUES ('ef.core.cleanup', 'cleanup', 'ef.core.cleanup', 'cron', '0 3 * * *', true, '{}') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let srv = TestServer::start(&as_refs(&db.env())).await;
    let (admin, _) = tokens(&srv, "admin", "admin-password").await;
    let (owner, _) = tokens(&srv, "owner", "owner-password").await;

    let (status, handlers) = call(&srv, Method::GET, "/sync-services/handlers", &owner, None).await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = handlers
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["service_key"].as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"ef.core.cleanup") && keys.contains(&"ef.system.database_backup"),
        "{keys:?}"
    );
    let (status, list) = call(&srv, Method::GET, "/sync-services", &owner, None).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["service_key"], "ef.core.cleanup");
    assert_eq!(list[0]["schedule_config"], "0 3 * * *");

    // Only admins change or trigger global jobs (the original let any sub-account).
    let path = format!("/sync-services/{id}");
    let (status, body) = call(
        &srv,
        Method::PUT,
        &path,
        &owner,
        Some(json!({"schedule_config": "*/5 * * * *"})),
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (403, "INSUFFICIENT_PERMISSIONS")
    );
    assert_eq!(
        call(&srv, Method::POST, &format!("{path}/trigger"), &owner, None)
            .await
            .0,
        403
    );
    let (status, body) = call(
        &srv,
        Method::PUT,
        &path,
        &admin,
        Some(json!({"schedule_config": "61 * * * *"})),
    )
    .await;
    assert_eq!(status, 422, "an invalid cron expression is refused: {body}");
    let (status, updated) = call(
        &srv,
        Method::PUT,
        &path,
        &admin,
        Some(json!({"schedule_config": "*/5 * * * *", "is_enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["schedule_config"], "*/5 * * * *");
    assert!(
        updated["next_run_at"].is_string(),
        "the scheduler's next tick is computed: {updated}"
    );

    let (status, trig) = call(&srv, Method::POST, &format!("{path}/trigger"), &admin, None).await;
    assert_eq!(status, 200, "{trig}");
    let job_id = trig["job_id"].as_i64().unwrap();
    assert_eq!(trig["task_id"], job_id.to_string());
    let (status, job) = call(&srv, Method::GET, &format!("/jobs/{job_id}"), &admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(job["data"]["job_type"], "ef.core.cleanup");
    assert_eq!(job["data"]["state"], "queued");
    assert_eq!(job["data"]["service_key"], "ef.core.cleanup");
    assert_eq!(
        call(&srv, Method::GET, "/jobs", &owner, None).await.0,
        403,
        "the queue is for admins"
    );

    // Cancel a queued job; only dead jobs can be retried.
    let (status, cancelled) = call(
        &srv,
        Method::POST,
        &format!("/jobs/{job_id}/cancel"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["data"]["state"], "cancelled");
    assert_eq!(
        call(
            &srv,
            Method::POST,
            &format!("/jobs/{job_id}/cancel"),
            &admin,
            None
        )
        .await
        .0,
        409
    );
    assert_eq!(
        call(
            &srv,
            Method::POST,
            &format!("/jobs/{job_id}/retry"),
            &admin,
            None
        )
        .await
        .0,
        409
    );
    let dead: i64 = db
        .client()
        .await
        .query_one(
            "INSERT INTO jobs (job_type, queue, max_attempts, attempts, payload, state, last_error)
             VALUES ('ef.core.cleanup', 'ef_core', 3, 3, '{}', 'dead', 'boom') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (status, revived) = call(
        &srv,
        Method::POST,
        &format!("/jobs/{dead}/retry"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{revived}");
    assert_eq!(revived["data"]["state"], "queued");

    // Paging by cursor.
    let (status, page) = call(&srv, Method::GET, "/jobs?limit=1", &admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(page["data"]["items"].as_array().unwrap().len(), 1);
    let cursor = page["data"]["next_cursor"].as_str().unwrap().to_owned();
    let (_, next) = call(
        &srv,
        Method::GET,
        &format!("/jobs?limit=1&cursor={cursor}"),
        &admin,
        None,
    )
    .await;
    assert_ne!(
        next["data"]["items"][0]["id"],
        page["data"]["items"][0]["id"]
    );
    let (status, _) = call(&srv, Method::GET, "/jobs?state=exploded", &admin, None).await;
    assert_eq!(status, 422);

    // Stats, logs, and the audit trail of the changes.
    assert_eq!(
        call(&srv, Method::GET, &format!("{path}/stats"), &owner, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&srv, Method::GET, &format!("{path}/logs"), &owner, None)
            .await
            .0,
        200
    );
    let (status, reset) = call(
        &srv,
        Method::POST,
        &format!("{path}/reset-stats"),
        &admin,
        None,
    )
    .await;
    assert_eq!((status, reset["ok"].clone()), (200, json!(true)));
    let (status, deleted) = call(&srv, Method::DELETE, &format!("{path}/logs"), &admin, None).await;
    assert_eq!(status, 200, "{deleted}");
    let (_, audit) = call(
        &srv,
        Method::GET,
        "/audit/logs?module=sync_service",
        &admin,
        None,
    )
    .await;
    let actions: Vec<&str> = audit["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    for a in ["update", "trigger", "reset_stats", "delete_logs"] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    assert_eq!(
        call(
            &srv,
            Method::PUT,
            "/sync-services/99999",
            &admin,
            Some(json!({}))
        )
        .await
        .0,
        404
    );
    srv.stop().await;
}
