-- Reasons an operator can read, and the operator's own actions.

-- Why the order is where it is, in words, when there is a reason worth keeping: what a
-- contradicting event expected and carried (needs_review), the provider's decline
-- (failed). The latest one; every transition keeps its own in `detail`.
ALTER TABLE orders ADD COLUMN reason text;
-- Credits taken back so far (refund and dispute rows, net): the next revocation is
-- measured against it, so facts remembered during a review count once when an operator
-- grants. Equal to the negated sum of the order's refund and dispute rows, always.
ALTER TABLE orders ADD COLUMN revoked bigint NOT NULL DEFAULT 0;
UPDATE orders o SET revoked = COALESCE(
    (SELECT -SUM(delta) FROM ledger l WHERE l.order_id = o.id AND l.kind IN ('refund', 'dispute')), 0);
ALTER TABLE order_transitions ADD COLUMN detail text;

-- Every operator action, the audit trail of SPEC §3. `key` is the action's own
-- idempotency key (the form's one-time token or the API's Idempotency-Key), also sent to
-- the provider, so a double submit or a retried request acts once. The row is claimed
-- before the provider is called and finished in the transaction of the action's effect.
CREATE TABLE operator_actions (
    id bigserial PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id),
    action text NOT NULL CHECK (action IN ('refund', 'resolve_grant', 'resolve_refund', 'sync', 'cancel')),
    key text NOT NULL CONSTRAINT operator_actions_key_key UNIQUE,
    note text NOT NULL CHECK (length(note) BETWEEN 1 AND 1000),
    params jsonb NOT NULL DEFAULT '{}',
    state text NOT NULL DEFAULT 'in_progress' CHECK (state IN ('in_progress', 'done', 'failed')),
    result text,                                         -- what it did, in words
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX operator_actions_order_idx ON operator_actions (order_id, id);

-- Deliveries of an event id already stored, so an order's page can show the duplicates
-- Stripe's retries and the sandbox's chaos sent, and absorbed. Counted in memory and
-- added in batches (webhook::DuplicateTally), off the duplicate's own transaction.
ALTER TABLE webhook_events ADD COLUMN duplicates integer NOT NULL DEFAULT 0;

-- The sandbox refunds too (operator actions): its charge's refund total, and each
-- refund under the idempotency key it was asked with, as Stripe keeps them.
ALTER TABLE sandbox_payment_intents ADD COLUMN amount_refunded bigint NOT NULL DEFAULT 0;
CREATE TABLE sandbox_refunds (
    id text PRIMARY KEY,                                 -- re_sandbox_…
    idempotency_key text NOT NULL CONSTRAINT sandbox_refunds_idempotency_key_key UNIQUE,
    payment_intent_id text NOT NULL REFERENCES sandbox_payment_intents (id),
    amount bigint NOT NULL CHECK (amount > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
