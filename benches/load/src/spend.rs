//! The spend scenario (issue 19): POST /api/v1/accounts/{email}/spends of 1 credit,
//! LOAD_SPENDS [5000] of them at LOAD_SPEND_CONCURRENCY [32], first spread over the
//! run's 50 accounts, then all on one hot account; against pgbench running the same
//! debit on the same database at the same client count: the Idempotency-Key claim
//! (its own transaction), then the account row lock with its running balance, the
//! spend and ledger rows and the key's spend id in one transaction, one statement per
//! round trip (the app pipelines the last three), then the key's completion.

use std::sync::Arc;

use anyhow::bail;
use serde_json::json;

use crate::driver::{self, MakeRequest};
use crate::output::{pgbench_row, report_row};
use crate::pgbench;
use crate::scenarios::Bench;
use crate::stack;

fn script(tag: &str, set: &str, hot: bool) -> String {
    let pick = if hot {
        "\\set k 0\n".to_owned()
    } else {
        format!("\\set k random(0, {})\n", stack::accounts() - 1)
    };
    let key = format!("('pgb-{tag}-{set}-' || :n::text)");
    format!(
        "\\set n :client_id * 100000000 + :i\n\\set i :i + 1\n{pick}\
         INSERT INTO idempotency_keys (key, fingerprint, state, expires_at) \
         VALUES ({key}, 'fp', 'in_progress', now() + interval '1 day');\n\
         BEGIN;\n\
         SELECT id, balance FROM accounts WHERE email = 'load-{tag}-' || :k::text || '@bench.example' FOR UPDATE \\gset a_\n\
         INSERT INTO spends (id, account_id, credits, reference) VALUES (gen_random_uuid(), :a_id, 1, 'pgbench') RETURNING id \\gset s_\n\
         INSERT INTO ledger (account_id, order_id, spend_id, kind, delta, refund_total, cause) \
         VALUES (:a_id, NULL, :s_id, 'spend', -1, 0, 'credits_api');\n\
         UPDATE idempotency_keys SET order_id = :s_id, heartbeat_at = now() WHERE key = {key};\n\
         COMMIT;\n\
         UPDATE idempotency_keys SET state = 'completed', response_status = 201, response_body = '{{}}' WHERE key = {key};\n"
    )
}

impl Bench {
    pub async fn spend(&mut self) -> anyhow::Result<()> {
        let n: usize = crate::env_or("LOAD_SPENDS", 5000);
        let c: usize = crate::env_or("LOAD_SPEND_CONCURRENCY", 32);
        println!(
            "\n== spend: {n} spends of 1 credit at c={c}, many accounts then one hot account, instance A"
        );
        // Credits to spend: one paid order per account, a grant big enough for every run.
        stack::seed_orders(&mut self.conn, &self.tag, "spendseed", stack::accounts()).await?;
        stack::exec(
            &mut self.conn,
            &format!(
                "INSERT INTO ledger (account_id, order_id, kind, delta, refund_total, cause) \
                 SELECT account_id, id, 'grant', 100000000, 0, 'bench' FROM orders \
                 WHERE provider_key LIKE 'bench-{}-spendseed-%'",
                self.tag
            ),
        )
        .await?;
        let out = stack::command(&self.db_url, "http://127.0.0.1:9", 1)
            .args(["api-key", "create", "--name", "load harness"])
            .output()
            .await?;
        let key = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("api key: ").map(str::to_owned));
        let Some(key) = key else {
            bail!(
                "paidonce api-key create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for (label, hot) in [("many accounts", false), ("one hot account", true)] {
            let set = if hot { "spendhot" } else { "spendmany" };
            let (base, tag, key) = (self.a.base.clone(), self.tag.clone(), key.clone());
            let client = self.client.clone();
            let make: MakeRequest = Arc::new(move |i| {
                let k = if hot { 0 } else { i % stack::accounts() };
                client
                    .post(format!(
                        "{base}/api/v1/accounts/load-{tag}-{k}@bench.example/spends"
                    ))
                    .bearer_auth(&key)
                    .header("Idempotency-Key", format!("spend-{tag}-{set}-{i}"))
                    .json(&json!({"credits": 1, "reference": format!("load {i}")}))
            });
            let mark = self.mark().await?;
            let mut report = driver::closed_loop(
                &format!("spend, {label}"),
                c,
                n,
                self.s.scenario_limit,
                false,
                make,
            )
            .await;
            self.finish(&mark, &mut report).await?;
            let ok = report.count_status(|s| s == 201);
            let all_spent = ok == report.requests as u64 && report.server_errors() == 0;
            if !all_spent {
                self.all_ok = false;
                println!(
                    "  PROBLEM: {} of {} spends answered 201",
                    ok, report.requests
                );
            }
            let per_client = n.div_ceil(c);
            let script = script(&self.tag, set, hot);
            let defines = [("i", "0".to_owned())];
            let name = format!("spend-{set}");
            let reference = self
                .pgbench(
                    &format!("the same debit, {label}"),
                    pgbench::Job {
                        name: &name,
                        script: &script,
                        clients: c,
                        length: pgbench::Length::PerClient(per_client),
                        defines: &defines,
                    },
                )
                .await
                .filter(|o| o.ok);
            // A ratio only means something when every spend was made.
            let ratio = reference
                .as_ref()
                .filter(|_| all_spent)
                .map(|o| report.rps() / o.tps);
            let note = ratio.map_or_else(String::new, |r| format!("{r:.2} × pgbench"));
            self.table.push(report_row(&report, &note));
            if let Some(o) = &reference {
                self.table
                    .push(pgbench_row(&format!("pgbench debit, {label}"), o, ""));
            }
            self.targets.push(match ratio {
                Some(r) if !hot => format!(
                    "[{}] spends on many accounts ≥ 0.6 × pgbench's debit: {:.0} vs {:.0} → {r:.2}",
                    if r >= 0.6 { "HELD" } else { "MISSED" },
                    report.rps(),
                    reference.as_ref().map_or(0.0, |o| o.tps)
                ),
                Some(r) => format!(
                    "spends on one hot account: {:.0}/s = {r:.2} × pgbench's debit on it (reference)",
                    report.rps()
                ),
                None => format!("spends, {label}: {:.0}/s (no pgbench reference)", report.rps()),
            });
        }
        // Never below zero, and Σ ledger per account is still the balance the API reports.
        let negative = stack::text(
            &mut self.conn,
            &format!(
                "SELECT count(*)::text AS v FROM (SELECT account_id FROM ledger l JOIN accounts a ON a.id = l.account_id \
                 WHERE a.email LIKE 'load-{}-%' GROUP BY account_id HAVING SUM(delta) < 0) x",
                self.tag
            ),
        )
        .await?;
        println!("  check: accounts below zero: {negative}");
        if negative != "0" {
            self.all_ok = false;
        }
        Ok(())
    }
}
