//! The `goop2` binary: parse the command line and run one mode.

use std::process::ExitCode;

use clap::Parser;
use goop2::cli::{Cli, Command};
use goop2::modes;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { dir, label } => {
            let scaffold = modes::init::run(&dir, label)?;
            println!("Created {}", scaffold.config_path.display());
            println!("Peer ID: {}", scaffold.peer_id);
            println!("Starter page: {}", scaffold.site_index.display());
        }
        Command::HashPassword => println!("{}", modes::hash_password::run()?),
    }
    Ok(())
}
