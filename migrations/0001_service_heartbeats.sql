-- Heartbeats of running euraflow processes (servers and workers), visible to every server:
-- health reports the worker from here, `euraflow status` lists who is running.
CREATE TABLE service_heartbeats (
    instance_id   text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('server', 'worker')),
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    version       text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    details       jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX service_heartbeats_kind_seen ON service_heartbeats (kind, last_seen_at DESC);
