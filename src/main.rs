//! The `gatehouse` command: parses the command line and dispatches to the
//! daemon (`run`, the default) or a one-shot command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gatehouse::cli::{self, ExplainArgs, ReplayArgs};
use gatehouse::{config, daemon};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "SMTP access-control milter for Postfix and Sendmail"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        value_name = "FILE",
        default_value = "/etc/gatehouse/gatehouse.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve milter connections (the default).
    Run,
    /// Validate the configuration and reach the directory; exit 1 on errors, 2 on warnings only.
    Check,
    /// Dry run: the decision for each recipient and the rule behind it.
    Explain(ExplainArgs),
    /// Show a user entry and its groups (nested, with the path) as gatehouse sees them.
    Lookup {
        /// A login or an address.
        key: String,
    },
    /// Decide gatehouse's JSON decision log again with this configuration
    /// (--config, the candidate) and say what would change; exit 0 nothing,
    /// 1 something, 2 errors.
    Replay(ReplayArgs),
}

fn main() -> ExitCode {
    let args = Cli::parse();
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.command.unwrap_or(Command::Run) {
        Command::Run => daemon::run(config),
        Command::Check => cli::check(&config),
        Command::Explain(x) => cli::explain(&config, &x),
        Command::Lookup { key } => cli::lookup(&config, &key),
        Command::Replay(r) => cli::replay(&config, &r),
    }
}
