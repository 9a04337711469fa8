-- Identity and access, with the original EuraFlow column names and meanings so an existing
-- database can be imported (users, user_settings, user_login_sessions, account_levels, api_keys,
-- audit_logs, audit_logs_archive). Columns added by this appliance are marked "new".

CREATE TABLE account_levels (
    id                      bigserial PRIMARY KEY,
    name                    varchar(50) NOT NULL UNIQUE,
    alias                   varchar(50),
    max_sub_accounts        integer NOT NULL DEFAULT 5 CHECK (max_sub_accounts >= 0),
    max_shops               integer NOT NULL DEFAULT 10 CHECK (max_shops >= 0),
    default_expiration_days integer NOT NULL DEFAULT 30 CHECK (default_expiration_days >= 0),
    extra_config            jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_default              boolean NOT NULL DEFAULT false,
    sort_order              integer NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
-- At most one default level.
CREATE UNIQUE INDEX account_levels_one_default ON account_levels (is_default) WHERE is_default;

INSERT INTO account_levels (name, alias, max_sub_accounts, max_shops, default_expiration_days, is_default, sort_order)
VALUES ('standard', '标准管理员', 10, 20, 30, true, 0);

CREATE TABLE users (
    id                      bigserial PRIMARY KEY,
    username                varchar(50) NOT NULL UNIQUE,
    phone                   varchar(20),
    username_changed        boolean NOT NULL DEFAULT false,
    password_hash           varchar(255) NOT NULL,
    is_active               boolean NOT NULL DEFAULT true,
    role                    varchar(50) NOT NULL DEFAULT 'sub_account'
                            CHECK (role IN ('admin', 'main_account', 'sub_account', 'shipper')),
    permissions             jsonb NOT NULL DEFAULT '[]'::jsonb,
    account_level_id        bigint REFERENCES account_levels (id) ON DELETE SET NULL,
    account_status          varchar(20) NOT NULL DEFAULT 'active'
                            CHECK (account_status IN ('active', 'suspended', 'disabled')),
    expires_at              timestamptz,
    parent_user_id          bigint REFERENCES users (id) ON DELETE CASCADE,
    current_session_token   varchar(64),
    ozon_session_enc        varchar,
    ozon_session_updated_at timestamptz,
    primary_shop_id         bigint,
    last_login_at           timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ix_users_phone ON users (phone) WHERE phone IS NOT NULL;
CREATE INDEX ix_users_role ON users (role);
CREATE INDEX ix_users_is_active ON users (is_active);
CREATE INDEX ix_users_parent ON users (parent_user_id);

-- Which shops a user may see (the original's association with ozon_shops; the shop table comes
-- with the marketplace features, so no foreign key on shop_id yet).
CREATE TABLE user_shops (
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    shop_id    bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, shop_id)
);

CREATE TABLE user_settings (
    id                         bigserial PRIMARY KEY,
    user_id                    bigint NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    notifications_email        boolean NOT NULL DEFAULT true,
    notifications_browser      boolean NOT NULL DEFAULT true,
    notifications_order_updates boolean NOT NULL DEFAULT true,
    notifications_price_alerts boolean NOT NULL DEFAULT true,
    notifications_inventory_alerts boolean NOT NULL DEFAULT true,
    display_language           varchar(10) NOT NULL DEFAULT 'zh-CN',
    display_timezone           varchar(50) NOT NULL DEFAULT 'Asia/Shanghai',
    display_currency           varchar(3) NOT NULL DEFAULT 'RUB',
    display_date_format        varchar(20) NOT NULL DEFAULT 'YYYY-MM-DD',
    display_shop_name_format   varchar(10) NOT NULL DEFAULT 'both',
    sync_auto_sync             boolean NOT NULL DEFAULT true,
    sync_interval              integer NOT NULL DEFAULT 60,
    sync_on_login              boolean NOT NULL DEFAULT true,
    sync_promotions            boolean NOT NULL DEFAULT true,
    sync_finance_transactions  boolean NOT NULL DEFAULT true,
    sync_balance               boolean NOT NULL DEFAULT true,
    security_two_factor_auth   boolean NOT NULL DEFAULT false,
    security_session_timeout   integer NOT NULL DEFAULT 30,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_login_sessions (
    id               bigserial PRIMARY KEY,
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_token    varchar(64) NOT NULL UNIQUE,
    device_info      varchar(500),
    ip_address       varchar(50),
    user_agent       varchar(500),
    is_active        boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_activity_at timestamptz NOT NULL DEFAULT now(),
    -- new: the one refresh token (jti) currently valid for this session; presenting any other
    -- refresh token of the session means it was stolen and replayed.
    refresh_jti      varchar(64),
    -- new: when and why the session ended (logout, replaced, refresh_reuse, password_reset, ...)
    ended_at         timestamptz,
    end_reason       varchar(30),
    -- new: the refresh token's expiry; the session is over after it
    expires_at       timestamptz
);
CREATE INDEX ix_user_login_sessions_user ON user_login_sessions (user_id);
CREATE INDEX ix_user_login_sessions_active ON user_login_sessions (is_active);

CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash     varchar(255) NOT NULL,
    name         varchar(100) NOT NULL,
    permissions  jsonb NOT NULL DEFAULT '["product_selection:write"]'::jsonb,
    is_active    boolean NOT NULL DEFAULT true,
    last_used_at timestamptz,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_api_keys_user ON api_keys (user_id);
CREATE INDEX ix_api_keys_key_hash ON api_keys (key_hash);
CREATE INDEX ix_api_keys_is_active ON api_keys (is_active);

CREATE TABLE audit_logs (
    id             bigserial PRIMARY KEY,
    user_id        integer,
    username       varchar(100),
    module         varchar(50) NOT NULL,
    action         varchar(50) NOT NULL,
    action_display varchar(100),
    table_name     varchar(100),
    record_id      varchar(100),
    changes        jsonb,
    ip_address     inet,
    user_agent     varchar(500),
    request_id     varchar(100),
    notes          text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_audit_logs_user_created ON audit_logs (user_id, created_at);
CREATE INDEX ix_audit_logs_module_created ON audit_logs (module, created_at);
CREATE INDEX ix_audit_logs_action_created ON audit_logs (action, created_at);
CREATE INDEX ix_audit_logs_table_record ON audit_logs (table_name, record_id);
CREATE INDEX ix_audit_logs_created ON audit_logs (created_at);

CREATE TABLE audit_logs_archive (LIKE audit_logs INCLUDING DEFAULTS);
ALTER TABLE audit_logs_archive ADD PRIMARY KEY (id);
CREATE INDEX ix_audit_logs_archive_created ON audit_logs_archive (created_at);
CREATE INDEX ix_audit_logs_archive_table_record ON audit_logs_archive (table_name, record_id);
