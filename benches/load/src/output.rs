//! Printing: one line per measurement as it finishes, and Markdown table rows for the
//! summary at the end.

use crate::cpu::Usage;
use crate::driver::Report;
use crate::pgbench;

pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn verdict(held: bool) -> &'static str {
    if held { "HELD" } else { "MISSED" }
}

fn with_cpu(note: &str, cpu: Option<&Usage>) -> String {
    match cpu {
        Some(u) if note.is_empty() => u.short(),
        Some(u) => format!("{note}; {}", u.short()),
        None => note.to_owned(),
    }
}

pub const TABLE_HEADER: &str = "| scenario | clients | requests | req/s | p50 | p90 | p99 | max | statuses | notes |\n|---|---|---|---|---|---|---|---|---|---|";

pub fn report_row(r: &Report, note: &str) -> String {
    format!(
        "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
        r.name,
        r.concurrency,
        r.requests,
        r.rps(),
        ms(r.pct_ms(50.0)),
        ms(r.pct_ms(90.0)),
        ms(r.pct_ms(99.0)),
        ms(r.max_ms()),
        r.statuses_text(),
        with_cpu(note, r.cpu.as_ref())
    )
}

pub fn pgbench_row(name: &str, o: &pgbench::Outcome, note: &str) -> String {
    format!(
        "| {name} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
        o.clients,
        o.processed,
        o.tps,
        ms(o.pct_ms(50.0)),
        ms(o.pct_ms(90.0)),
        ms(o.pct_ms(99.0)),
        ms(o.max_ms()),
        if o.failed == 0 {
            "ok".to_owned()
        } else {
            format!("{} failed", o.failed)
        },
        if o.ok {
            with_cpu(note, o.cpu.as_ref())
        } else {
            format!("{note} {}", o.note)
        }
    )
}

pub fn print_report(r: &Report) {
    println!(
        "  {} [{}]: {} requests in {:.2}s = {:.0} req/s; latency ms p50 {} p90 {} p99 {} max {}; status {}{}",
        r.name,
        r.concurrency,
        r.requests,
        r.elapsed.as_secs_f64(),
        r.rps(),
        ms(r.pct_ms(50.0)),
        ms(r.pct_ms(90.0)),
        ms(r.pct_ms(99.0)),
        ms(r.max_ms()),
        r.statuses_text(),
        if r.outcomes.is_empty() {
            String::new()
        } else {
            format!("; outcomes {}", r.outcomes_text())
        }
    );
    for e in &r.errors {
        println!("    transport error: {e}");
    }
    if let Some(u) = &r.cpu {
        println!(
            "    cpu (cores): {}; per request: paidonce {:.3} ms, postgres {:.3} ms",
            u.text(),
            u.app_ms_per(r.requests),
            u.pg_ms_per(r.requests)
        );
    }
}

pub fn print_pgbench(name: &str, o: &pgbench::Outcome) {
    println!(
        "  pgbench {name} [c={}]: {} transactions in {:.2}s = {:.0} tps; latency ms p50 {} p90 {} p99 {} max {}; failed {}{}",
        o.clients,
        o.processed,
        o.elapsed.as_secs_f64(),
        o.tps,
        ms(o.pct_ms(50.0)),
        ms(o.pct_ms(90.0)),
        ms(o.pct_ms(99.0)),
        ms(o.max_ms()),
        o.failed,
        if o.ok {
            String::new()
        } else {
            format!(" — {}", o.note)
        }
    );
    if let Some(u) = &o.cpu {
        println!(
            "    cpu (cores): {}; per transaction: postgres {:.3} ms",
            u.text(),
            u.pg_ms_per(o.processed as usize)
        );
    }
}
