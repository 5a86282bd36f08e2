-- The outbox (SPEC §9): a notification row for every ledger change and order status
-- change, written in the change's own transaction, delivered to the merchant's
-- MERCHANT_WEBHOOK_URL by the dispatcher after commit.

-- Per-account sequence: taken with the account row's lock in the change's transaction,
-- so one account's notifications are numbered in the order their changes commit.
ALTER TABLE accounts ADD COLUMN notify_seq bigint NOT NULL DEFAULT 0;

CREATE TABLE notifications (
    id text NOT NULL CONSTRAINT notifications_id_key UNIQUE CHECK (id LIKE 'ntf\_%'),
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
    PRIMARY KEY (account_id, account_seq)
) WITH (fillfactor = 80);   -- room for the lease updates to stay HOT
-- The dispatcher's queue heads: the first undelivered notification of each account.
CREATE INDEX notifications_undelivered_idx ON notifications (account_id, account_seq)
    WHERE state <> 'delivered';

-- The notification write, one round trip from the change's transaction. A function
-- because its two statements need two snapshots: the account row's lock is taken
-- first (numbering the notes after every change to this account that committed
-- before), then the balance is summed with a snapshot taken once the lock is held, so
-- it sees those changes' ledger rows. (In one statement the balance would come from a
-- snapshot taken before the lock wait.)
CREATE FUNCTION paidonce_notify(
    p_account uuid, p_ids text[], p_kinds text[], p_orders uuid[], p_spends uuid[],
    p_statuses text[], p_deltas bigint[]
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_base bigint;
    v_email text;
    v_balance bigint;
    v_n int := cardinality(p_ids);
BEGIN
    UPDATE accounts SET notify_seq = notify_seq + v_n WHERE id = p_account
        RETURNING notify_seq - v_n, email INTO v_base, v_email;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'paidonce_notify: no account %', p_account;
    END IF;
    SELECT COALESCE(SUM(delta), 0)::bigint INTO v_balance FROM ledger WHERE account_id = p_account;
    INSERT INTO notifications (id, account_id, account_seq, kind, body)
    SELECT n.id, p_account, v_base + n.ord, n.kind,
           jsonb_build_object(
               'id', n.id, 'type', n.kind, 'created', extract(epoch FROM now())::bigint,
               'data', jsonb_build_object(
                   'order_id', n.order_id, 'spend_id', n.spend_id, 'email', v_email,
                   'status', n.status, 'delta', n.delta, 'balance', v_balance,
                   'sequence', v_base + n.ord))::text
    FROM unnest(p_ids, p_kinds, p_orders, p_spends, p_statuses, p_deltas)
         WITH ORDINALITY AS n(id, kind, order_id, spend_id, status, delta, ord);
END
$$;

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
