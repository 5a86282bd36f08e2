DROP TABLE sandbox_deliveries; DROP TABLE sandbox_payment_intents;
