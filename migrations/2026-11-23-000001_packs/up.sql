-- Credit packs a shopper can buy. Orders copy credits/amount/currency at creation,
-- so editing a pack never changes what an existing order is worth.
CREATE TABLE packs (
    id text PRIMARY KEY CHECK (id ~ '^[a-z0-9_-]{1,64}$'),
    name text NOT NULL,
    credits bigint NOT NULL CHECK (credits > 0),
    amount bigint NOT NULL CHECK (amount > 0),          -- minor units (cents)
    currency text NOT NULL CHECK (currency ~ '^[a-z]{3}$'), -- ISO 4217, lowercase as Stripe writes it
    sort_order integer NOT NULL DEFAULT 0
);

INSERT INTO packs (id, name, credits, amount, currency, sort_order) VALUES
    ('starter', 'Starter', 100, 500, 'usd', 1),
    ('standard', 'Standard', 550, 2500, 'usd', 2),
    ('pro', 'Pro', 1200, 5000, 'usd', 3);
