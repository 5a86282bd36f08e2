//! The in-process apps' logs, kept in memory (and echoed to stderr with TEST_LOG, which
//! also sets the filter; `info` otherwise, what a shop runs with) so that no test can
//! leak a secret into them unnoticed.

use std::io::Write;
use std::sync::{LazyLock, Mutex, Once};

use crate::helpers::{ADMIN_PASSWORD, WEBHOOK_SECRET};

static LINES: LazyLock<Mutex<Log>> = LazyLock::new(Default::default);

#[derive(Default)]
struct Log {
    bytes: Vec<u8>,
    scanned: usize,
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LINES.lock().unwrap().bytes.extend_from_slice(buf);
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("TEST_LOG")
            .ok()
            .filter(|f| !f.is_empty() && f != "1")
            .unwrap_or_else(|| "info".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(|| Capture)
            .with_ansi(false)
            .try_init();
    });
}

/// What a secret looks like in this suite: the configured ones, and the shapes of the
/// ones the app makes or is handed (client secrets, API keys, webhook and API keys).
pub fn secrets_in(text: &str) -> Vec<String> {
    let mut found: Vec<String> = [
        WEBHOOK_SECRET,
        ADMIN_PASSWORD,
        "whsec_",
        "sk_test_",
        "sk_live_",
        "_secret_",
    ]
    .into_iter()
    .filter(|s| text.contains(s))
    .map(str::to_owned)
    .collect();
    // po_<32 hex>_<secret>: an API key, whole or in part.
    for (at, _) in text.match_indices("po_") {
        let rest = &text.as_bytes()[at + 3..];
        if rest.len() > 33 && rest[..32].iter().all(u8::is_ascii_hexdigit) && rest[32] == b'_' {
            found.push(format!("an API key at byte {at}"));
        }
    }
    found
}

/// Fails if the log written since the last scan carries a secret.
pub fn assert_no_secret_since_last_scan() {
    let mut log = LINES.lock().unwrap();
    // Back up a little, so a secret written across the last scan's end is still whole.
    let from = log.scanned.saturating_sub(256);
    let text = String::from_utf8_lossy(&log.bytes[from..]).into_owned();
    log.scanned = log.bytes.len();
    drop(log);
    let found = secrets_in(&text);
    assert!(
        found.is_empty(),
        "a secret in the test apps' log: {found:?}\n{}",
        text.lines()
            .filter(|l| !secrets_in(l).is_empty())
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Whether any test app has logged `needle` so far.
pub fn contains(needle: &str) -> bool {
    let log = LINES.lock().unwrap();
    String::from_utf8_lossy(&log.bytes).contains(needle)
}
