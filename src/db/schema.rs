// @generated automatically by Diesel CLI.

diesel::table! {
    accounts (id) {
        id -> Uuid,
        email -> Text,
        created_at -> Timestamptz,
        notify_seq -> Int8,
        balance -> Int8,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        name -> Text,
        secret_sha256 -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    app_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    event_catchup (id) {
        id -> Int4,
        cursor_created -> Nullable<Int8>,
        lease_until -> Nullable<Timestamptz>,
        last_started_at -> Nullable<Timestamptz>,
        last_finished_at -> Nullable<Timestamptz>,
        last_listed -> Int4,
        last_applied -> Int4,
        last_duplicate -> Int4,
        last_errors -> Int4,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (key) {
        key -> Text,
        fingerprint -> Text,
        state -> Text,
        order_id -> Nullable<Uuid>,
        response_status -> Nullable<Int4>,
        response_body -> Nullable<Text>,
        heartbeat_at -> Timestamptz,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    ledger (id) {
        id -> Int8,
        account_id -> Uuid,
        order_id -> Nullable<Uuid>,
        kind -> Text,
        delta -> Int8,
        refund_total -> Int8,
        cause -> Text,
        created_at -> Timestamptz,
        spend_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    operator_actions (id) {
        id -> Int8,
        order_id -> Uuid,
        action -> Text,
        key -> Text,
        note -> Text,
        params -> Jsonb,
        state -> Text,
        result -> Nullable<Text>,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    order_charges (charge_id) {
        charge_id -> Text,
        order_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    order_transitions (id) {
        id -> Int8,
        order_id -> Uuid,
        from_status -> Nullable<Text>,
        to_status -> Text,
        cause -> Text,
        at -> Timestamptz,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    orders (id) {
        id -> Uuid,
        account_id -> Uuid,
        pack_id -> Text,
        credits -> Int8,
        amount -> Int8,
        currency -> Text,
        status -> Text,
        provider_key -> Text,
        payment_intent_id -> Nullable<Text>,
        client_secret -> Nullable<Text>,
        amount_refunded -> Int8,
        reconcile_lease_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
        dispute -> Text,
        refunds_as_of -> Nullable<Int8>,
        reason -> Nullable<Text>,
        revoked -> Int8,
    }
}

diesel::table! {
    packs (id) {
        id -> Text,
        name -> Text,
        credits -> Int8,
        amount -> Int8,
        currency -> Text,
        sort_order -> Int4,
        active -> Bool,
    }
}

diesel::table! {
    reconcile_runs (id) {
        id -> Int8,
        trigger -> Text,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        checked -> Int4,
        changed -> Int4,
        errors -> Int4,
    }
}

diesel::table! {
    sandbox_deliveries (id) {
        id -> Int8,
        event_id -> Text,
        payload -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sandbox_payment_intents (id) {
        id -> Text,
        client_secret -> Text,
        idempotency_key -> Text,
        amount -> Int8,
        currency -> Text,
        status -> Text,
        metadata -> Jsonb,
        last_payment_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        amount_refunded -> Int8,
    }
}

diesel::table! {
    sandbox_refunds (id) {
        id -> Text,
        idempotency_key -> Text,
        payment_intent_id -> Text,
        amount -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    spends (id) {
        id -> Uuid,
        account_id -> Uuid,
        credits -> Int8,
        reference -> Text,
        api_key_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        reversed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_events (event_id) {
        event_id -> Text,
        event_type -> Text,
        livemode -> Bool,
        api_version -> Nullable<Text>,
        payload -> Jsonb,
        received_at -> Timestamptz,
        outcome -> Nullable<Text>,
        order_id -> Nullable<Uuid>,
        duplicates -> Int4,
    }
}

diesel::table! {
    notifications (id) {
        id -> Text,
        account_id -> Uuid,
        account_seq -> Int8,
        kind -> Text,
        state -> Text,
        attempts -> Int4,
        created_at -> Timestamptz,
        retry_since -> Timestamptz,
        next_attempt_at -> Timestamptz,
        leased_until -> Nullable<Timestamptz>,
        last_attempt_at -> Nullable<Timestamptz>,
        last_status -> Nullable<Int4>,
        last_answer -> Nullable<Text>,
        delivered_at -> Nullable<Timestamptz>,
        order_id -> Nullable<Uuid>,
        spend_id -> Nullable<Uuid>,
        status -> Nullable<Text>,
        delta -> Int8,
        balance -> Int8,
    }
}

diesel::table! {
    notification_actions (id) {
        id -> Int8,
        notification_id -> Text,
        action -> Text,
        note -> Text,
        result -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(ledger -> accounts (account_id));
diesel::joinable!(notifications -> accounts (account_id));
diesel::joinable!(ledger -> orders (order_id));
diesel::joinable!(ledger -> spends (spend_id));
diesel::joinable!(spends -> accounts (account_id));
diesel::joinable!(spends -> api_keys (api_key_id));
diesel::joinable!(operator_actions -> orders (order_id));
diesel::joinable!(order_charges -> orders (order_id));
diesel::joinable!(order_transitions -> orders (order_id));
diesel::joinable!(orders -> accounts (account_id));
diesel::joinable!(orders -> packs (pack_id));
diesel::joinable!(sandbox_refunds -> sandbox_payment_intents (payment_intent_id));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    api_keys,
    app_secrets,
    event_catchup,
    idempotency_keys,
    ledger,
    notification_actions,
    notifications,
    operator_actions,
    order_charges,
    order_transitions,
    orders,
    packs,
    reconcile_runs,
    sandbox_deliveries,
    sandbox_payment_intents,
    sandbox_refunds,
    spends,
    webhook_events,
);
