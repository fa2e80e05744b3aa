//! `switchyard cache`: look after the embedded cache on disk while no gateway uses it
//! (a running gateway's cache is invalidated with `POST /v1/cache/invalidate`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use switchyard_cache::{EdgeCache, Invalidate, SemanticCache};

/// Inspect or empty the embedded semantic cache (Qdrant Edge on disk).
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// How many entries the cache holds and how many are indexed.
    Stats(PathArgs),
    /// Remove entries: one tenant's, one route's, one entry, or all.
    ///
    /// Example: switchyard cache invalidate --route auto
    Invalidate(InvalidateArgs),
    /// Remove expired entries and build the vector index over new ones.
    Compact(PathArgs),
}

#[derive(Debug, Args)]
pub struct PathArgs {
    /// The cache directory (`[cache] path` in the config).
    #[arg(long, default_value = "data/cache")]
    pub path: PathBuf,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["tenant", "route", "id", "all"])))]
pub struct InvalidateArgs {
    #[command(flatten)]
    pub path: PathArgs,
    /// Every entry of this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Every entry of this route or pinned model.
    #[arg(long)]
    pub route: Option<String>,
    /// One entry (its id is in the x-switchyard-cache-entry header of a hit).
    #[arg(long)]
    pub id: Option<String>,
    /// Everything.
    #[arg(long)]
    pub all: bool,
}

pub fn run(command: &CacheCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let dir = match command {
        CacheCommand::Stats(a) | CacheCommand::Compact(a) => &a.path,
        CacheCommand::Invalidate(a) => &a.path.path,
    };
    let cache = EdgeCache::open_existing(dir)?;
    let mut out = std::io::stdout().lock();
    match command {
        CacheCommand::Stats(_) => {
            let (points, indexed) = cache.counts();
            writeln!(
                out,
                "{}: {points} entries, {indexed} in the vector index",
                dir.display()
            )?;
        }
        CacheCommand::Invalidate(a) => {
            let what = match (&a.tenant, &a.route, &a.id) {
                (Some(t), _, _) => Invalidate::Tenant(t.clone()),
                (_, Some(r), _) => Invalidate::Route(r.clone()),
                (_, _, Some(id)) => Invalidate::Entry(id.clone()),
                _ => Invalidate::All,
            };
            let removed = runtime.block_on(cache.invalidate(what))?;
            runtime.block_on(cache.flush())?;
            writeln!(out, "removed {removed} entries")?;
        }
        CacheCommand::Compact(_) => {
            let purged = runtime.block_on(cache.purge_expired(switchyard_cache::now_ms()))?;
            runtime.block_on(cache.optimize())?;
            runtime.block_on(cache.flush())?;
            let (points, indexed) = cache.counts();
            writeln!(
                out,
                "purged {purged} expired entries; {points} entries, {indexed} indexed"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
