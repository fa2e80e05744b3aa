//! The `switchyard` binary: parses arguments, sets up logging and hands each subcommand
//! to a small module that calls the library crates.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// mimalloc instead of glibc malloc: the gateway allocates many small objects per request
/// from several threads, where glibc's arenas cost about a fifth of its CPU (perf profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switchyard: a self-hosted LLM router with an OpenAI-compatible gateway.
///
/// Switchyard embeds each prompt with a local sentence encoder, predicts which model will
/// answer it well enough at the lowest cost, and forwards the request. Logs go to stderr;
/// set RUST_LOG (e.g. RUST_LOG=debug) for more detail.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Embed(commands::embed::EmbedArgs),
    #[command(subcommand)]
    Datasets(commands::datasets::DatasetsCommand),
    Classify(commands::classify::ClassifyArgs),
    Route(commands::route::RouteArgs),
    #[command(subcommand)]
    Router(commands::router::RouterCommand),
    Serve(commands::serve::ServeArgs),
    #[command(subcommand)]
    Config(commands::serve::ConfigCommand),
    #[command(subcommand)]
    Train(commands::train::TrainCommand),
    #[command(subcommand)]
    Eval(commands::eval::EvalCommand),
    #[command(subcommand)]
    Cache(commands::cache::CacheCommand),
    Calibrate(commands::calibrate::CalibrateArgs),
    Label(commands::label::LabelArgs),
    Learn(commands::learn::LearnArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Embed(args) => commands::embed::run(&args),
        Command::Datasets(command) => commands::datasets::run(&command),
        Command::Classify(args) => commands::classify::run(&args),
        Command::Route(args) => commands::route::run(&args),
        Command::Router(command) => commands::router::run(&command),
        Command::Serve(args) => commands::serve::run(&args),
        Command::Config(command) => commands::serve::check(&command),
        Command::Train(command) => commands::train::run(&command),
        Command::Eval(command) => commands::eval::run(&command),
        Command::Cache(command) => commands::cache::run(&command),
        Command::Calibrate(args) => commands::calibrate::run(&args),
        Command::Label(args) => commands::label::run(&args),
        Command::Learn(args) => commands::learn::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,switchyard=info,qdrant_edge=error")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks over every subcommand (a positional named like a
    /// generated flag, duplicate names, …), which otherwise fire only when that
    /// subcommand's arguments are parsed.
    #[test]
    fn the_command_line_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
