-- Idempotency-Key claims for POST /api/orders. A row is claimed in its own committed
-- transaction; the primary key makes the claim atomic across instances.
CREATE TABLE idempotency_keys (
    key text PRIMARY KEY,
    fingerprint text NOT NULL,                           -- sha256 of method, path and canonical body
    -- in_progress: a request owns it; completed: response stored for replay;
    -- released: the request ended in 5xx, the next request with this key runs again.
    state text NOT NULL CHECK (state IN ('in_progress', 'completed', 'released')),
    order_id uuid,                                       -- set as soon as the order exists, so a takeover resumes it
    response_status integer,
    response_body text,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),     -- an in_progress claim older than the bound can be taken over
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
