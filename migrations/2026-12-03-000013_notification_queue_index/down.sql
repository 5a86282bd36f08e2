DROP INDEX notifications_queue_idx;
CREATE INDEX notifications_undelivered_idx ON notifications (account_id, account_seq)
    WHERE state <> 'delivered';
ALTER TABLE notification_actions DROP CONSTRAINT notification_actions_notification_id_fkey;
ALTER TABLE notifications DROP CONSTRAINT notifications_pkey;
ALTER TABLE notifications ADD CONSTRAINT notifications_id_key UNIQUE (id);
ALTER TABLE notifications ADD CONSTRAINT notifications_pkey PRIMARY KEY (account_id, account_seq);
ALTER TABLE notification_actions ADD CONSTRAINT notification_actions_notification_id_fkey
    FOREIGN KEY (notification_id) REFERENCES notifications (id);
