-- The outbox keeps each notification's fields, not its JSON: the dispatcher renders
-- the body when it sends (notify::Payload), the same bytes on every try of one row.
--
-- Why: the body was built with jsonb_build_object inside every change's transaction
-- (about 30 µs of a webhook's 93 µs outbox statement, measured alone) and, at ~450
-- bytes, made the row three times wider, so the dispatcher's two updates of each row
-- (lease, then delivered) copied it into the WAL twice more. The fields are what the
-- body said: the e-mail is read from the account (it never changes), `created` from
-- created_at (the same transaction time), `sequence` is account_seq.
ALTER TABLE notifications
    ADD COLUMN order_id uuid,
    ADD COLUMN spend_id uuid,
    ADD COLUMN status text,
    ADD COLUMN delta bigint,
    ADD COLUMN balance bigint;

UPDATE notifications SET
    order_id = (body::jsonb #>> '{data,order_id}')::uuid,
    spend_id = (body::jsonb #>> '{data,spend_id}')::uuid,
    status = body::jsonb #>> '{data,status}',
    delta = (body::jsonb #>> '{data,delta}')::bigint,
    balance = (body::jsonb #>> '{data,balance}')::bigint;

ALTER TABLE notifications
    ALTER COLUMN delta SET NOT NULL,
    ALTER COLUMN balance SET NOT NULL,
    DROP COLUMN body;
