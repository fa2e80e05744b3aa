//! Replaying queries through a semantic cache, as the gateway would have answered them:
//! plain prompt lines, or a gateway's traffic log (each request in its own tenant's and
//! route's scope, at its logged cost). The hit rate as the queries arrive, and the money
//! the hits would have saved. `switchyard eval cache --queries` prints it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use switchyard_cache::{Cache, CacheError, CacheScope, Found, Method};

/// Why a replay cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("the replay needs a tokio runtime: {0}")]
    Runtime(std::io::Error),
}

/// What a plain prompt line without `cost_usd` costs: its estimated input tokens
/// (characters / 4) at `price_in` and `output_tokens` at `price_out`, USD per 1M tokens.
#[derive(Debug, Clone, Copy)]
pub struct PlainCost {
    pub price_in: f64,
    pub price_out: f64,
    pub output_tokens: u64,
}

impl PlainCost {
    fn of(&self, prompt: &str) -> f64 {
        (prompt.chars().count() as f64 / 4.0 * self.price_in
            + self.output_tokens as f64 * self.price_out)
            / 1e6
    }
}

#[derive(Debug, serde::Serialize)]
pub struct ReplayPoint {
    pub queries: usize,
    pub hit_rate: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct ReplayReport {
    pub queries: usize,
    pub method: Method,
    pub threshold: f32,
    pub exact_hits: usize,
    pub semantic_hits: usize,
    pub hit_rate: f64,
    pub total_usd: f64,
    pub saved_usd: f64,
    pub curve: Vec<ReplayPoint>,
    /// Semantic hits to read by eye: the query, the stored prompt that answered it, and
    /// the score.
    pub semantic_samples: Vec<(String, String, f32)>,
    /// Traffic-log lines left out, by reason.
    pub skipped: std::collections::BTreeMap<String, usize>,
}

/// One replayed query: the prompt, what its answer cost, and the cache scope the gateway
/// would have looked it up in.
#[derive(Debug, Clone)]
pub struct Query {
    pub prompt: String,
    pub cost: f64,
    pub scope: CacheScope,
}

/// Reads queries from `path`: plain prompt lines (one scope, costs from the record or
/// `plain`), or the gateway's traffic log, replayed as the gateway would have: each request
/// in its own tenant's and route's scope, only requests the cache saw (not rejected ones,
/// nor those that bypassed it: no-cache, routes that opt out), at their logged cost. A
/// request the log shows answered from the cache cost nothing then; it is priced at the
/// mean logged cost of its route's answered requests. Returns the queries and the lines
/// left out, by reason.
pub fn read_queries(
    path: &Path,
    plain: &PlainCost,
) -> Result<(Vec<Query>, BTreeMap<String, usize>), ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut queries = Vec::new();
    let mut skipped = BTreeMap::<String, usize>::new();
    let mut cached: Vec<usize> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |message: &str| ReplayError::Line {
            path: path.to_owned(),
            line: i + 1,
            message: message.to_owned(),
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|_| at("not JSON"))?;
        if v.get("request_id").is_some() && v.get("status").is_some() {
            match traffic_query(&v) {
                Ok((query, served_from_cache)) => {
                    if served_from_cache {
                        cached.push(queries.len());
                    }
                    queries.push(query);
                }
                Err(why) => *skipped.entry(why.to_owned()).or_default() += 1,
            }
            continue;
        }
        queries.push(plain_query(&v, plain).ok_or_else(|| at("no \"prompt\" or \"text\" string"))?);
    }
    price_cached(&mut queries, &cached);
    Ok((queries, skipped))
}

/// A plain line (`{"prompt": ...}` or `{"text": ...}`, optionally with `cost_usd`).
fn plain_query(v: &serde_json::Value, plain: &PlainCost) -> Option<Query> {
    let prompt = v
        .get("prompt")
        .or_else(|| v.get("text"))
        .and_then(serde_json::Value::as_str)?;
    let cost = v
        .get("cost_usd")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| plain.of(prompt));
    let scope = CacheScope {
        tenant: "replay".into(),
        route: "auto".into(),
        fingerprint: "-".into(),
    };
    Some(Query {
        prompt: prompt.to_owned(),
        cost,
        scope,
    })
}

/// A traffic-log line as a query, and whether the gateway answered it from the cache; or
/// why it is left out.
fn traffic_query(v: &serde_json::Value) -> Result<(Query, bool), &'static str> {
    let status = v["status"].as_u64().unwrap_or(0);
    if !(200..300).contains(&status) || !v["error"].is_null() {
        return Err("the request was rejected or failed");
    }
    let cache = v["cache"].as_str().unwrap_or("bypass");
    if cache == "bypass" {
        return Err(
            "the request bypassed the cache (no-cache, a route that opts out, or the cache off)",
        );
    }
    let Some(prompt) = v["prompt"].as_str() else {
        return Err("the prompt was not logged (log_prompts = false)");
    };
    let served_from_cache = cache == "hit" || cache == "semantic_hit";
    let cost = v["cost_usd"].as_f64();
    if cost.is_none() && !served_from_cache {
        return Err("no logged cost");
    }
    let route = v["route"]
        .as_str()
        .or_else(|| v["requested"].as_str())
        .unwrap_or("-");
    let scope = CacheScope {
        tenant: v["tenant"].as_str().unwrap_or("-").to_owned(),
        route: route.to_owned(),
        fingerprint: "-".into(),
    };
    let query = Query {
        prompt: prompt.to_owned(),
        cost: cost.unwrap_or(0.0),
        scope,
    };
    Ok((query, served_from_cache))
}

/// Prices queries the gateway answered from its cache at the mean cost of their route's
/// other queries.
fn price_cached(queries: &mut [Query], cached: &[usize]) {
    let mut is_cached = vec![false; queries.len()];
    for &i in cached {
        is_cached[i] = true;
    }
    let mut by_route = BTreeMap::<String, (f64, usize)>::new();
    for (q, cached) in queries.iter().zip(&is_cached) {
        if !cached {
            let e = by_route.entry(q.scope.route.clone()).or_default();
            e.0 += q.cost;
            e.1 += 1;
        }
    }
    for &i in cached {
        let route = &queries[i].scope.route;
        queries[i].cost = by_route
            .get(route)
            .map_or(0.0, |(sum, n)| sum / (*n).max(1) as f64);
    }
}

impl ReplayReport {
    fn new(
        queries: usize,
        method: Method,
        threshold: f32,
        skipped: BTreeMap<String, usize>,
    ) -> Self {
        Self {
            queries,
            method,
            threshold,
            exact_hits: 0,
            semantic_hits: 0,
            hit_rate: 0.0,
            total_usd: 0.0,
            saved_usd: 0.0,
            curve: Vec::new(),
            semantic_samples: Vec::new(),
            skipped,
        }
    }

    /// Counts one query: a hit saves its cost (and a semantic one is kept to read, up to
    /// 20); a miss costs it.
    fn count(&mut self, query: &Query, found: Option<&Found>, method: Method) {
        self.total_usd += query.cost;
        let Some(f) = found else {
            return;
        };
        self.saved_usd += query.cost;
        if f.exact {
            self.exact_hits += 1;
            return;
        }
        self.semantic_hits += 1;
        if self.semantic_samples.len() < 20 {
            let score = f.judgement.score(method).unwrap_or(f.judgement.cosine);
            self.semantic_samples
                .push((query.prompt.clone(), f.entry.text.clone(), score));
        }
    }

    pub fn hits(&self) -> usize {
        self.exact_hits + self.semantic_hits
    }

    /// The report as text: the figures, what was left out and why, the semantic hits.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} queries, method {} at {:.2}: {} exact + {} semantic hits ({:.1}%), saved ${:.4} of ${:.4}",
            self.queries,
            self.method.name(),
            self.threshold,
            self.exact_hits,
            self.semantic_hits,
            100.0 * self.hit_rate,
            self.saved_usd,
            self.total_usd
        )?;
        for (why, n) in &self.skipped {
            writeln!(out, "  skipped {n}: {why}")?;
        }
        for (q, stored, score) in &self.semantic_samples {
            writeln!(out, "  {score:.3}  {q:?}  <=  {stored:?}")?;
        }
        Ok(())
    }
}

/// Replays `queries` (with their `vectors`) through `cache`, in order: a miss is stored, so
/// later near-duplicates hit it. The hit-rate curve has about 50 points; `tick` is called
/// once per query (a progress bar).
pub fn replay(
    queries: &[Query],
    vectors: Vec<Vec<f32>>,
    cache: &Cache,
    skipped: BTreeMap<String, usize>,
    tick: &dyn Fn(),
) -> Result<ReplayReport, ReplayError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ReplayError::Runtime)?;
    let method = cache.settings().method;
    let mut r = ReplayReport::new(queries.len(), method, cache.settings().threshold, skipped);
    let every = (queries.len() / 50).max(1);
    for (i, (query, v)) in queries.iter().zip(vectors).enumerate() {
        let (q, scope) = (&query.prompt, &query.scope);
        let found = rt.block_on(cache.lookup(scope, q, &v, None, None))?;
        r.count(query, found.as_ref(), method);
        if found.is_none() {
            rt.block_on(cache.insert(scope.clone(), q, v, String::new(), "replay"))?;
        }
        if (i + 1) % every == 0 || i + 1 == queries.len() {
            let hit_rate = r.hits() as f64 / (i + 1) as f64;
            r.curve.push(ReplayPoint {
                queries: i + 1,
                hit_rate,
            });
        }
        tick();
    }
    r.hit_rate = r.hits() as f64 / r.queries.max(1) as f64;
    Ok(r)
}
