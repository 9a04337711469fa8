-- A ledger row outlives the user who made it: deleting a sub-account that printed labels, or
-- an admin who recharged, failed on these foreign keys (the original's too). The row keeps its
-- amounts and balances; the operator or approver becomes unknown (NULL).
ALTER TABLE credit_transactions ALTER COLUMN operator_user_id DROP NOT NULL;
ALTER TABLE credit_transactions
    DROP CONSTRAINT credit_transactions_operator_user_id_fkey,
    ADD CONSTRAINT credit_transactions_operator_user_id_fkey
        FOREIGN KEY (operator_user_id) REFERENCES users (id) ON DELETE SET NULL,
    DROP CONSTRAINT credit_transactions_approved_by_fkey,
    ADD CONSTRAINT credit_transactions_approved_by_fkey
        FOREIGN KEY (approved_by) REFERENCES users (id) ON DELETE SET NULL;
