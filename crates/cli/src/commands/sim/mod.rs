//! `switchyard eval loop`: the learning loop, proven in a simulated world. The real
//! gateway serves requests drawn from a world (routing records with every model's
//! outcome) through a world upstream; feedback is the world's score; between rounds the
//! traffic log is imported, a scorer retrained on it, evaluated off-policy against the
//! serving router and promoted over HTTP unless clearly worse. At the end every router is
//! compared on held-out prompts the gateway never served.

mod args;
mod gateway;
mod report;
mod world;

pub use self::args::EvalLoopArgs;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use switchyard_core::policy::Policy;
use switchyard_embed::SentenceEncoder;
use switchyard_embed::heads::ClassifierHeads;
use switchyard_eval::ope::{self, LoggedRequest};
use switchyard_learn::{CycleSetup, Gate, Verdict};
use switchyard_scorer::Scorer;
use switchyard_training::classifier::SplitMix;
use switchyard_training::scorer::{
    LoadedPrompt, RoutedPrompt, ScorerRequest, featurise, train_scorer,
};

use self::gateway::{Gateway, GatewaySetup, Served};
use self::report::{Reference, Round};
use self::world::{World, WorldOptions};
use super::progress;

/// What the rounds share.
pub(super) struct Loop<'a> {
    args: &'a EvalLoopArgs,
    world: Arc<World>,
    dir: PathBuf,
    encoder: SentenceEncoder,
    heads: ClassifierHeads,
    policy: Policy,
    holdout: Vec<RoutedPrompt>,
}

impl Loop<'_> {
    /// What the report needs of the loop: the options, the world, the held-out prompts.
    fn setting(&self) -> report::Setting<'_> {
        report::Setting {
            args: self.args,
            world: &self.world,
            holdout: &self.holdout,
        }
    }
}

pub fn run(args: &EvalLoopArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.rounds >= 1 && args.requests >= args.rounds,
        "--requests must be at least --rounds (≥ 1)"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.explore),
        "--explore must be in [0, 1]"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.feedback_share),
        "--feedback-share must be in [0, 1]"
    );
    anyhow::ensure!(
        args.holdout > 0.0 && args.holdout < 1.0,
        "--holdout must be in (0, 1)"
    );
    let policy: Policy = args
        .policy
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--policy: {e}"))?;
    let prices = super::prices::load(args.prices.as_deref())?;
    let options = WorldOptions {
        unknown_models: args.unknown_models,
        output_tokens: args.output_tokens,
        max_prompts: args.max_prompts,
    };
    let world = Arc::new(World::load(&args.world, &prices, &options)?);
    let scratch = tempfile::tempdir()?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    if dir.join("logs").exists() {
        anyhow::bail!(
            "{}: holds a previous run's logs; give an empty --out",
            dir.display()
        );
    }
    fs_err::create_dir_all(&dir)?;
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let heads = ClassifierHeads::load(&args.heads, encoder.info())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (served_pool, held) = split(&world, args.holdout, args.seed);
    anyhow::ensure!(
        served_pool.len() >= 10 && held.len() >= 10,
        "{}: {} prompts to serve and {} held out; a world needs at least 10 of each (more prompts, or another --holdout)",
        args.world.display(),
        served_pool.len(),
        held.len()
    );
    let mut sim = Loop {
        args,
        world: world.clone(),
        dir,
        encoder,
        heads,
        policy,
        holdout: Vec::new(),
    };
    sim.holdout = sim.featurise_world(&held, "embedding the holdout")?;
    let report = runtime.block_on(sim.run(&served_pool))?;
    report::emit(&report, args)?;
    Ok(ExitCode::SUCCESS)
}

/// World prompt indices: (served pool, holdout), by a seeded hash of the prompt.
fn split(world: &World, holdout: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    (0..world.prompts.len()).partition(|&i| {
        let key = switchyard_training::cache::text_key(&world.prompts[i].text);
        let mut rng =
            SplitMix::new(seed ^ u64::from_le_bytes(key[..8].try_into().unwrap_or_default()));
        (rng.next_u64() as f64 / u64::MAX as f64) >= holdout
    })
}

impl Loop<'_> {
    fn cache_dir(&self) -> &Path {
        &self.args.cache.cache_dir
    }

    /// World prompts as the router sees them, with every model's outcome.
    fn featurise_world(&self, indices: &[usize], what: &str) -> anyhow::Result<Vec<RoutedPrompt>> {
        let loaded = indices
            .iter()
            .map(|&i| {
                let p = &self.world.prompts[i];
                LoadedPrompt {
                    id: p.id.clone(),
                    family: "world".into(),
                    text: p.text.clone(),
                    outcomes: report::outcomes(&self.world, p),
                }
            })
            .collect();
        Ok(featurise(
            loaded,
            &self.encoder,
            &self.heads,
            self.cache_dir(),
            &progress::bar(0, what),
        )?)
    }

    async fn run(&mut self, pool: &[usize]) -> anyhow::Result<report::Report> {
        let started = std::time::Instant::now();
        let setup = GatewaySetup {
            dir: self.dir.clone(),
            heads: self.args.heads.clone(),
            scorer: self.args.start.clone(),
            encoder: self.args.encoder.encoder_source(),
            policy: self.args.policy.clone(),
            explore: self.args.explore,
            explore_seed: self.args.seed,
            neutral_priors: self.args.unknown_models,
        };
        let upstream = world::serve(self.world.clone()).await?;
        let config = self.dir.join("gateway.toml");
        fs_err::write(&config, setup.config(&self.world, upstream))?;
        let gateway = Gateway::start(&config)?;
        let start = Scorer::load(&self.args.start, self.encoder.info())?;
        let mut serving = start.clone();
        let mut serving_dir = self.args.start.clone();
        let mut rng = SplitMix::new(self.args.seed);
        let mut served: Vec<Served> = Vec::new();
        let mut rounds = Vec::new();
        let per_round = self.args.requests / self.args.rounds;
        for r in 0..self.args.rounds {
            let n = if r + 1 == self.args.rounds {
                self.args.requests - per_round * r
            } else {
                per_round
            };
            let prompts: Vec<usize> = (0..n)
                .map(|_| pool[(rng.next_u64() % pool.len() as u64) as usize])
                .collect();
            let share = self.args.feedback_share;
            let draws: Vec<f64> = (0..n)
                .map(|_| rng.next_u64() as f64 / u64::MAX as f64)
                .collect();
            let bar = progress::bar(n as u64, &format!("round {}: serving", r + 1));
            let batch = gateway
                .serve_requests(
                    &self.world,
                    &prompts,
                    self.args.concurrency,
                    &|i| draws[i] < share,
                    &bar,
                )
                .await?;
            bar.finish_and_clear();
            served.extend(batch.iter().cloned());
            let round = self
                .learn(r, &batch, &gateway, &mut serving, &mut serving_dir)
                .await?;
            rounds.push(round);
        }
        drop(gateway);
        let final_dir = self.dir.join("final");
        copy_scorer(&serving_dir, &final_dir)?;
        let references = self.references(&start, &serving, &served).await?;
        Ok(report::Report::new(
            self.setting(),
            rounds,
            references,
            &served,
            started.elapsed().as_secs_f64(),
        ))
    }

    /// After a round: one cycle of the learner ([`switchyard_learn`], the same code
    /// `switchyard learn` runs): import, retrain, evaluate off-policy, and the gate
    /// decides; the simulator only carries the promotion to the gateway and measures.
    async fn learn(
        &self,
        r: usize,
        batch: &[Served],
        gateway: &Gateway,
        serving: &mut Scorer,
        serving_dir: &mut PathBuf,
    ) -> anyhow::Result<Round> {
        let (logs, prices) = (self.dir.join("logs"), self.world_prices());
        let setup = CycleSetup {
            log_dir: &logs,
            work_dir: &self.dir,
            heads_dir: &self.args.heads,
            cache_dir: self.cache_dir(),
            encoder: &self.encoder,
            heads: &self.heads,
            models: &self.world.models,
            prices: &prices,
            policy: self.policy,
            bootstrap: self.args.bootstrap,
            seed: self.args.seed,
            gate: Gate::default(),
            priors: &[],
        };
        let traffic = self.dir.join("traffic.jsonl");
        switchyard_learn::import_traffic(&logs, &traffic)?;
        let out = self.dir.join(format!("round-{}", r + 1));
        let candidate = switchyard_learn::train_candidate(&setup, &traffic, &out, &progress::Bars)?;
        let bar = progress::bar(0, "featurising traffic");
        let (estimate, gain) =
            switchyard_learn::off_policy(&setup, &traffic, &candidate, serving, &bar)?;
        bar.finish_and_clear();
        let verdict = setup.gate.judge(&gain, estimate.effective_sample_size);
        let version = if verdict == Verdict::Promote {
            let v = gateway.promote(&out).await?;
            *serving = candidate.clone();
            *serving_dir = out;
            Some(v)
        } else {
            None
        };
        Ok(Round::new(
            r,
            batch,
            (estimate, gain),
            version,
            self.holdout_aiq(serving)?,
            self.holdout_aiq(&candidate)?,
            self.holdout_truth(&candidate)?,
        ))
    }

    fn world_prices(&self) -> switchyard_core::pricing::PriceTable {
        switchyard_core::pricing::PriceTable(self.world.prices.clone().into_iter().collect())
    }

    /// A scorer's held-out AIQ (policy swept), alone.
    fn holdout_aiq(&self, scorer: &Scorer) -> anyhow::Result<f64> {
        let c = report::compare(
            self.setting(),
            &[("router".into(), self.predict(scorer)?)],
            &[],
        )?;
        Ok(c.contenders[0].aiq.value)
    }

    /// A scorer's mean held-out quality and cost under the serving policy.
    fn holdout_truth(&self, scorer: &Scorer) -> anyhow::Result<(f64, f64)> {
        let predicted = self.predict(scorer)?;
        let (mut q, mut c) = (0.0, 0.0);
        for (p, row) in self.holdout.iter().zip(&predicted) {
            let cands: Vec<switchyard_core::policy::Candidate> = row
                .iter()
                .zip(&self.world.models)
                .map(
                    |(&(quality, cost_usd), m)| switchyard_core::policy::Candidate {
                        model: m.clone(),
                        quality,
                        cost_usd,
                        context_window: None,
                    },
                )
                .collect();
            let d = switchyard_core::policy::decide(&cands, &Default::default(), self.policy)?;
            let o = &p.outcomes[&d.chosen];
            q += o.score.unwrap_or(0.0);
            c += o.cost_usd.unwrap_or(0.0);
        }
        let n = self.holdout.len().max(1) as f64;
        Ok((q / n, c / n))
    }

    fn predict(&self, scorer: &Scorer) -> anyhow::Result<switchyard_eval::route_eval::Predicted> {
        let specs = ope::specs(scorer, &self.world.models, &self.world_prices());
        Ok(self
            .holdout
            .iter()
            .map(|p| ope::predict_row(scorer, p, &specs))
            .collect::<Result<_, _>>()?)
    }

    /// The routers the final one is measured against.
    async fn references(
        &self,
        start: &Scorer,
        last: &Scorer,
        served: &[Served],
    ) -> anyhow::Result<Vec<Reference>> {
        let mut distinct: Vec<usize> = served.iter().map(|s| s.prompt).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let full = self.full_information(&distinct)?;
        let uniform = self.uniform_logging(&distinct, served.len())?;
        let logged = self.logged_neighbours()?;
        let mut refs = vec![
            Reference {
                name: "final".into(),
                predicted: self.predict(last)?,
            },
            Reference {
                name: "start".into(),
                predicted: self.predict(start)?,
            },
            Reference {
                name: "full-information".into(),
                predicted: self.predict(&full)?,
            },
            Reference {
                name: "uniform-logging".into(),
                predicted: self.predict(&uniform)?,
            },
        ];
        refs.push(report::knn(self.setting(), &logged));
        Ok(refs)
    }

    /// A scorer trained offline on every model's outcome for the served prompts.
    fn full_information(&self, prompts: &[usize]) -> anyhow::Result<Scorer> {
        let records = prompts.iter().map(|&i| report::record(&self.world, i));
        self.train_reference("full-information", records, 0.0)
    }

    /// What the same number of outcomes could teach at best as bandit data: a scorer trained
    /// on `n` (prompt, model) outcomes of the served prompts, every model equally likely
    /// (uniform logging, the widest exploration), with the traffic's prior. Between it and
    /// the full-information router lies what more outcomes per prompt are worth.
    fn uniform_logging(&self, prompts: &[usize], n: usize) -> anyhow::Result<Scorer> {
        anyhow::ensure!(
            !prompts.is_empty() && !self.world.models.is_empty(),
            "uniform-logging needs served prompts and models"
        );
        let mut rng = SplitMix::new(self.args.seed ^ 0x756e_6966_6f72_6d00);
        let models = self.world.models.len() as u64;
        let records = (0..n).map(|_| {
            let i = prompts[(rng.next_u64() % prompts.len() as u64) as usize];
            let model = &self.world.models[(rng.next_u64() % models) as usize];
            let mut record = report::record(&self.world, i);
            record.outcomes.retain(|m, _| m == model);
            record
        });
        let prior = switchyard_training::scorer::TRAFFIC_PRIOR_WEIGHT;
        self.train_reference("uniform-logging", records, prior)
    }

    /// Trains a reference scorer on `records` (written to DIR/NAME.jsonl, the scorer to
    /// DIR/NAME) with the loop's grid and prior weight `prior`.
    fn train_reference(
        &self,
        name: &str,
        records: impl Iterator<Item = switchyard_core::RoutingRecord>,
        prior: f64,
    ) -> anyhow::Result<Scorer> {
        let path = self.dir.join(format!("{name}.jsonl"));
        let mut text = String::new();
        for record in records {
            text.push_str(&serde_json::to_string(&record)?);
            text.push('\n');
        }
        fs_err::write(&path, text)?;
        let request = ScorerRequest {
            data: vec![path],
            exclude_sources: vec![],
            heads_dir: self.args.heads.clone(),
            out: self.dir.join(name),
            cache_dir: self.cache_dir().to_path_buf(),
            grid: switchyard_learn::cycle_grid(),
            prior_weight: Some(prior),
            traffic_weight: 1,
        };
        Ok(train_scorer(&request, &self.encoder, &self.heads, &progress::Bars)?.1)
    }

    /// Every logged request with feedback, featurised: kNN's neighbours.
    fn logged_neighbours(&self) -> anyhow::Result<Vec<LoggedRequest>> {
        let traffic = self.dir.join("traffic.jsonl");
        Ok(ope::load_logged(
            &[traffic],
            &self.encoder,
            &self.heads,
            self.cache_dir(),
            &progress::bar(0, "featurising traffic"),
        )?
        .0)
    }
}

/// Copies a scorer artifact (manifest and weights) to `to`.
fn copy_scorer(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs_err::create_dir_all(to)?;
    for f in [
        switchyard_scorer::MANIFEST_FILE,
        switchyard_scorer::WEIGHTS_FILE,
    ] {
        fs_err::copy(from.join(f), to.join(f))?;
    }
    Ok(())
}
