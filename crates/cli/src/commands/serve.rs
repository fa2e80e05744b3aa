//! `switchyard serve` and `switchyard config check`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use switchyard_gateway::{
    ConfigSource, build_state, load_config, serve_on_threads, shutdown_signal,
};

/// Run the OpenAI-compatible gateway.
///
/// Clients point their OpenAI SDK's base URL at http://HOST:PORT/v1 and send
/// `model: "auto"` (or a route name, or a concrete model to pin it). Endpoints:
/// POST /v1/chat/completions (stream and non-stream), GET /v1/models, POST /v1/embeddings,
/// POST /v1/route (the decision without calling a model), POST /v1/feedback, GET /health,
/// GET /ready, GET /metrics (Prometheus).
///
/// Without --config, providers come from the environment: OPENAI_API_KEY (with
/// OPENAI_BASE_URL when set) adds gpt-4o-mini and gpt-4o; ANTHROPIC_API_KEY adds a small
/// and a large Claude model; the local model (SmolLM2-135M, fetched by `bash models/fetch.sh`)
/// is added as a free tier, so with no key at all `auto` still answers, offline; `auto`
/// routes over all of them with the learned router.
/// The annotated example config is switchyard.example.toml. SIGHUP reloads the config
/// file without dropping requests; SIGINT/SIGTERM stop after in-flight requests finish.
///
/// Example: switchyard serve --config switchyard.toml --listen 127.0.0.1:8080
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (see switchyard.example.toml).
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on (overrides server.listen; port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
}

/// Work with gateway configuration files.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    Check(CheckArgs),
}

/// Validate a config file: syntax, key paths, references between sections, and the API-key
/// variables it names. Exit status 0 when it would start.
///
/// Example: switchyard config check switchyard.toml
#[derive(Debug, Args)]
pub struct CheckArgs {
    pub file: PathBuf,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::Environment,
    };
    let mut config = load_config(&source)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let listen = config.server.listen;
    if config.models.is_empty() {
        tracing::warn!(
            "no models configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY, fetch the local model with `bash models/fetch.sh local-llm`, or pass --config FILE (see switchyard.example.toml); chat requests will fail until then"
        );
    }
    let threads = config.server.io_threads;
    let state = build_state(&source, config)?;
    // The one line scripts and tests wait for.
    let announce = |bound: SocketAddr| {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "switchyard listening on http://{bound}");
    };
    serve_on_threads(state, listen, threads, announce, shutdown_signal())
        .with_context(|| format!("cannot serve on {listen}"))?;
    Ok(ExitCode::SUCCESS)
}

pub fn check(command: &ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check(args) = command;
    let config = load_config(&ConfigSource::File(args.file.clone()))?;
    let (providers, models, routes, tenants) = (
        config.providers.len(),
        config.models.len(),
        config.effective_routes().len(),
        config.tenants.len(),
    );
    // Everything start-up checks: the router's artifacts, prices, scorer stand-ins, keys.
    let routed = config.router.enabled;
    let runtime = switchyard_gateway::runtime::check(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: ok — {providers} providers, {models} models, {routes} routes, {tenants} tenants",
        args.file.display(),
    )?;
    if routed {
        for m in runtime.models.values() {
            let how = match (&m.quality_like, m.quality_prior) {
                (Some(like), _) if like == &m.id => {
                    "scored by the router (it knows this model)".to_owned()
                }
                (Some(like), _) => format!("scored by the router as {like:?}"),
                (None, Some(q)) => format!("not known to the router: fixed quality prior {q}"),
                (None, None) => {
                    "not known to the router: only in order routes or pinned".to_owned()
                }
            };
            writeln!(out, "  {}: {how}", m.id)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
