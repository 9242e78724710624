//! `itsm`: run the whole suite (`up`), one service (`serve`), migrations, dev tokens, and a
//! client for people (`itsm cmdb ci list`).

mod bench;
mod client;
mod suite;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use itsm_runtime::Settings;
use itsm_runtime::config::EnvSource;

/// mimalloc rather than glibc's malloc: the services allocate and free many small buffers per
/// request on several worker threads; the CMDB import benchmark ran 10–25 % faster with it
/// (BENCHMARKS.md, "CMDB at 1,000,000 CIs"). Built without transparent huge pages (feature
/// `no_thp`; the image also sets MIMALLOC_ALLOW_THP=0), which raised resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "itsm", version, about = "Open IT service management suite")]
struct Cli {
    /// Configuration file (TOML); environment variables ITSM__SECTION__KEY override it.
    #[arg(long, global = true, env = "ITSM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in this process, each on its own port with its own SQLite file.
    Up(suite::UpArgs),
    /// Run one service, as in a container.
    Serve {
        #[arg(value_enum)]
        service: suite::ServiceName,
    },
    /// Run a service's database migrations and exit.
    Migrate {
        #[arg(value_enum)]
        service: suite::ServiceName,
    },
    /// Print the version.
    Version,
    /// Mint a development bearer token signed with the local key.
    Token(client::TokenArgs),
    /// Load benchmarks with same-run baselines (loopback only, bounded).
    Bench {
        #[command(subcommand)]
        scenario: bench::Scenario,
    },
    /// Changes: VCS changesets and the unauthorised-change report.
    Change {
        #[command(subcommand)]
        command: client::ChangeCommand,
    },
    /// Configuration items and the rest of the CMDB.
    Cmdb {
        #[command(subcommand)]
        command: client::CmdbCommand,
    },
}

fn load_settings(path: Option<&std::path::Path>) -> Result<Settings, String> {
    Settings::load(path, EnvSource::Process).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("itsm: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Version => {
                println!("itsm {}", env!("CARGO_PKG_VERSION"));
                Ok(())
            }
            Command::Up(args) => {
                let settings = load_settings(cli.config.as_deref())?;
                suite::up(settings, args).await
            }
            Command::Serve { service } => {
                let settings = load_settings(cli.config.as_deref())?;
                suite::serve_one(settings, service).await
            }
            Command::Migrate { service } => {
                let settings = load_settings(cli.config.as_deref())?;
                suite::migrate(settings, service).await
            }
            Command::Token(args) => client::token(&args),
            Command::Cmdb { command } => client::cmdb(command).await,
            Command::Change { command } => client::change(command).await,
            Command::Bench { scenario } => bench::run(scenario).await,
        }
    });
    // Shut the runtime down here, so telemetry guards dropped inside have flushed already.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("itsm: {message}");
            ExitCode::FAILURE
        }
    }
}
