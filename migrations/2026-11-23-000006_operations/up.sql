-- Secrets generated once and shared by every instance on this database (the CSRF key,
-- the sandbox webhook secret), so a form or a delivery made by one instance verifies on another.
CREATE TABLE app_secrets (
    name text PRIMARY KEY,
    value text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per reconciler pass, for the operator page.
CREATE TABLE reconcile_runs (
    id bigserial PRIMARY KEY,
    trigger text NOT NULL,                               -- loop | cli | admin
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    checked integer NOT NULL DEFAULT 0,
    changed integer NOT NULL DEFAULT 0,
    errors integer NOT NULL DEFAULT 0
);
