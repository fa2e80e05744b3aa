//! `switchyard router promote DIR | history | rollback VERSION`: the router of a running
//! gateway (and, with shared state, of every replica).

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};

/// Manage the router of a running gateway.
#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    Promote(PromoteArgs),
    History(HistoryArgs),
    Rollback(RollbackArgs),
}

/// Serve with the scorer in DIR from now on, without a restart or a dropped request.
///
/// Calls the gateway's POST /admin/router with the admin key (the value of the env var
/// that `[router] admin_key_env` names). The gateway loads DIR (a scorer trained on its
/// classifier heads, e.g. by `train scorer` on imported traffic), checks that it knows, or
/// has priors for, every model its learned routes use, and swaps it in; a scorer that fails
/// is refused and the running router stays. The traffic log's router_version shows which
/// router served each request. A restart (or SIGHUP) serves the scorer the config names
/// again: point `[router] scorer` at DIR to keep it.
///
/// Example: SWITCHYARD_ADMIN_KEY=... switchyard router promote runs/round-3 --url http://127.0.0.1:8080
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The scorer directory (manifest.json, weights.json). A path the gateway can read.
    pub dir: PathBuf,

    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// List the routers promoted and rolled back, newest first, and the one serving.
///
/// Reads GET /admin/router/history. The history lives in the shared state (`[state] url`):
/// every replica sees the same one, and each version's files are kept there, so any of
/// them can be served again with `switchyard router rollback VERSION`.
///
/// Example: SWITCHYARD_ADMIN_KEY=... switchyard router history --url http://127.0.0.1:8080
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub gateway: GatewayArgs,

    /// Print the JSON the gateway answered instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Serve a router from the history again, on every replica.
///
/// Calls POST /admin/router/rollback: the gateway loads VERSION's files from the shared
/// state, checks them against their checksum, serves them, and publishes the version so
/// the other replicas follow within `[state] router_poll_ms`. A version that fails to load
/// is refused and the running router stays.
///
/// Example: SWITCHYARD_ADMIN_KEY=... switchyard router rollback 3f2a9c --url http://127.0.0.1:8080
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The version to serve (from `switchyard router history`).
    #[arg(value_name = "VERSION")]
    pub router_version: String,

    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// Which gateway, and where its admin key is.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// The env var holding the admin key (never the key itself).
    #[arg(long, default_value = "SWITCHYARD_ADMIN_KEY")]
    pub admin_key_env: String,
}

pub fn run(command: &RouterCommand) -> anyhow::Result<ExitCode> {
    match command {
        RouterCommand::Promote(args) => promote(args),
        RouterCommand::History(args) => history(args),
        RouterCommand::Rollback(args) => rollback(args),
    }
}

fn promote(args: &PromoteArgs) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(&args.dir)?;
    anyhow::ensure!(
        dir.join(switchyard_scorer::MANIFEST_FILE).is_file(),
        "{}: no scorer here (manifest.json missing)",
        dir.display()
    );
    let body = admin_call(
        &args.gateway,
        "/admin/router",
        Some(serde_json::json!({"scorer": dir})),
    )?;
    tracing::info!(
        router_version = body["router_version"].as_str().unwrap_or_default(),
        previous = body["previous"].as_str().unwrap_or_default(),
        "promoted"
    );
    print_line(body["router_version"].as_str().unwrap_or_default())
}

fn history(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let body = admin_call(&args.gateway, "/admin/router/history", None)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &body)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let serving = body["serving"].as_str().unwrap_or("-");
    writeln!(out, "serving: {serving}")?;
    writeln!(
        out,
        "{:<20} {:<9} {:>10}  {:<12} sha256",
        "version", "action", "bytes", "at (unix s)"
    )?;
    for e in body["history"].as_array().into_iter().flatten() {
        let sha = e["sha256"].as_str().unwrap_or_default();
        writeln!(
            out,
            "{:<20} {:<9} {:>10}  {:<12} {}",
            e["version"].as_str().unwrap_or_default(),
            e["action"].as_str().unwrap_or_default(),
            e["bytes"].as_u64().unwrap_or_default(),
            e["at"].as_u64().unwrap_or_default(),
            &sha[..sha.len().min(16)],
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn rollback(args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let body = admin_call(
        &args.gateway,
        "/admin/router/rollback",
        Some(serde_json::json!({"version": args.router_version})),
    )?;
    print_line(body["router_version"].as_str().unwrap_or_default())
}

fn print_line(text: &str) -> anyhow::Result<ExitCode> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(ExitCode::SUCCESS)
}

/// Calls an admin endpoint of the gateway with the admin key: POST with `body`, else GET.
pub(super) fn admin_call(
    gateway: &GatewayArgs,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let key = std::env::var(&gateway.admin_key_env)
        .ok()
        .filter(|k| !k.is_empty())
        .with_context(|| {
            format!(
                "the environment variable {} is not set: export the gateway's admin key in it, or name another with --admin-key-env",
                gateway.admin_key_env
            )
        })?;
    switchyard_providers::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}{path}", gateway.url.trim_end_matches('/'));
    let (status, answer) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let request = match &body {
            Some(b) => client.post(&url).json(b),
            None => client.get(&url),
        };
        let response = request
            .bearer_auth(key)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        anyhow::Ok((status, answer))
    })?;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{url}: {status}: {message}");
    Ok(answer)
}
