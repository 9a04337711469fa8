-- Background jobs, the schedules that enqueue them, and what they recorded.
--
-- `jobs` is the durable queue (DESIGN.md: "Jobs live in PostgreSQL, not Redis"): workers claim
-- rows with FOR UPDATE SKIP LOCKED and hold a lease they renew while the job runs; a lease that
-- expires (worker killed) makes the job runnable again. Enqueueing inside a caller's transaction
-- commits or rolls back with it, and the wake-up NOTIFY is only delivered on commit.
CREATE TABLE jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_type         text NOT NULL CHECK (length(job_type) BETWEEN 1 AND 200),
    queue            text NOT NULL
        CHECK (queue IN ('ef_core', 'ef_pull', 'ef_push', 'ef_sync', 'default', 'ef_low')),
    priority         smallint NOT NULL DEFAULT 0,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    state            text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed_retrying', 'dead', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    run_after        timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    -- Taken for as long as the row exists: a second enqueue with the same key returns the first job.
    unique_key       text CHECK (length(unique_key) <= 300),
    -- The sync_services row this run belongs to (scheduled or triggered), for its run log.
    service_key      varchar(100),
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    result           jsonb
);

CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key) WHERE unique_key IS NOT NULL;
-- The claim query: per queue, highest priority first, then oldest.
CREATE INDEX jobs_ready ON jobs (queue, priority DESC, run_after, id)
    WHERE state IN ('queued', 'failed_retrying');
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('succeeded', 'dead', 'cancelled');
CREATE INDEX jobs_state_id ON jobs (state, id);
CREATE INDEX jobs_type_id ON jobs (job_type, id);
CREATE INDEX jobs_queue_id ON jobs (queue, id);

-- Wake idle workers when a job becomes runnable. NOTIFY is transactional: a rolled-back enqueue
-- wakes nobody, and identical notifications of one transaction are delivered once.
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ef_jobs', NEW.queue);
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state IN ('queued', 'failed_retrying') AND NEW.run_after <= now())
    EXECUTE FUNCTION jobs_notify();

-- Job metrics as monotonic counters, updated in the transaction that finishes a job, so the
-- server's metrics endpoint reports every worker process exactly (rows are sharded by worker slot
-- to keep concurrent finishes from queueing on one row).
CREATE TABLE job_metrics (
    job_type         text NOT NULL,
    shard            smallint NOT NULL,
    succeeded        bigint NOT NULL DEFAULT 0,
    failed           bigint NOT NULL DEFAULT 0,
    dead             bigint NOT NULL DEFAULT 0,
    duration_sum     double precision NOT NULL DEFAULT 0,
    duration_count   bigint NOT NULL DEFAULT 0,
    -- Per-bucket (not cumulative) counts of durations, buckets as in src/jobs/metrics.rs.
    duration_buckets bigint[] NOT NULL,
    PRIMARY KEY (job_type, shard)
);

-- Schedules, with the original's table and column names so an existing database can be imported.
-- `celery_task_name` names the job type that runs. `last_scheduled_at` and `next_run_at` are the
-- scheduler's own state.
CREATE TABLE sync_services (
    id                    serial PRIMARY KEY,
    service_key           varchar(100) NOT NULL UNIQUE,
    service_name          varchar(200),
    service_description   text,
    celery_task_name      varchar(200),
    plugin_name           varchar(100),
    source                varchar(20) DEFAULT 'code',
    is_deleted            boolean NOT NULL DEFAULT false,
    service_type          varchar(20) NOT NULL DEFAULT 'cron',
    schedule_config       varchar(200),
    is_enabled            boolean NOT NULL DEFAULT true,
    last_run_at           timestamptz,
    last_run_status       varchar(20),
    last_run_message      text,
    run_count             integer NOT NULL DEFAULT 0,
    success_count         integer NOT NULL DEFAULT 0,
    error_count           integer NOT NULL DEFAULT 0,
    avg_execution_time_ms integer,
    config_json           jsonb,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    last_scheduled_at     timestamptz,
    next_run_at           timestamptz
);

CREATE TABLE sync_service_logs (
    id                bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    service_key       varchar(100) NOT NULL,
    run_id            varchar(100),
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    status            varchar(20) NOT NULL,
    records_processed integer,
    records_updated   integer,
    execution_time_ms integer,
    error_message     text,
    error_stack       text,
    extra_data        jsonb
);

CREATE INDEX sync_service_logs_key_started ON sync_service_logs (service_key, started_at DESC);
CREATE INDEX sync_service_logs_run ON sync_service_logs (run_id);

-- What ef.core.system_health_check found, every five minutes.
CREATE TABLE system_health_checks (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    checked_at timestamptz NOT NULL DEFAULT now(),
    status     text NOT NULL,
    checks     jsonb NOT NULL,
    job_id     bigint
);

CREATE INDEX system_health_checks_checked_at ON system_health_checks (checked_at);
