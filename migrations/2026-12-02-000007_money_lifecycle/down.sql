DROP INDEX sandbox_deliveries_event_idx;
DROP TABLE event_catchup;
DROP TABLE order_charges;
DROP INDEX ledger_once_per_order;
DELETE FROM ledger WHERE kind = 'dispute' OR (kind = 'refund' AND delta > 0);
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check CHECK (kind IN ('grant', 'refund'));
ALTER TABLE ledger ADD CONSTRAINT ledger_check CHECK ((kind = 'grant' AND delta > 0 AND refund_total = 0) OR (kind = 'refund' AND delta < 0 AND refund_total > 0));
ALTER TABLE ledger ADD CONSTRAINT ledger_order_kind_total_key UNIQUE (order_id, kind, refund_total);
UPDATE orders SET status = 'disputed' WHERE status = 'dispute_lost';
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN (
    'pending', 'processing', 'paid', 'partially_refunded', 'refunded',
    'failed', 'canceled', 'disputed', 'needs_review'));
ALTER TABLE orders DROP COLUMN refunds_as_of;
ALTER TABLE orders ADD COLUMN dispute_seen boolean NOT NULL DEFAULT false;
UPDATE orders SET dispute_seen = (dispute <> 'none');
ALTER TABLE orders DROP COLUMN dispute;
