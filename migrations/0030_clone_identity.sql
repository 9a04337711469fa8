-- Clone identity (an admin acting as a main account for a limited time). A clone is a login
-- session of the impersonated user that records who opened it: the ordinary session machinery
-- (revocation, refresh rotation, expiry) then applies to it unchanged, and its deadline is the
-- session's expires_at, which no refresh extends.
ALTER TABLE user_login_sessions
    -- new: the admin acting through this session; NULL for ordinary sessions
    ADD COLUMN cloned_by bigint REFERENCES users (id) ON DELETE CASCADE,
    -- new: the clone's public id (clone_session_id in tokens and /auth/clone/status)
    ADD COLUMN clone_id uuid UNIQUE,
    -- new: the admin's own session the clone was opened from; /auth/clone/restore returns to it
    ADD COLUMN clone_origin_session varchar(64);
CREATE INDEX ix_user_login_sessions_cloned_by ON user_login_sessions (cloned_by) WHERE cloned_by IS NOT NULL;

-- Every audited action records both identities while a clone acts: user_id/username are the
-- impersonated account, original_* the admin behind it.
ALTER TABLE audit_logs
    ADD COLUMN original_user_id integer,
    ADD COLUMN original_username varchar(100);
ALTER TABLE audit_logs_archive
    ADD COLUMN original_user_id integer,
    ADD COLUMN original_username varchar(100);
