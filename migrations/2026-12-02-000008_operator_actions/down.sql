DROP TABLE sandbox_refunds;
ALTER TABLE sandbox_payment_intents DROP COLUMN amount_refunded;
ALTER TABLE webhook_events DROP COLUMN duplicates;
DROP TABLE operator_actions;
ALTER TABLE order_transitions DROP COLUMN detail;
ALTER TABLE orders DROP COLUMN reason;
ALTER TABLE orders DROP COLUMN revoked;
