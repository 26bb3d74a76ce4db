//! The `airlock` binary: parses arguments, runs one command, and decides the exit code
//! in one place: 0 success or accepted, 1 rejected, 2 usage, input or operational error.

mod audit;
mod canary;
mod cli;
mod client;
mod commands;
mod demo;
mod scan;

use std::process::ExitCode;

use clap::Parser;

/// What a command concluded, when it ran to the end.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Success, or the change was accepted / passed.
    Success,
    /// The change was rejected (or failed), and the command reported it.
    Rejected,
}

fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            // clap prints help and version to stdout with success, and errors with usage.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(args.verbose);
    match commands::run(args) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Rejected) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(verbose: bool) {
    let default = if verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
