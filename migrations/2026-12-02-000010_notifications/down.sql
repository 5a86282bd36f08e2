DROP TABLE notification_actions;
DROP FUNCTION paidonce_notify;
DROP TABLE notifications;
ALTER TABLE accounts DROP COLUMN notify_seq;
