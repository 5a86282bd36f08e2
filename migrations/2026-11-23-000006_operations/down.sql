DROP TABLE reconcile_runs; DROP TABLE app_secrets;
