-- Every verified event, once per Stripe event id. The primary key is the dedup:
-- a concurrent twin blocks on it and then sees the row.
CREATE TABLE webhook_events (
    event_id text PRIMARY KEY,
    event_type text NOT NULL,
    livemode boolean NOT NULL DEFAULT false,
    api_version text,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- Set in the same transaction as the insert, so a committed row always has one.
    outcome text CHECK (outcome IN ('applied', 'noop', 'ignored', 'unknown_order', 'mismatch')),
    order_id uuid                                        -- the order it was matched to, if any
);
CREATE INDEX webhook_events_received_idx ON webhook_events (received_at DESC);
CREATE INDEX webhook_events_order_idx ON webhook_events (order_id) WHERE order_id IS NOT NULL;
