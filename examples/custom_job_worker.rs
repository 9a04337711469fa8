//! `euraflow worker` with one more job type: how a program that links the library adds its own
//! jobs to the registry. The integration tests run it where a real process boundary is the
//! point (SIGKILL mid-job, SIGTERM drain), because the shipped binary's built-in jobs are not
//! slow on demand.
//!
//! `example.sleep` sleeps `ms` milliseconds and records each run (job, attempt, pid, start and
//! end) in the table `example_runs`, which the caller creates:
//!
//! ```sql
//! CREATE TABLE example_runs (job_id bigint, attempt int, pid int,
//!                            started_at timestamptz, finished_at timestamptz);
//! ```
//!
//! Run: `cargo run --example custom_job_worker` with the usual `EF__*` configuration.

// A development tool: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitCode;
use std::time::Duration;

use euraflow::jobs::{Job, JobContext, JobError, JobResult, RetryPolicy, builtin_registry};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Sleep {
    ms: u64,
}

impl Job for Sleep {
    const NAME: &'static str = "example.sleep";
    const DESCRIPTION: &'static str = "Sleep, recording each run in example_runs";

    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(2),
        }
    }

    async fn run(self, ctx: JobContext) -> JobResult {
        let client = ctx.db().get().await?;
        let pid = std::process::id() as i32;
        let attempt = ctx.attempt as i32;
        client
            .execute(
                "INSERT INTO example_runs (job_id, attempt, pid, started_at) VALUES ($1, $2, $3, clock_timestamp())",
                &[&ctx.job_id, &attempt, &pid],
            )
            .await?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(self.ms)) => {}
            _ = ctx.cancelled() => return Err(JobError::failed("asked to stop before the sleep ended")),
        }
        client
            .execute(
                "UPDATE example_runs SET finished_at = clock_timestamp()
                  WHERE job_id = $1 AND attempt = $2 AND pid = $3",
                &[&ctx.job_id, &attempt, &pid],
            )
            .await?;
        Ok(serde_json::json!({ "slept_ms": self.ms }))
    }
}

fn main() -> ExitCode {
    let mut registry = builtin_registry();
    registry.register::<Sleep>();
    let dev = std::env::args().any(|a| a == "--dev");
    euraflow::cli::run_worker(dev, None, registry)
}
