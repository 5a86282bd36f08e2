//! A private Postgres cluster for when `DATABASE_URL` is unset (SPEC §2): found on this
//! machine, initialised once under `<data dir>/postgres`, listening on a Unix socket only,
//! reused on the next start and stopped on exit. Postgres refuses to run as root, so as
//! root the server runs as the `postgres` system user and owns its directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Uid, User};

const PORT: u16 = 5432;
/// Unix socket paths are limited to about 107 bytes; past this we use a short dir in /tmp.
const MAX_SOCKET_DIR_LEN: usize = 90;
const INSTALL_HINT: &str = "no PostgreSQL server binaries (initdb, pg_ctl, postgres) were found on PATH, \
through `pg_config --bindir`, or under /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: \
`apt-get install postgresql`; macOS: `brew install postgresql@15`) or set DATABASE_URL to an existing database.";

/// The running cluster; it stops (when this process started it) as it is dropped.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    cluster_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<(Uid, Gid)>,
    /// True while this process has a server it started (and so must stop).
    started_here: AtomicBool,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra `-c name=value` server settings (tests turn fsync off).
    pub settings: Vec<(String, String)>,
}

impl EmbeddedPostgres {
    /// Initialises (once) and starts the cluster under `data_dir/postgres`, or reuses a
    /// server already running there. Safe against a stale `postmaster.pid`.
    pub fn start(data_dir: &Path, options: &Options) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir().ok_or_else(|| anyhow::anyhow!(INSTALL_HINT))?;
        fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize()?;
        let run_as = unprivileged_user()?;
        if run_as.is_some() {
            // The server user must be able to reach its directory.
            fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o755))?;
        }
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join("postgres.lock"))?;
        // Two processes starting on one data dir: the second waits, then reuses.
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("locking the data dir: {e}"))?;

        let cluster_dir = data_dir.join("postgres");
        let socket_dir = socket_dir_for(&cluster_dir);
        let pg = EmbeddedPostgres {
            cluster_dir,
            socket_dir,
            bin_dir,
            run_as,
            started_here: AtomicBool::new(false),
        };
        if !pg.cluster_dir.join("PG_VERSION").exists() {
            pg.init()?;
        }
        if pg.is_running() {
            tracing::info!(dir = %pg.cluster_dir.display(), "reusing the embedded Postgres already running");
        } else {
            pg.start_server(options)?;
            pg.started_here.store(true, Ordering::SeqCst);
        }
        Ok(pg)
    }

    /// URL of database `name` on this cluster (Unix socket, user `postgres`, trust auth).
    pub fn url(&self, name: &str) -> String {
        let host: String =
            url::form_urlencoded::byte_serialize(self.socket_dir.to_string_lossy().as_bytes())
                .collect();
        format!("postgres://postgres@{host}:{PORT}/{name}")
    }

    /// Creates database `name` unless it exists (over a connection: no client binaries needed).
    pub async fn ensure_database(&self, name: &str) -> anyhow::Result<()> {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("database name must be letters, digits and underscores: {name:?}");
        }
        let mut conn = AsyncPgConnection::establish(&self.url("postgres"))
            .await
            .context("connecting to the embedded Postgres")?;
        let exists = diesel::sql_query("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(name)
            .execute(&mut conn)
            .await?
            == 1;
        if !exists
            && let Err(e) = diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
        {
            // Another process may have created it between our two statements.
            if !e.to_string().contains("already exists") {
                return Err(e).context("creating the database");
            }
        }
        Ok(())
    }

    /// Stops the server if this process started it, once. Dropping does this; a value
    /// that is never dropped (a `static`) calls it at exit.
    pub fn stop(&self) {
        if !self.started_here.swap(false, Ordering::SeqCst) {
            return;
        }
        let dir = self.cluster_dir.to_string_lossy().into_owned();
        match self.run_pg(
            self.bin_dir.join("pg_ctl"),
            &["stop", "-D", &dir, "-m", "fast", "-w", "-t", "30"],
        ) {
            Ok(o) if o.status.success() => tracing::info!("embedded Postgres stopped"),
            Ok(o) => {
                tracing::warn!(stderr = %String::from_utf8_lossy(&o.stderr).trim(), "stopping embedded Postgres failed")
            }
            Err(e) => tracing::warn!(error = %e, "stopping embedded Postgres failed"),
        }
    }

    fn init(&self) -> anyhow::Result<()> {
        tracing::info!(dir = %self.cluster_dir.display(), "initialising the embedded Postgres cluster (once)");
        // initdb into a scratch dir, then rename: a crash mid-initdb never leaves a half cluster.
        let scratch = self
            .cluster_dir
            .with_extension(format!("init-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(&scratch)?;
        self.give_to_server_user(&scratch)?;
        let scratch_s = scratch.to_string_lossy().into_owned();
        let out = self.run_pg(
            self.bin_dir.join("initdb"),
            &[
                "-D",
                &scratch_s,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ],
        )?;
        if !out.status.success() {
            let _ = fs::remove_dir_all(&scratch);
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if self.cluster_dir.exists() {
            // A leftover without PG_VERSION is not a cluster; keep it aside rather than delete data.
            let aside = self
                .cluster_dir
                .with_extension(format!("broken-{}", std::process::id()));
            fs::rename(&self.cluster_dir, aside)?;
        }
        fs::rename(&scratch, &self.cluster_dir)?;
        Ok(())
    }

    fn is_running(&self) -> bool {
        let dir = self.cluster_dir.to_string_lossy().into_owned();
        let running = self
            .run_pg(self.bin_dir.join("pg_ctl"), &["status", "-D", &dir])
            .map(|o| o.status.success())
            .unwrap_or(false);
        // A recycled PID can make a dead server look alive; its socket tells the truth.
        running && self.socket_dir.join(format!(".s.PGSQL.{PORT}")).exists()
    }

    fn start_server(&self, options: &Options) -> anyhow::Result<()> {
        let pid_file = self.cluster_dir.join("postmaster.pid");
        if pid_file.exists() {
            tracing::warn!("removing a stale postmaster.pid left by a crash");
            fs::remove_file(&pid_file)?;
        }
        fs::create_dir_all(&self.socket_dir)?;
        self.give_to_server_user(&self.socket_dir)?;
        let sock = self.socket_dir.to_string_lossy().into_owned();
        if sock.contains('\'') {
            bail!("the data directory path must not contain a single quote: {sock}");
        }
        let mut server_opts = format!("-c listen_addresses='' -k '{sock}' -p {PORT}");
        for (name, value) in &options.settings {
            server_opts.push_str(&format!(" -c {name}={value}"));
        }
        let dir = self.cluster_dir.to_string_lossy().into_owned();
        let log = self
            .cluster_dir
            .join("server.log")
            .to_string_lossy()
            .into_owned();
        let out = self.run_pg(
            self.bin_dir.join("pg_ctl"),
            &[
                "start",
                "-D",
                &dir,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &server_opts,
            ],
        )?;
        if !out.status.success() {
            let tail = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "starting the embedded Postgres failed: {} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        tracing::info!(dir = %dir, "embedded Postgres started");
        Ok(())
    }

    fn give_to_server_user(&self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    fn run_pg(&self, program: PathBuf, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = Command::new(&program);
        cmd.args(args)
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .current_dir(self.cluster_dir.parent().unwrap_or(Path::new("/")));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw()).env("HOME", "/tmp");
        }
        cmd.output()
            .with_context(|| format!("running {}", program.display()))
    }
}

/// When running as root: the `postgres` system user the server runs as.
fn unprivileged_user() -> anyhow::Result<Option<(Uid, Gid)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some((user.uid, user.gid))),
        _ => bail!(
            "running as root, and Postgres refuses to run as root: create a `postgres` system user \
             (it comes with the postgresql package) or set DATABASE_URL"
        ),
    }
}

fn socket_dir_for(cluster_dir: &Path) -> PathBuf {
    let len = cluster_dir.as_os_str().len();
    if len <= MAX_SOCKET_DIR_LEN {
        return cluster_dir.to_path_buf();
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cluster_dir.hash(&mut h);
    PathBuf::from(format!("/tmp/paidonce-pg-{:016x}", h.finish()))
}

/// PATH, then `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin.
pub fn find_bin_dir() -> Option<PathBuf> {
    find_bin_dir_in(
        std::env::var_os("PATH"),
        Path::new("pg_config"),
        Path::new("/usr/lib/postgresql"),
    )
}

/// `find_bin_dir` with its three places given, so the search can be tested.
pub fn find_bin_dir_in(
    path: Option<std::ffi::OsString>,
    pg_config: &Path,
    lib_root: &Path,
) -> Option<PathBuf> {
    let has_server = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(path) = path
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_server(d))
    {
        // PATH often holds symlinks (/usr/local/bin/initdb); the real dir has the rest.
        return Some(
            fs::canonicalize(dir.join("pg_ctl"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or(dir),
        );
    }
    if let Ok(out) = Command::new(pg_config).arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(lib_root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The message for a machine without Postgres; names DATABASE_URL and how to install.
pub fn install_hint() -> &'static str {
    INSTALL_HINT
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_binaries_anywhere_finds_nothing_and_the_hint_says_what_to_do() {
        let empty = std::env::temp_dir().join("paidonce-no-pg-here");
        let found = find_bin_dir_in(
            Some(empty.clone().into_os_string()),
            Path::new("/nonexistent/pg_config"),
            &empty,
        );
        assert_eq!(found, None);
        assert!(install_hint().contains("DATABASE_URL"));
        assert!(install_hint().contains("apt-get install postgresql"));
    }

    #[test]
    fn long_cluster_paths_get_a_short_socket_dir() {
        let short = Path::new("/srv/paidonce/.data/postgres");
        assert_eq!(socket_dir_for(short), short);
        let long = PathBuf::from(format!("/{}/postgres", "d".repeat(120)));
        let sock = socket_dir_for(&long);
        assert!(sock.as_os_str().len() < 40, "{}", sock.display());
        assert_eq!(sock, socket_dir_for(&long), "stable for the same cluster");
    }
}
