//! Importers: parsing checked on small fixtures written for these tests, and row and model
//! counts checked on the real shared data when it is present (skipped, visibly, when not).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "tests fail loudly and say what they skip"
)]

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use switchyard_core::TaskClass;
use switchyard_training::import::{ImportReport, Source, import};

/// This package's directory: from cargo at run time (the checkout being tested), falling back
/// to the one it was compiled in. A test binary reused from a build in another checkout (a
/// shared CARGO_TARGET_DIR) would otherwise look for the models in that other checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

fn fixture(source: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures").join(source)
}

fn run(source: Source, path: &Path) -> ImportReport {
    let report = import(source, path, &ProgressBar::hidden()).expect("imports");
    for record in &report.records {
        record.validate().expect("every imported record is valid");
    }
    report
}

#[test]
fn routerbench_fixture() {
    let r = run(Source::RouterBench, &fixture("routerbench"));
    assert_eq!(r.rows_read, 3);
    assert_eq!(r.records.len(), 2, "the empty prompt is skipped");
    assert_eq!(r.skipped["empty prompt"], 1);
    assert_eq!(r.skipped["model cell without a 0..1 score"], 1);
    let first = &r.records[0];
    assert_eq!(first.id, "routerbench/mbpp_test/mbpp.dev.1");
    assert_eq!(
        first.prompt.as_deref(),
        Some("Write a function to add two numbers.")
    );
    assert_eq!(first.task, Some(TaskClass::Code));
    assert_eq!(first.outcomes["model-a"].cost_usd, Some(0.0005));
    assert_eq!(first.outcomes["org/model-b"].score, Some(0.0));
    assert_eq!(
        r.records[1].prompt.as_deref(),
        Some("Write a function that returns 'hello'.")
    );
    assert!(!r.records[1].outcomes.contains_key("org/model-b"));
}

#[test]
fn routeprofile_fixture_prices_tokens() {
    let r = run(Source::RouteProfile, &fixture("routeprofile"));
    assert_eq!(r.records.len(), 2);
    let gsm = &r.records[0];
    assert_eq!(gsm.task, Some(TaskClass::Math));
    let big = &gsm.outcomes["big-llm"];
    assert_eq!(
        (big.input_tokens, big.output_tokens, big.score),
        (Some(22), Some(10), Some(0.5))
    );
    let cost = big.cost_usd.unwrap();
    assert!((cost - (22.0 * 1.0 + 10.0 * 3.0) / 1e6).abs() < 1e-15);
    assert_eq!(
        r.records[1].outcomes["unpriced"].cost_usd, None,
        "no price, no cost"
    );
    assert_eq!(r.records[1].task, Some(TaskClass::FactualQa));
}

#[test]
fn llmrouter_fixture_joins_tasks() {
    let r = run(Source::LlmRouter, &fixture("llmrouter"));
    assert_eq!(r.records.len(), 3);
    assert_eq!(r.records[0].task, Some(TaskClass::Math));
    assert_eq!(r.records[1].task, Some(TaskClass::FactualQa));
    assert_eq!(r.records[2].task, None);
    assert_eq!(
        r.records[2].outcomes.len(),
        2,
        "the non-numeric score is skipped"
    );
    assert_eq!(r.models.len(), 2);
}

#[test]
fn alpacaeval_fixture_scores_preferences() {
    let r = run(Source::AlpacaEval, &fixture("alpacaeval"));
    assert_eq!(r.records.len(), 2);
    assert_eq!(
        r.records[0].outcomes["model-x"].score,
        Some(0.75),
        "first row wins"
    );
    assert_eq!(r.records[0].task, Some(TaskClass::Writing));
    assert_eq!(r.records[1].task, Some(TaskClass::Chat));
    assert_eq!(r.skipped["repeated (prompt, model) row"], 1);
    assert_eq!(
        r.skipped["deliberate cheat model (NullModel, gpt4_gamed)"],
        1
    );
    assert_eq!(r.skipped["preference for an unknown prompt id"], 1);
    assert!(!r.models.contains("NullModel"));
}

#[test]
fn open7b_fixture() {
    let r = run(Source::Open7b, &fixture("open7b"));
    assert_eq!(r.records.len(), 2);
    assert_eq!(r.records[0].task, Some(TaskClass::Knowledge));
    assert_eq!(r.records[1].outcomes.len(), 1, "a score above 1 is skipped");
}

#[test]
fn mmlupro_fixture_letters_options_and_estimates_tokens() {
    let r = run(Source::MmluPro, &fixture("mmlupro"));
    assert_eq!(r.records.len(), 2, "the empty question is skipped");
    assert_eq!(r.skipped["empty question"], 1);
    assert_eq!(r.skipped["model result without a 0/1 correct"], 1);
    let math = &r.records[0];
    assert_eq!(math.id, "mmlupro/7");
    assert_eq!(
        math.task,
        Some(TaskClass::Math),
        "TheoremQA is a calculation"
    );
    assert!(
        math.text().ends_with("\nA. 3\nB. 6\nC. 9"),
        "{}",
        math.text()
    );
    let gpt = &math.outcomes["gpt-4o-2024-05-13"];
    assert_eq!(
        (gpt.score, gpt.output_tokens, gpt.cost_usd),
        (Some(1.0), Some(101), None)
    );
    assert_eq!(r.records[1].task, Some(TaskClass::Knowledge));
}

#[test]
fn routerarena_fixture_keeps_tokens_and_costs() {
    let r = run(Source::RouterArena, &fixture("routerarena"));
    assert_eq!(r.records.len(), 2);
    let math = &r.records[0];
    assert_eq!(math.task, Some(TaskClass::Math));
    let haiku = &math.outcomes["claude-3-haiku-20240307"];
    assert_eq!(haiku.input_tokens, Some(40));
    assert_eq!(haiku.cost_usd, Some(0.0000475));
    let wmt = &r.records[1];
    assert_eq!(
        wmt.outcomes["claude-3-haiku-20240307"].score,
        Some(1.0),
        "METEOR clamped"
    );
    assert_eq!(wmt.outcomes.len(), 1);
    assert_eq!(r.skipped["model result without a score"], 1);
}

#[test]
fn a_wrong_folder_is_a_clear_error() {
    let err = import(
        Source::RouteProfile,
        &fixture("open7b"),
        &ProgressBar::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("routing_test_data.json"), "{err}");
    let err = import(
        Source::Open7b,
        Path::new("no/such/dir"),
        &ProgressBar::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

/// The shared datasets, when this checkout sits next to them.
fn shared(source: &str) -> Option<PathBuf> {
    let path = manifest_dir()
        .join("../../shared/datasets/routing")
        .join(source);
    if path.is_dir() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: ../shared/datasets/routing/{source} is absent; the shared-data count test did not run"
        );
        None
    }
}

#[test]
fn shared_data_row_and_model_counts() {
    // (source, rows read, records, models)
    let expected = [
        (Source::RouterBench, 3178, 3170, 11),
        (Source::RouteProfile, 600, 600, 8),
        (Source::LlmRouter, 6108, 6108, 9),
        (Source::AlpacaEval, 805, 805, 56),
        (Source::Open7b, 19281, 19281, 7),
        (Source::MmluPro, 5222, 5222, 33),
        (Source::RouterArena, 631, 631, 2),
    ];
    for (source, rows, records, models) in expected {
        let Some(path) = shared(source.name()) else {
            continue;
        };
        let r = run(source, &path);
        assert_eq!(
            (r.rows_read, r.records.len(), r.models.len()),
            (rows, records, models),
            "{}",
            source.name()
        );
    }
}
