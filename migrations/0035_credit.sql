-- The credit ledger, with the original EuraFlow table, column and constraint names so an existing
-- database imports as it is (credit_accounts, credit_transactions, credit_module_configs).
-- Columns added by this appliance are marked "new". Money is numeric(18,4) (points) and
-- numeric(18,2) (yuan), never a float.

-- One account per main account (or admin, or a shipper without a main account); sub-accounts
-- and shippers spend their main account's. Created on the first change, not on a read.
CREATE TABLE credit_accounts (
    id                      bigserial PRIMARY KEY,
    user_id                 bigint NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    balance                 numeric(18,4) NOT NULL DEFAULT 0,
    total_recharged         numeric(18,4) NOT NULL DEFAULT 0,
    total_consumed          numeric(18,4) NOT NULL DEFAULT 0,
    low_balance_threshold   numeric(18,4) NOT NULL DEFAULT 100,
    low_balance_alert_muted boolean NOT NULL DEFAULT false,
    -- The original's optimistic-lock counter; kept counting every change (the ledger locks the
    -- row instead: see src/credit/ledger.rs).
    version                 integer NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- new: the ledger never overdraws; this makes a bug that tried fail instead of succeed.
    CONSTRAINT credit_accounts_balance_not_negative CHECK (balance >= 0),
    CONSTRAINT credit_accounts_threshold_not_negative CHECK (low_balance_threshold >= 0)
);
CREATE INDEX idx_credit_accounts_user_id ON credit_accounts (user_id);

-- Every movement of a balance. amount is signed (recharge and refund positive, consume
-- negative); balance_after = balance_before + amount.
CREATE TABLE credit_transactions (
    id                 bigserial PRIMARY KEY,
    account_id         bigint NOT NULL REFERENCES credit_accounts (id) ON DELETE CASCADE,
    transaction_type   varchar(20) NOT NULL,
    amount             numeric(18,4) NOT NULL,
    balance_before     numeric(18,4) NOT NULL,
    balance_after      numeric(18,4) NOT NULL,
    module             varchar(50),
    operator_user_id   bigint NOT NULL REFERENCES users (id),
    details            jsonb NOT NULL DEFAULT '{}'::jsonb,
    payment_method     varchar(20),
    payment_amount_cny numeric(18,2),
    payment_order_no   varchar(64),
    approved_by        bigint REFERENCES users (id),
    -- The original's caller-built keys overflowed varchar(64); ours are a SHA-256 (64 hex
    -- characters) of the kind, the account and the caller's key, so any key fits.
    idempotency_key    varchar(64) UNIQUE,
    ip_address         varchar(45),
    notes              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- new: the consume a refund gives back (refunds of one consume never exceed it).
    refund_of_id       bigint REFERENCES credit_transactions (id),
    CONSTRAINT credit_transactions_balance_adds_up CHECK (balance_after = balance_before + amount)
);
CREATE INDEX idx_credit_tx_account_time ON credit_transactions (account_id, created_at);
CREATE INDEX idx_credit_tx_type_time ON credit_transactions (transaction_type, created_at);
CREATE INDEX idx_credit_tx_module_time ON credit_transactions (module, created_at);
CREATE INDEX idx_credit_tx_operator ON credit_transactions (operator_user_id, created_at);
CREATE INDEX idx_credit_tx_refund_of ON credit_transactions (refund_of_id) WHERE refund_of_id IS NOT NULL;

-- What one unit of a module costs.
CREATE TABLE credit_module_configs (
    id               bigserial PRIMARY KEY,
    module_key       varchar(50) NOT NULL UNIQUE,
    module_name      varchar(100) NOT NULL,
    cost_per_unit    numeric(18,4) NOT NULL CHECK (cost_per_unit >= 0),
    unit_description varchar(50) NOT NULL DEFAULT '次',
    is_enabled       boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_credit_module_configs_key ON credit_module_configs (module_key);

-- The original's one seeded module.
INSERT INTO credit_module_configs (module_key, module_name, cost_per_unit, unit_description, is_enabled)
VALUES ('print_label', '打印快递面单', 1.0000, '个面单', true);
