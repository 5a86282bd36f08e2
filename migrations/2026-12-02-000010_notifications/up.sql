-- The outbox (SPEC §9): a notification row for every ledger change and order status
-- change, written in the change's own transaction, delivered to the merchant's
-- MERCHANT_WEBHOOK_URL by the dispatcher after commit.

-- Per-account sequence: taken with the account row's lock in the change's transaction,
-- so one account's notifications are numbered in the order their changes commit.
ALTER TABLE accounts ADD COLUMN notify_seq bigint NOT NULL DEFAULT 0;

CREATE TABLE notifications (
    id text PRIMARY KEY CHECK (id LIKE 'ntf\_%'),
    account_id uuid NOT NULL REFERENCES accounts (id),
    account_seq bigint NOT NULL,
    kind text NOT NULL CHECK (kind IN ('credits.granted', 'credits.revoked', 'credits.spent',
                                       'credits.restored', 'order.updated')),
    body text NOT NULL,                     -- the exact JSON sent (and signed) on every try
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    retry_since timestamptz NOT NULL DEFAULT now(),   -- the 3-day window starts here
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,               -- a dispatcher is sending it until then
    last_attempt_at timestamptz,
    last_status integer,                    -- the receiver's HTTP status, if it answered
    last_answer text,                       -- an excerpt of its body, or why it did not answer
    delivered_at timestamptz,
    CONSTRAINT notifications_account_seq_key UNIQUE (account_id, account_seq)
);
-- The dispatcher's queue heads: the first undelivered notification of each account.
CREATE INDEX notifications_undelivered_idx ON notifications (account_id, account_seq)
    WHERE state <> 'delivered';
CREATE INDEX notifications_created_idx ON notifications (created_at DESC);

-- Operator redeliveries, audited like the other operator actions.
CREATE TABLE notification_actions (
    id bigserial PRIMARY KEY,
    notification_id text NOT NULL REFERENCES notifications (id),
    action text NOT NULL CHECK (action = 'redeliver'),
    note text NOT NULL CHECK (length(note) BETWEEN 1 AND 1000),
    result text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_actions_notification_idx ON notification_actions (notification_id, id);
