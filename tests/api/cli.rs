//! The binary itself: migrate, reconcile, the embedded database, startup refusals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestDb;

fn paidonce() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paidonce"));
    for var in [
        "DATABASE_URL",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "ADMIN_PASSWORD",
        "PAIDONCE_DATA_DIR",
    ] {
        cmd.env_remove(var);
    }
    // No .env from the developer's checkout.
    cmd.current_dir(env!("CARGO_TARGET_TMPDIR"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

#[tokio::test]
async fn migrate_twice_is_a_no_op_the_second_time() {
    let db = TestDb::new().await; // already migrated from the template
    let out = paidonce()
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "migrations: up to date"
    );
}

#[tokio::test]
async fn instances_migrating_a_fresh_database_at_once_all_succeed() {
    let db = TestDb::empty().await;
    let racers: Vec<_> = (0..4)
        .map(|_| {
            paidonce()
                .arg("migrate")
                .env("DATABASE_URL", &db.url)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = racers
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        assert!(
            out.status.success(),
            "a migrate racing three others failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // One of them applied everything; the others found nothing left to do.
    let stdouts: Vec<String> = outs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .collect();
    let appliers = stdouts
        .iter()
        .filter(|s| s.starts_with("applied migration"))
        .count();
    let idle = stdouts
        .iter()
        .filter(|s| *s == "migrations: up to date")
        .count();
    assert_eq!((appliers, idle), (1, 3), "{stdouts:?}");
}

#[tokio::test]
async fn reconcile_prints_its_report_and_exits_0() {
    let db = TestDb::new().await;
    let out = paidonce()
        .arg("reconcile")
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The sandbox lists its own (here: no) events for the catch-up.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "events: listed 0, applied 0, duplicate 0, errors 0\nreconciled: checked 0, changed 0, errors 0"
    );
}

#[test]
fn help_lists_the_commands() {
    let out = paidonce().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "migrate", "reconcile"] {
        assert!(text.contains(word), "{text}");
    }
}

#[tokio::test]
async fn serve_with_a_stripe_key_but_no_webhook_secret_refuses_to_start() {
    let db = TestDb::new().await;
    let out = paidonce()
        .env("DATABASE_URL", &db.url)
        .env("STRIPE_SECRET_KEY", "sk_test_should_not_leak")
        .env("PAIDONCE_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STRIPE_WEBHOOK_SECRET"), "{err}");
    assert!(
        !err.contains("sk_test_should_not_leak"),
        "the key must not be printed"
    );
}

#[allow(
    clippy::zombie_processes,
    reason = "the child is handed to the caller, which waits for it"
)]
/// Starts `paidonce` on the embedded database, returns (child, address, stdout lines so far).
fn start_embedded(data_dir: &std::path::Path) -> (std::process::Child, String, Vec<String>) {
    let mut cmd = paidonce();
    cmd.env("PAIDONCE_DATA_DIR", data_dir);
    start(cmd)
}

#[allow(
    clippy::zombie_processes,
    reason = "the child is handed to the caller, which waits for it"
)]
/// Starts a configured `paidonce serve` and waits for its `listening on` line.
fn start(mut cmd: Command) -> (std::process::Child, String, Vec<String>) {
    let mut child = cmd
        .env("PAIDONCE_BIND", "127.0.0.1:0")
        .env("RECONCILE_INTERVAL_SECS", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("paidonce exited or hung before listening: {lines:?}");
        }
        let line = line.trim().to_owned();
        if let Some(addr) = line.strip_prefix("listening on ") {
            let addr = addr.to_owned();
            lines.push(line);
            return (child, addr, lines);
        }
        lines.push(line);
    }
}

fn stop(child: &mut std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful stop exits 0, got {status}");
}

#[tokio::test]
async fn the_embedded_database_starts_restarts_and_keeps_its_data() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("embedded-{}", uuid::Uuid::new_v4().simple()));
    let client = reqwest::Client::new();

    let (mut child, addr, lines) = start_embedded(&dir);
    assert!(
        lines.iter().any(|l| l.starts_with("admin password: ")),
        "{lines:?}"
    );
    let order: serde_json::Value = client
        .post(format!("{addr}/api/orders"))
        .json(&serde_json::json!({"email": "embedded@example.com", "pack_id": "starter"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    stop(&mut child);
    assert!(
        !dir.join("postgres/postmaster.pid").exists(),
        "the embedded server stopped with us"
    );

    // A crash leaves a stale postmaster.pid behind; the next start must cope.
    std::fs::write(dir.join("postgres/postmaster.pid"), "999999\n").unwrap();
    let (mut child, addr, _) = start_embedded(&dir);
    let res = client
        .get(format!("{addr}/api/orders/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the data survived the restart");
    stop(&mut child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn counters_recorded_before_the_first_scrape_are_kept() {
    let db = TestDb::new().await;
    let mut cmd = paidonce();
    cmd.env("DATABASE_URL", &db.url)
        .env("STRIPE_WEBHOOK_SECRET", "whsec_x");
    let (mut child, addr, _) = start(cmd);
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{addr}/webhooks/stripe"))
        .header("Stripe-Signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let text = client
        .get(format!("{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stop(&mut child);
    assert!(
        text.lines()
            .any(|l| l.starts_with("webhook_signature_failures_total") && l.ends_with(" 1")),
        "the failure before the first scrape is counted: {text}"
    );
}

#[tokio::test]
async fn api_keys_are_printed_once_listed_without_the_key_and_revoked() {
    let db = TestDb::new().await;
    let run = |args: &[&str]| {
        let out = paidonce()
            .args(args)
            .env("DATABASE_URL", &db.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let created = run(&["api-key", "create", "--name", "shop app"]);
    let key = created
        .lines()
        .find_map(|l| l.strip_prefix("api key: "))
        .expect("the key, once")
        .to_owned();
    assert!(key.starts_with("po_") && key.len() > 60, "{key}");
    let id = created
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    let listed = run(&["api-key", "list"]);
    assert!(
        listed.contains(&id) && listed.contains("shop app") && listed.contains("last used never")
    );
    let secret = key.rsplit('_').next().unwrap();
    assert!(!listed.contains(secret), "the list never shows the key");
    assert_eq!(
        run(&["api-key", "revoke", &id]).trim(),
        format!("revoked {id}")
    );
    assert!(run(&["api-key", "list"]).contains("revoked"));
}
