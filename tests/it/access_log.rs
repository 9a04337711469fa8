//! The access log never holds up a request: a server whose log nobody reads (a stuck journald,
//! a stderr pipe whose reader hangs) keeps answering, and once the log is read again every line
//! is there. Before the access log had its own writer thread, the server stopped answering as
//! soon as the pipe's 64 KiB were full (a few hundred requests).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BIN, TestDb, production_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_nobody_reads_does_not_stop_the_server_and_loses_no_line() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = production_env(dir.path());
    env.extend(db.env());
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EF__LOG_FORMAT", "json")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap());
    // Read up to "listening" (it names the ports), then stop reading.
    let mut http = None;
    let mut line = String::new();
    while http.is_none() {
        line.clear();
        assert!(log.read_line(&mut line).unwrap() > 0, "exited early");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["message"] == "listening"
        {
            http = v["http"].as_str().map(str::to_owned);
        }
    }
    let base = format!("http://{}", http.unwrap());

    // 3 000 requests, each an access line of ~400 bytes: ~18 times what the pipe holds.
    const REQUESTS: usize = 3000;
    let started = Instant::now();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..REQUESTS / 6 {
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    client.get(format!("{base}/healthz?n={t}-{i}")).send(),
                )
                .await
                .expect("the server stopped answering while its log was not read")
                .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = started.elapsed();
    println!("{REQUESTS} requests with an unread log took {took:?}");

    // Read again: every access line arrives, and none was dropped.
    let reader = std::thread::spawn(move || {
        let mut access = 0;
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while access < REQUESTS && Instant::now() < deadline {
            line.clear();
            if log.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if line.contains(r#""target":"euraflow::access""#) && line.contains("/healthz") {
                access += 1;
            }
        }
        access
    });
    let access = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        access, REQUESTS,
        "every request's access line is in the log"
    );
    let metrics = client
        .get(format!("{base}/api/ef/v1/system/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("\nef_log_lines_dropped_total 0\n"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("dropped"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let _ = child.kill();
    let _ = child.wait();
}
