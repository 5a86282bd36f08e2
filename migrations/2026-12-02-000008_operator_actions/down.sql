ALTER TABLE webhook_events DROP COLUMN duplicates;
DROP TABLE operator_actions;
ALTER TABLE order_transitions DROP COLUMN detail;
ALTER TABLE orders DROP COLUMN reason;
ALTER TABLE orders DROP COLUMN revoked;
