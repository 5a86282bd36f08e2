use clap::Parser;

use paidonce::cli::{self, Cli};
use paidonce::config::Config;
use paidonce::telemetry;

/// mimalloc instead of glibc's malloc: in the webhook profile at Stripe's real event size
/// glibc's malloc, free and their consolidation were a tenth of the app's CPU (a
/// webhook parses and drops a 2 KB JSON tree and a dozen statement buffers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _ = dotenvy::dotenv();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paidonce: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.log_filter, config.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paidonce: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli, config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paidonce: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
