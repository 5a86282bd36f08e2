-- Two indexes on the outbox instead of three, and a queue index the planner cannot
-- mistake. Until now the table had a primary key on (account_id, account_seq), a
-- unique id, and the dispatcher's partial index on (account_id, account_seq) of the
-- undelivered rows. The load lab found the dispatcher's skip scan probing the primary
-- key instead of the partial index while the table was young (before its first
-- ANALYZE), reading every delivered row of each account on every claim; and every
-- notification paid for three index entries when written and two more when delivered.
--
-- Now: the id is the primary key (what the operator's redeliver, the audit rows and the
-- receiver know a notification by), and the queue index is the only index on
-- (account_id, account_seq). It is unique: among undelivered rows, which is where a
-- duplicate sequence could do harm (two notifications racing for one place in an
-- account's order); the sequence itself is assigned under the account row's lock
-- (notify::record), so delivered rows cannot repeat one either.
ALTER TABLE notification_actions DROP CONSTRAINT notification_actions_notification_id_fkey;
ALTER TABLE notifications DROP CONSTRAINT notifications_pkey;
ALTER TABLE notifications DROP CONSTRAINT notifications_id_key;
ALTER TABLE notifications ADD CONSTRAINT notifications_pkey PRIMARY KEY (id);
ALTER TABLE notification_actions ADD CONSTRAINT notification_actions_notification_id_fkey
    FOREIGN KEY (notification_id) REFERENCES notifications (id);

DROP INDEX notifications_undelivered_idx;
CREATE UNIQUE INDEX notifications_queue_idx ON notifications (account_id, account_seq)
    WHERE state <> 'delivered';
