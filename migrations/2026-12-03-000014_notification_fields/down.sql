ALTER TABLE notifications ADD COLUMN body text;

UPDATE notifications n SET body = jsonb_build_object(
    'id', n.id, 'type', n.kind, 'created', extract(epoch FROM n.created_at)::bigint,
    'data', jsonb_build_object(
        'order_id', n.order_id, 'spend_id', n.spend_id, 'email', a.email,
        'status', n.status, 'delta', n.delta, 'balance', n.balance,
        'sequence', n.account_seq))::text
FROM accounts a WHERE a.id = n.account_id;

ALTER TABLE notifications
    ALTER COLUMN body SET NOT NULL,
    DROP COLUMN order_id,
    DROP COLUMN spend_id,
    DROP COLUMN status,
    DROP COLUMN delta,
    DROP COLUMN balance;
