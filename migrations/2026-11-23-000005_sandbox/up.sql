-- The sandbox provider's PaymentIntents, in the database so that several instances share them.
CREATE TABLE sandbox_payment_intents (
    id text PRIMARY KEY,                                 -- pi_sandbox_…
    client_secret text NOT NULL,
    idempotency_key text NOT NULL CONSTRAINT sandbox_payment_intents_idempotency_key_key UNIQUE,
    amount bigint NOT NULL,
    currency text NOT NULL,
    status text NOT NULL,                                -- Stripe's PaymentIntent statuses
    metadata jsonb NOT NULL DEFAULT '{}',
    last_payment_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Outbox of signed webhook deliveries. Workers lease rows (next_attempt_at moves ahead)
-- with FOR UPDATE SKIP LOCKED, so no two instances post the same row at once.
CREATE TABLE sandbox_deliveries (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    payload text NOT NULL,                               -- the exact bytes that get signed
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_deliveries_due_idx ON sandbox_deliveries (next_attempt_at) WHERE delivered_at IS NULL;
