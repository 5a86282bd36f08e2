DROP TABLE notification_actions;
DROP TABLE notifications;
ALTER TABLE accounts DROP COLUMN notify_seq;
