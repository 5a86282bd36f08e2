-- The credits API (SPEC §8): keys for the merchant's application, and spends.

-- A key is shown once, as po_<id>_<secret>; only the secret's SHA-256 is kept.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,                            -- refreshed at most once a minute
    revoked_at timestamptz                               -- set: refused at once, everywhere
);

CREATE TABLE spends (
    id uuid PRIMARY KEY,                                 -- random v4
    account_id uuid NOT NULL REFERENCES accounts (id),
    credits bigint NOT NULL CHECK (credits BETWEEN 1 AND 2147483647),
    reference text NOT NULL CHECK (length(reference) <= 255),
    api_key_id uuid REFERENCES api_keys (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    reversed_at timestamptz                              -- set once, with its ledger row
);
CREATE INDEX spends_account_idx ON spends (account_id);

-- Spend rows belong to a spend, not an order.
ALTER TABLE ledger ALTER COLUMN order_id DROP NOT NULL;
ALTER TABLE ledger ADD COLUMN spend_id uuid REFERENCES spends (id);
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check CHECK (
    (kind = 'grant' AND delta > 0 AND refund_total = 0 AND order_id IS NOT NULL)
    OR (kind = 'refund' AND refund_total >= 0 AND order_id IS NOT NULL)
    OR (kind = 'dispute' AND delta < 0 AND order_id IS NOT NULL)
    OR (kind = 'spend' AND delta < 0 AND spend_id IS NOT NULL AND order_id IS NULL)
    OR (kind = 'spend_reversal' AND delta > 0 AND spend_id IS NOT NULL AND order_id IS NULL));
-- One spend row and one reversal per spend, whatever races.
CREATE UNIQUE INDEX ledger_once_per_spend ON ledger (spend_id, kind) WHERE spend_id IS NOT NULL;
-- The account's ledger, newest first, paged by id.
CREATE INDEX ledger_account_id_idx ON ledger (account_id, id DESC);
DROP INDEX ledger_account_idx;
