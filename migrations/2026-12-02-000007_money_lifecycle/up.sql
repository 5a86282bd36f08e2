-- Disputes that end, refunds that fail, orders found by charge, and the event catch-up.

-- An order's dispute as the facts tell it, replacing the old yes/no flag. Kept before
-- the order is paid too, so a dispute (or its outcome) that overtakes the success still
-- takes effect when the success arrives.
ALTER TABLE orders ADD COLUMN dispute text NOT NULL DEFAULT 'none'
    CHECK (dispute IN ('none', 'open', 'won', 'lost'));
UPDATE orders SET dispute = 'open' WHERE dispute_seen;
ALTER TABLE orders DROP COLUMN dispute_seen;
-- Stripe's clock (unix seconds) of the last time the refund total was taken from the
-- provider after a refund failed: a charge.refunded event created before it is stale
-- and may not raise the total again.
ALTER TABLE orders ADD COLUMN refunds_as_of bigint;
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN (
    'pending', 'processing', 'paid', 'partially_refunded', 'refunded',
    'failed', 'canceled', 'disputed', 'dispute_lost', 'needs_review'));

-- Refund rows may now give credits back (a refund that failed), so the total alone no
-- longer names a row: the order's row lock and the guarded UPDATE (status, refund
-- total and dispute as read) keep revocations exactly once; one grant and one dispute
-- revocation per order stay unique in the schema.
ALTER TABLE ledger DROP CONSTRAINT ledger_order_kind_total_key;
ALTER TABLE ledger DROP CONSTRAINT ledger_check;
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check CHECK (
    (kind = 'grant' AND delta > 0 AND refund_total = 0)
    OR (kind = 'refund' AND refund_total >= 0)
    OR (kind = 'dispute' AND delta < 0));
-- One index, as before (each extra one costs every webhook an index insert): unique on
-- (order, kind) for grants and dispute revocations, while refund rows are told apart by
-- their own id; its leading column serves the lookups by order.
CREATE UNIQUE INDEX ledger_once_per_order ON ledger
    (order_id, kind, (CASE WHEN kind IN ('grant', 'dispute') THEN 0 ELSE id END));

-- Every charge id seen for an order (a success's latest_charge, a refund's or a
-- dispute's charge), so an event that names only the charge finds its order.
CREATE TABLE order_charges (
    charge_id text PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_charges_order_idx ON order_charges (order_id);

-- The event catch-up's state: one row. `cursor_created` is Stripe's `created` (unix
-- seconds) up to which every listed event was applied or recorded; a pass lists from it
-- less an overlap. `lease_until` keeps two instances from paging the same window at once
-- without holding a connection while Stripe answers.
CREATE TABLE event_catchup (
    id integer PRIMARY KEY CHECK (id = 1),
    cursor_created bigint,
    lease_until timestamptz,
    last_started_at timestamptz,
    last_finished_at timestamptz,
    last_listed integer NOT NULL DEFAULT 0,
    last_applied integer NOT NULL DEFAULT 0,
    last_duplicate integer NOT NULL DEFAULT 0,
    last_errors integer NOT NULL DEFAULT 0,
    last_error text
);
INSERT INTO event_catchup (id) VALUES (1);

-- The sandbox lists its own events for the catch-up; a chaos duplicate is one event.
CREATE INDEX sandbox_deliveries_event_idx ON sandbox_deliveries (event_id);
