//! Property tests over the config loader: arbitrary experiment files (YAML and TOML, from
//! random text to nearly valid configs, with `extends` of real, cyclic and missing bases and
//! `${…}` values), `RUNNER_*` variables and `--set` strings (list edits among them) and
//! profile names. No input may panic; every accepted configuration prints (YAML, TOML, JSON,
//! `--explain`) and its YAML print resolves back to the same configuration.
//!
//! CI runs proptest's default case count; the million-input run is
//! `PROPTEST_CASES=1000000 cargo test --release --test cli fuzz_config` (`just fuzz`).

use std::path::PathBuf;
use std::sync::LazyLock;

use proptest::prelude::*;
use runner::config::render::{Format, full_value, render};
use runner::config::schema::experiment_schema;
use runner::config::suggest::known_keys;
use runner::config::types::JobKind;
use runner::config::{Request, resolve_text};

static KEYS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let schema = experiment_schema().to_value();
    let mut keys: Vec<String> = JobKind::ALL
        .iter()
        .flat_map(|j| known_keys(&schema, Some(j.as_str())))
        .collect();
    keys.extend(["train.accum_iter", "blr", "derived", "model.model", "a.b.c"].map(String::from));
    keys.sort();
    keys.dedup();
    keys
});

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..KEYS.len()).prop_map(|i| KEYS[i].clone()),
        1 => "[a-z_.]{1,24}",
    ]
}

/// Values in YAML/flow syntax (also valid TOML for many of them).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        (0u32..5000).prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:e}")),
        Just("0".to_string()),
        Just("1".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just(".nan".to_string()),
        Just("-.inf".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("99999999999999999999999999".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("~".to_string()),
        Just("[0.9, 0.95]".to_string()),
        Just("[[[[[[".to_string()),
        Just("{a: 1}".to_string()),
        Just("\"{name}-{timestamp}\"".to_string()),
        Just("\"{oops\"".to_string()),
        prop::sample::select(vec![
            "\"${train.epochs * 2}\"",
            "\"${train.per_device_batch_size // 2}\"",
            "\"${env:FUZZ_VAR,3}\"",
            "\"${env:FUZZ_VAR}\"",
            "\"${env:FUZZ_TOKEN,none}\"",
            "\"${derived.global_batch_size}\"",
            "\"${derived.nope}\"",
            "\"${seed}\"",
            "\"${a.b}\"",
            "\"${1 // 0}\"",
            "\"${(1 + 2\"",
            "\"$${literal}\"",
            "\"${\"",
            "\"x-${train.epochs}-${optimizer.lr}\"",
            "\"${optimizer.lr / 3}\"",
            "\"${name * 2}\"",
        ])
        .prop_map(String::from),
        prop::sample::select(vec![
            "mae",
            "text_classification",
            "causal_vae",
            "cosine",
            "wsd",
            "bf16",
            "fp16",
            "tch",
            "flex",
            "cuda:1",
            "cpu",
            "tpu",
            "nccl",
            "gloo",
            "mpi",
            "steps",
            "epoch",
            "no",
            "auto",
            "bert-tiny",
            "mae_vit_tiny_patch4",
            "causal_vae_488_tiny",
            "8xA100",
            "x",
        ])
        .prop_map(String::from),
        "[ -~]{0,16}",
    ]
}

/// Nested YAML from dotted keys (sorted, so each section header appears once).
fn yaml_doc(mut pairs: Vec<(String, String)>) -> String {
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    let mut open: Vec<String> = Vec::new();
    for (k, v) in pairs {
        let parts: Vec<&str> = k.split('.').collect();
        let (leaf, parents) = parts.split_last().expect("non-empty");
        let common = open
            .iter()
            .zip(parents.iter())
            .take_while(|(a, b)| a == b)
            .count();
        open.truncate(common);
        for part in &parents[common..] {
            out.push_str(&format!("{}{part}:\n", "  ".repeat(open.len())));
            open.push(part.to_string());
        }
        out.push_str(&format!("{}{leaf}: {v}\n", "  ".repeat(open.len())));
    }
    out
}

/// TOML from dotted keys: top-level keys first, then one `[table]` per section.
fn toml_doc(mut pairs: Vec<(String, String)>) -> String {
    pairs.sort_by(|a, b| (a.0.contains('.'), &a.0).cmp(&(b.0.contains('.'), &b.0)));
    let mut out = String::new();
    let mut table = String::new();
    for (k, v) in pairs {
        // YAML-style bare words become TOML strings; real TOML values stay as they are.
        let v = if toml::from_str::<toml::Table>(&format!("x = {v}")).is_ok() || v.starts_with("[[")
        {
            v
        } else {
            toml::Value::String(v).to_string()
        };
        match k.rsplit_once('.') {
            Some((t, leaf)) => {
                if t != table {
                    out.push_str(&format!("[{t}]\n"));
                    table = t.to_string();
                }
                out.push_str(&format!("{leaf} = {v}\n"));
            }
            None => out.push_str(&format!("{k} = {v}\n")),
        }
    }
    out
}

/// Settings that are valid on their own, so that many generated configs get accepted and
/// exercise derivation, printing and the round trip.
fn plausible() -> impl Strategy<Value = (String, String)> {
    prop::sample::select(vec![
        ("seed", "7"),
        ("description", "\"fuzzed\""),
        ("output_dir", "\"out/{name}-{job}\""),
        ("train.epochs", "5"),
        ("train.max_steps", "1000"),
        ("train.per_device_batch_size", "4"),
        ("train.grad_accum_steps", "2"),
        ("train.global_batch_size", "64"),
        ("train.clip_grad_norm", "0"),
        ("train.clip_grad_norm", "null"),
        ("optimizer.weight_decay", "0.05"),
        ("optimizer.betas", "[0.9, 0.95]"),
        ("optimizer.min_lr", "0.0"),
        ("scheduler.style", "cosine"),
        ("scheduler.style", "wsd"),
        ("scheduler.decay_fraction", "0.2"),
        ("scheduler.warmup_steps", "10"),
        ("scheduler.warmup_ratio", "0.1"),
        ("scheduler.warmup_epochs", "1"),
        ("precision.init_loss_scale", "512"),
        ("eval.strategy", "steps"),
        ("eval.every_steps", "50"),
        ("checkpoint.keep_last", "0"),
        ("logging.dir", "\"{output_dir}/tb\""),
        ("hardware.backend", "tch"),
        ("hardware.device", "cuda:1"),
        ("hardware.nproc_per_node", "4"),
        ("hardware.nnodes", "2"),
        ("loader.num_workers", "0"),
        ("loader.shuffle", "false"),
        ("resume", "auto"),
        ("init_from", "w.safetensors"),
        ("profile", "[cpu]"),
        ("extends", "bases/partial.yaml"),
        ("extends", "[bases/partial.yaml, bases/other.toml]"),
        ("extends", "bases/cycle.yaml"),
        ("extends", "bases/missing.yaml"),
        (
            "train.log_every_steps",
            "\"${train.per_device_batch_size // 2}\"",
        ),
        (
            "eval.per_device_batch_size",
            "\"${derived.global_batch_size * 2}\"",
        ),
    ])
    .prop_map(|(k, v)| (k.to_string(), v.to_string()))
}

/// A document: mostly near-valid configs, sometimes noise.
fn document() -> impl Strategy<Value = (bool, String)> {
    let job = prop::sample::select(vec!["mae", "text_classification", "causal_vae"]);
    let base = job.prop_map(|j| {
        let data = match j {
            "mae" => ("data.path", "images"),
            "text_classification" => ("data.train_file", "t.jsonl"),
            _ => ("data.video_path", "clips"),
        };
        let mut pairs = vec![
            ("name".to_string(), "fuzz".to_string()),
            ("job".to_string(), j.to_string()),
            (data.0.to_string(), data.1.to_string()),
            ("optimizer.lr".to_string(), "0.001".to_string()),
        ];
        if j == "text_classification" {
            pairs.push(("data.tokenizer".to_string(), "v.txt".to_string()));
        }
        pairs
    });
    prop_oneof![
        6 => (base, prop::collection::vec(prop_oneof![3 => plausible(), 1 => (key(), value())], 0..6), any::<bool>())
            .prop_map(|(mut b, extra, toml)| {
            b.extend(extra);
            let text = if toml { toml_doc(b) } else { yaml_doc(b) };
            (toml, text)
        }),
        1 => (any::<bool>(), "[ -~\n\t]{0,300}"),
        1 => (any::<bool>(), any::<String>()),
        1 => (any::<bool>(), "[a-z_:{}\\[\\], \n#\"'=.-]{0,200}"),
    ]
}

fn overrides() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            8 => (key(), value()).prop_map(|(k, v)| format!("{k}={v}")),
            2 => (key(), prop::sample::select(vec!["+=", "-="]), value())
                .prop_map(|(k, op, v)| format!("{k}{op}{v}")),
            1 => key().prop_map(|k| format!("~{k}")),
            1 => "[ -~]{0,30}",
        ],
        0..3,
    )
}

fn env() -> impl Strategy<Value = Vec<(String, String)>> {
    let suffix = prop::sample::select(vec!["", "", "", "__APPEND", "__REMOVE", "__RESET"]);
    prop::collection::vec(
        prop_oneof![
            4 => (key(), suffix, value()).prop_map(|(k, s, v)| {
                (format!("RUNNER_{}{s}", k.to_uppercase().replace('.', "__")), v)
            }),
            1 => value().prop_map(|v| ("FUZZ_VAR".to_string(), v)),
            1 => value().prop_map(|v| ("FUZZ_TOKEN".to_string(), v)),
        ],
        0..3,
    )
}

/// A folder of bases the documents `extends`: a partial one, one in TOML that extends it, one
/// that extends itself; `missing.yaml` is not there.
static BASES: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let bases = dir.path().join("bases");
    std::fs::create_dir(&bases).unwrap();
    std::fs::write(
        bases.join("partial.yaml"),
        "train:\n  epochs: 4\noptimizer:\n  weight_decay: 0.1\n",
    )
    .unwrap();
    std::fs::write(
        bases.join("other.toml"),
        "extends = \"partial.yaml\"\n[scheduler]\nstyle = \"cosine\"\n",
    )
    .unwrap();
    std::fs::write(bases.join("cycle.yaml"), "extends: cycle.yaml\n").unwrap();
    dir
});

fn profiles() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(vec!["cpu", "8xA100", "huge-model", "tpu-v4-8", "2x8xH100", "nope"]).prop_map(String::from),
            1 => "[a-z0-9-]{1,10}",
        ],
        0..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn loader_never_panics_and_accepted_configs_round_trip(
        (toml, text) in document(),
        overrides in overrides(),
        env in env(),
        profiles in profiles(),
        seed in proptest::option::of(any::<u64>()),
    ) {
        let experiment = BASES.path().join(if toml { "fuzz.toml" } else { "fuzz.yaml" });
        // What a printed configuration keeps unresolved (secrets) resolves again from these.
        let plain_env: Vec<(String, String)> =
            env.iter().filter(|(k, _)| !k.starts_with("RUNNER_")).cloned().collect();
        let req = Request { experiment, profiles, overrides, seed, output_dir: None, env, ..Request::default() };
        match resolve_text(&req, &text) {
            Err(diags) => {
                prop_assert!(diags.has_errors());
                let rendered = diags.render();
                prop_assert!(!rendered.is_empty());
            }
            Ok(resolved) => {
                let yaml = render(&resolved, Format::Yaml, false);
                let _ = render(&resolved, Format::Toml, false);
                let _ = render(&resolved, Format::Json, true);
                let _ = render(&resolved, Format::Yaml, true);
                let again = Request { experiment: PathBuf::from("again.yaml"), env: plain_env, ..Request::default() };
                match resolve_text(&again, &yaml) {
                    Ok(back) => prop_assert_eq!(full_value(&back), full_value(&resolved)),
                    Err(d) => prop_assert!(false, "printed config does not resolve:\n{}\n---\n{}", yaml, d.render()),
                }
            }
        }
    }
}
