DROP TABLE ledger; DROP TABLE order_transitions; DROP TABLE orders; DROP TABLE accounts;
