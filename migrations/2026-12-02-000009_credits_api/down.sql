CREATE INDEX ledger_account_idx ON ledger (account_id);
DROP INDEX ledger_account_id_idx;
DROP INDEX ledger_once_per_spend;
DELETE FROM ledger WHERE spend_id IS NOT NULL;
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check CHECK (
    (kind = 'grant' AND delta > 0 AND refund_total = 0)
    OR (kind = 'refund' AND refund_total >= 0)
    OR (kind = 'dispute' AND delta < 0));
ALTER TABLE ledger DROP COLUMN spend_id;
ALTER TABLE ledger ALTER COLUMN order_id SET NOT NULL;
DROP TABLE spends;
DROP TABLE api_keys;
