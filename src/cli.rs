//! The `paidonce` command line (SPEC §1).

use std::io::Write;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use url::Url;

use crate::config::Config;
use crate::startup::{Application, Database, build_state};

#[derive(Debug, Parser)]
#[command(
    name = "paidonce",
    version,
    about = "Sells credits through Stripe PaymentIntents and marks every order paid exactly once.",
    long_about = "Sells credits through Stripe PaymentIntents and marks every order paid exactly once.\n\n\
    Configuration comes from the environment (and a .env file): DATABASE_URL, PAIDONCE_DATA_DIR, PAIDONCE_BIND,\n\
    PUBLIC_BASE_URL, STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY, STRIPE_WEBHOOK_SECRET, STRIPE_API_BASE,\n\
    WEBHOOK_TOLERANCE_SECS, ADMIN_PASSWORD, DATABASE_POOL_SIZE, RECONCILE_INTERVAL_SECS, RECONCILE_AFTER_SECS,\n\
    IDEMPOTENCY_TTL_SECS, RUST_LOG, LOG_FORMAT. See README.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run pending migrations, then serve HTTP and the background reconciler (the default)
    Serve,
    /// Run pending migrations and exit
    Migrate,
    /// Run one reconciliation pass, print what changed, and exit
    Reconcile,
    /// Manage keys for the credits API (/api/v1)
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key; it is printed once, as `api key: <key>` (only a hash is stored)
    Create {
        /// What the key is for, e.g. the merchant application's name
        #[arg(long)]
        name: String,
    },
    /// List keys: id, name, created, last used (never the key)
    List,
    /// Revoke a key at once, on every instance
    Revoke {
        /// The key's id, as `api-key list` shows it
        id: String,
    },
}

pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::Reconcile => reconcile(config).await,
        Command::ApiKey(command) => api_key(config, command).await,
    }
}

async fn api_key(config: Config, command: ApiKeyCommand) -> anyhow::Result<()> {
    let database = Database::open(&config).await?;
    let result = async {
        crate::db::run_migrations(&database.url).await?;
        let base = Url::parse(&format!("http://{}", config.bind))?;
        let state = build_state(config, &database.url, base).await?;
        match command {
            ApiKeyCommand::Create { name } => {
                let (id, key) = crate::credits::create_key(&state, &name).await?;
                Ok(vec![
                    format!("api key: {}", key.expose_secret()),
                    format!("id: {id}"),
                ])
            }
            ApiKeyCommand::List => {
                let mut conn = state.db.get().await?;
                let keys = crate::db::api_keys::all(&mut conn).await?;
                if keys.is_empty() {
                    return Ok(vec!["no api keys".to_owned()]);
                }
                Ok(keys.iter().map(crate::credits::key_line).collect())
            }
            ApiKeyCommand::Revoke { id } => {
                let id = uuid::Uuid::try_parse(id.trim()).map_err(|_| {
                    anyhow::anyhow!("{id:?} is not a key id (see `paidonce api-key list`)")
                })?;
                let mut conn = state.db.get().await?;
                if crate::db::api_keys::revoke(&mut conn, id).await? {
                    Ok(vec![format!("revoked {id}")])
                } else {
                    anyhow::bail!("no active key {id}")
                }
            }
        }
    }
    .await;
    drop(database);
    for line in result? {
        println!("{line}");
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let password_generated = config.admin_password.is_none();
    let app = Application::build(config).await?;
    let state = app.state();
    let mut out = std::io::stdout().lock();
    if password_generated {
        // Printed once, to stdout only: never through the logger.
        writeln!(
            out,
            "admin password: {}",
            state.admin_password.expose_secret()
        )?;
    }
    writeln!(out, "listening on http://{}", app.local_addr())?;
    out.flush()?;
    drop(out);
    if state.config.is_sandbox() {
        tracing::info!("sandbox provider: no STRIPE_SECRET_KEY set, payments are simulated");
    }
    app.run_until_stopped().await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let database = Database::open(&config).await?;
    let applied = crate::db::run_migrations(&database.url).await?;
    drop(database);
    if applied.is_empty() {
        println!("migrations: up to date");
    } else {
        for version in &applied {
            println!("applied migration {version}");
        }
    }
    Ok(())
}

async fn reconcile(config: Config) -> anyhow::Result<()> {
    let database = Database::open(&config).await?;
    let result = async {
        crate::db::run_migrations(&database.url).await?;
        let base = match &config.public_base_url {
            Some(u) => u.clone(),
            None => Url::parse(&format!("http://{}", config.bind))?,
        };
        let state = build_state(config, &database.url, base).await?;
        crate::reconcile::reconcile_once(&state, "cli").await
    }
    .await;
    drop(database);
    for line in result?.lines() {
        println!("{line}");
    }
    Ok(())
}
