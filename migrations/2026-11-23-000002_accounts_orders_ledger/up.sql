-- E-mails are stored lowercased (the app lowercases; the CHECK makes sure), so the plain
-- unique index is a case-insensitive one.
CREATE TABLE accounts (
    id uuid PRIMARY KEY,
    email text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_email_key UNIQUE (email)
);

CREATE TABLE orders (
    id uuid PRIMARY KEY,                                 -- random v4, made by the app
    account_id uuid NOT NULL REFERENCES accounts (id),
    pack_id text NOT NULL REFERENCES packs (id),
    credits bigint NOT NULL CHECK (credits > 0),         -- copied from the pack at creation
    amount bigint NOT NULL CHECK (amount > 0),           -- copied from the pack at creation
    currency text NOT NULL,                              -- copied from the pack at creation
    status text NOT NULL DEFAULT 'pending' CHECK (status IN (
        'pending', 'processing', 'paid', 'partially_refunded', 'refunded',
        'failed', 'canceled', 'disputed', 'needs_review')),
    -- The key we send to the provider on every create attempt for this order, so a
    -- retried or resumed creation lands on the same PaymentIntent.
    provider_key text NOT NULL CONSTRAINT orders_provider_key_key UNIQUE,
    payment_intent_id text CONSTRAINT orders_payment_intent_id_key UNIQUE, -- NULL until the provider answered
    client_secret text,
    -- Highest cumulative charge.amount_refunded seen. Kept even before the order is paid,
    -- so a refund that overtakes the success still takes effect when the success arrives.
    amount_refunded bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    -- A dispute seen before the success, remembered the same way.
    dispute_seen boolean NOT NULL DEFAULT false,
    -- While a reconciler pass holds this order: other passes skip it until then.
    reconcile_lease_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    paid_at timestamptz
);
CREATE INDEX orders_account_idx ON orders (account_id);
CREATE INDEX orders_created_idx ON orders (created_at DESC);
CREATE INDEX orders_unsettled_idx ON orders (created_at)
    WHERE status IN ('pending', 'processing', 'failed');

-- Every status change with what caused it (a webhook event id, 'reconciler', 'return_sync', …).
CREATE TABLE order_transitions (
    id bigserial PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id),
    from_status text,                                    -- NULL for the creation row
    to_status text NOT NULL,
    cause text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_transitions_order_idx ON order_transitions (order_id, id);

-- Balance = sum(delta) over an account's rows; there is no cached balance to drift.
CREATE TABLE ledger (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    order_id uuid NOT NULL REFERENCES orders (id),
    kind text NOT NULL CHECK (kind IN ('grant', 'refund')),
    delta bigint NOT NULL CHECK (delta <> 0),
    -- For 'refund' rows: the cumulative amount refunded this row brings the order to;
    -- 0 for the grant. Unique with (order_id, kind): one grant per order, and one
    -- revocation per refund total, so a repeated refund event cannot revoke twice.
    refund_total bigint NOT NULL DEFAULT 0,
    cause text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_order_kind_total_key UNIQUE (order_id, kind, refund_total),
    CHECK ((kind = 'grant' AND delta > 0 AND refund_total = 0) OR (kind = 'refund' AND delta < 0 AND refund_total > 0))
);
CREATE INDEX ledger_account_idx ON ledger (account_id);
