//! Where the CPU went during a scenario, from /proc: this harness (the HTTP client, the
//! notification receiver, and pgbench once it has exited and been reaped), each paidonce
//! instance, the Postgres cluster (postmaster, its live children, and the children it
//! already reaped), and the rest of the machine (anything else running: other builds make
//! numbers noisy).

use std::time::Instant;

/// Clock ticks per second for /proc times.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// (ppid, utime + stime, cutime + cstime) of a process, in ticks.
fn stat(pid: &str) -> Option<(u32, u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((u32::try_from(n(1)?).ok()?, n(11)? + n(12)?, n(13)? + n(14)?))
}

/// The postmaster of a local server backend `pid` (its parent, when that is `postgres`).
pub fn postmaster_of(backend: u32) -> Option<u32> {
    let (ppid, _, _) = stat(&backend.to_string())?;
    let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).ok()?;
    (comm.trim() == "postgres").then_some(ppid)
}

/// Busy and total ticks of the whole machine (/proc/stat).
fn machine() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

#[derive(Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    harness: u64,
    reaped: u64,
    a: u64,
    b: u64,
    c: u64,
    postgres: u64,
    busy: u64,
    total: u64,
}

/// The processes to watch.
#[derive(Clone, Copy)]
pub struct Meter {
    pub a: u32,
    pub b: u32,
    /// A third instance while a scenario runs one (the notification scenario's C), else 0.
    pub c: u32,
    /// 0 when the database is not a local cluster we can see.
    pub postmaster: u32,
}

impl Meter {
    pub fn snapshot(&self) -> Snapshot {
        let me = stat("self").unwrap_or_default();
        let proc_ticks = |pid: u32| stat(&pid.to_string()).map_or(0, |s| s.1);
        let mut postgres = 0;
        if self.postmaster != 0 {
            if let Some((_, own, reaped)) = stat(&self.postmaster.to_string()) {
                postgres = own + reaped;
            }
            if let Ok(dir) = std::fs::read_dir("/proc") {
                for e in dir.flatten() {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    if !name.bytes().all(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    if let Some((ppid, own, _)) = stat(&name)
                        && ppid == self.postmaster
                    {
                        postgres += own;
                    }
                }
            }
        }
        let (busy, total) = machine();
        Snapshot {
            at: Instant::now(),
            harness: me.1,
            reaped: me.2,
            a: proc_ticks(self.a),
            b: proc_ticks(self.b),
            c: if self.c == 0 { 0 } else { proc_ticks(self.c) },
            postgres,
            busy,
            total,
        }
    }
}

/// CPU used between two snapshots, in cores (CPU seconds per wall second).
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub secs: f64,
    pub harness: f64,
    pub pgbench: f64,
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub postgres: f64,
    pub other: f64,
    pub busy: f64,
    pub cores: f64,
}

impl Usage {
    pub fn between(x: &Snapshot, y: &Snapshot) -> Usage {
        let secs = y.at.duration_since(x.at).as_secs_f64().max(1e-3);
        let tps = ticks_per_sec();
        let cores = |ticks: u64| ticks as f64 / tps / secs;
        let harness = cores(y.harness.saturating_sub(x.harness));
        let pgbench = cores(y.reaped.saturating_sub(x.reaped));
        let a = cores(y.a.saturating_sub(x.a));
        let b = cores(y.b.saturating_sub(x.b));
        let c = cores(y.c.saturating_sub(x.c));
        let postgres = cores(y.postgres.saturating_sub(x.postgres));
        let busy = cores(y.busy.saturating_sub(x.busy));
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let machine_cores = (y.total.saturating_sub(x.total)) as f64 / tps / secs;
        Usage {
            secs,
            harness,
            pgbench,
            a,
            b,
            c,
            postgres,
            other: (busy - harness - pgbench - a - b - c - postgres).max(0.0),
            busy,
            cores: if machine_cores > 0.5 {
                machine_cores
            } else {
                n
            },
        }
    }

    /// CPU milliseconds of paidonce (every instance) per request.
    pub fn app_ms_per(&self, requests: usize) -> f64 {
        if requests == 0 {
            return 0.0;
        }
        (self.a + self.b + self.c) * self.secs * 1000.0 / requests as f64
    }

    pub fn pg_ms_per(&self, requests: usize) -> f64 {
        if requests == 0 {
            return 0.0;
        }
        self.postgres * self.secs * 1000.0 / requests as f64
    }

    pub fn text(&self) -> String {
        let mut parts = vec![format!("client {:.2}", self.harness)];
        if self.pgbench > 0.005 {
            parts.push(format!("pgbench {:.2}", self.pgbench));
        }
        if self.a > 0.005 {
            parts.push(format!("paidonce A {:.2}", self.a));
        }
        if self.b > 0.005 {
            parts.push(format!("paidonce B {:.2}", self.b));
        }
        if self.c > 0.005 {
            parts.push(format!("paidonce C {:.2}", self.c));
        }
        parts.push(format!("postgres {:.2}", self.postgres));
        parts.push(format!("other {:.2}", self.other));
        format!(
            "{} — machine {:.2} of {:.0} cores busy",
            parts.join(", "),
            self.busy,
            self.cores
        )
    }

    /// Short form for the table: client/app/postgres/other cores.
    pub fn short(&self) -> String {
        format!(
            "cpu c{:.1}/app{:.1}/pg{:.1}/oth{:.1}",
            self.harness + self.pgbench,
            self.a + self.b + self.c,
            self.postgres,
            self.other
        )
    }
}
