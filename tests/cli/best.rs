//! Metric-driven checkpoints and early stopping on `mnli-tiny`, through the real binary: the
//! K best evaluations' weights kept under `best/`, the final weights the best one's, a run
//! stopped once its metric plateaus, and a run killed midway that resumes to the same kept
//! set and the same stop; a metric the job does not report is refused before training.

use std::path::Path;

use serde_json::Value as Json;

use crate::common::*;
use crate::train::{json_file, kill_when, tiny};

/// Evaluate every 2 steps on dev_matched's loss; an improvement must exceed 10, which no
/// evaluation's does, so the metric plateaus from the first evaluation on: with patience 2
/// the run stops at step 6 (evaluations at 2, 4, 6) instead of 40.
const PLATEAU: &[&str] = &[
    "train.max_steps=40",
    "train.log_every_steps=1",
    "loader.num_workers=0",
    "eval.strategy=steps",
    "eval.every_steps=2",
    "eval.metric_for_best=dev_matched.loss",
    "eval.early_stopping_patience=2",
    "eval.early_stopping_threshold=10",
    "checkpoint.strategy=steps",
    "checkpoint.every_steps=2",
    "checkpoint.keep_best=2",
    "checkpoint.load_best_at_end=true",
];

fn best_files(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("best"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// dev_matched's loss at every evaluation, by step.
fn evals(run: &Path) -> Vec<(u64, f64)> {
    metrics(run)
        .iter()
        .filter_map(|m| {
            Some((
                m["step"].as_u64()?,
                m.get("eval")?["dev_matched"]["loss"].as_f64()?,
            ))
        })
        .collect()
}

#[test]
fn keep_best_and_early_stopping_survive_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    stdout(&mut tiny(&whole, PLATEAU));
    let summary = json_file(whole.join("summary.json"));
    assert_eq!(summary["steps"], 6, "{summary}");
    assert_eq!(summary["total_steps"], 40);
    let why = summary["stopped_early"].as_str().unwrap();
    assert!(
        why.contains("did not improve by more than 10 for 2 evaluations"),
        "{why}"
    );
    assert_eq!(json_file(whole.join("meta.json"))["stopped_early"], why);

    // The two lowest of the three evaluations are kept, best first; the final weights are
    // the best one's.
    let mut seen = evals(&whole);
    assert_eq!(seen.iter().map(|e| e.0).collect::<Vec<_>>(), [2, 4, 6]);
    seen.sort_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
    let kept: Vec<u64> = summary["best"]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["step"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [seen[0].0, seen[1].0], "{summary}");
    assert_eq!(summary["best"]["step"], seen[0].0);
    assert_eq!(summary["best"]["final_weights_are_best"], true);
    let mut expected: Vec<String> = kept
        .iter()
        .map(|s| format!("step-{s:08}.safetensors"))
        .collect();
    expected.sort();
    assert_eq!(best_files(&whole), expected);
    let best = whole
        .join("best")
        .join(format!("step-{:08}.safetensors", seen[0].0));
    assert_eq!(
        std::fs::read(whole.join("model.safetensors")).unwrap(),
        std::fs::read(best).unwrap()
    );

    // Killed after its second checkpoint, resumed: the same evaluations, kept set and stop.
    let killed = tmp.path().join("killed");
    kill_when(PLATEAU, &killed, |run| {
        run.join("checkpoints/step-00000004/state.json").is_file()
    });
    stdout(tiny(&killed, PLATEAU).args(["--set", "resume=auto"]));
    let again = json_file(killed.join("summary.json"));
    for k in ["steps", "best", "stopped_early"] {
        assert_eq!(again[k], summary[k], "{k}");
    }
    assert_eq!(evals(&killed), evals(&whole));
    assert_eq!(best_files(&killed), best_files(&whole));

    // `runner runs` names the stop.
    let rows: Json = serde_json::from_str(&stdout(
        runner().arg("runs").arg(&whole).args(["--format", "json"]),
    ))
    .unwrap();
    assert_eq!(rows[0]["stopped_early"], why);
}

#[test]
fn metric_for_best_must_be_a_metric_the_job_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let (code, err) = failure(&mut tiny(
        &run,
        &["eval.metric_for_best=dev_matched.acuracy"],
    ));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("did you mean `dev_matched.accuracy`?"),
        "{err}"
    );
    assert!(!run.join("meta.json").exists(), "nothing was written");
    // keep_best without a metric is a configuration error `validate` finds.
    let (code, err) = failure(runner().args([
        "validate",
        "experiments/mnli-tiny.yaml",
        "checkpoint.keep_best=2",
    ]));
    assert_eq!(code, 2);
    assert!(err.contains("needs eval.metric_for_best"), "{err}");
    // HF's names point at ours.
    let (_, err) = failure(runner().args([
        "validate",
        "experiments/mnli-tiny.yaml",
        "eval.metric_for_best_model=x",
    ]));
    assert!(
        err.contains("did you mean `eval.metric_for_best`?"),
        "{err}"
    );
}
