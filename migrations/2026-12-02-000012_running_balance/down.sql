DROP TRIGGER ledger_is_append_only ON ledger;
DROP FUNCTION paidonce_ledger_is_append_only;
DROP TRIGGER ledger_adds_to_balance ON ledger;
DROP FUNCTION paidonce_ledger_adds_to_balance;
ALTER TABLE accounts DROP COLUMN balance;

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
