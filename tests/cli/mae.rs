//! The `mae` job end to end on real images: Fashion-MNIST as Debian ships it
//! (`apt-get install dataset-fashion-mnist`, IDX files) and the sample photographs inside
//! PyPI's scikit-image (`pip install --no-deps scikit-image==0.26.0`, JPEG and PNG).
//! `.ci/run` installs both.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{held_out, metrics, runner};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn fashion_mnist() -> PathBuf {
    let dir = PathBuf::from(FASHION);
    assert!(
        dir.join("train-images-idx3-ubyte.gz").is_file(),
        "Fashion-MNIST is missing: `apt-get install dataset-fashion-mnist` (.ci/run does)"
    );
    dir
}

/// `skimage/data` of an installed scikit-image, located without importing it (its numpy and
/// scipy dependencies are not needed, nor installed by .ci/run).
fn skimage_data() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('skimage'); \
             print(s.submodule_search_locations[0] if s else '')",
        ])
        .output()
        .expect("python3 runs");
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("data");
    assert!(
        dir.join("astronaut.png").is_file(),
        "scikit-image's sample images are missing: \
         `python3 -m pip install --no-deps scikit-image==0.26.0` into the python3 on PATH (`just setup-test` puts it in .venv-tch)"
    );
    dir
}

/// `runner --quiet run experiments/mae-tiny.yaml --output-dir RUN`, further arguments to add.
fn mae_tiny(run: &Path) -> assert_cmd::Command {
    let mut cmd = runner();
    cmd.args([
        "--quiet",
        "run",
        "experiments/mae-tiny.yaml",
        "--output-dir",
    ])
    .arg(run);
    cmd
}

/// `runner export RUN --encoder-only -o OUT`, and what it said.
fn export_encoder(run: &Path, out: &Path) -> String {
    crate::common::stdout(
        runner()
            .arg("export")
            .arg(run)
            .arg("--encoder-only")
            .arg("-o")
            .arg(out),
    )
}

fn train_losses(run: &Path) -> Vec<f64> {
    metrics(run)
        .iter()
        .filter_map(|m| m.get("loss")?.as_f64())
        .collect()
}

#[test]
fn mae_tiny_learns_to_reconstruct_fashion_mnist() {
    fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = mae_tiny(&run).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("60000 training images, 256 held-out"),
        "{stderr}"
    );

    // Held-out reconstruction loss, evaluated before the first step and at every eval.
    let losses = held_out(&run, "loss");
    let (first_step, first) = losses[0];
    let (last_step, last) = *losses.last().unwrap();
    assert_eq!(first_step, 0, "{losses:?}");
    assert_eq!(last_step, 300, "{losses:?}");
    assert!(
        last < 0.5 * first,
        "held-out loss did not fall clearly: {losses:?}"
    );
    // `runner plan` counted the same images (from the IDX header alone) and the same steps,
    // evaluations and checkpoints.
    let p = crate::plan::assert_plan_matches_run("experiments/mae-tiny.yaml", &[], &run);
    assert_eq!(p["steps"]["examples"], 60000);

    // The reconstruction grid of every evaluation: 8 rows × 4 columns of 28 px upscaled 4×.
    for (step, _) in &losses {
        let png = run.join(format!("samples/step-{step:08}.png"));
        let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert_eq!(
            (img.width(), img.height()),
            (4 * 112 + 5 * 2, 8 * 112 + 9 * 2)
        );
    }

    // The encoder under the reference's names and PyTorch layouts.
    let encoder = tmp.path().join("encoder.safetensors");
    let said = export_encoder(&run, &encoder);
    assert!(said.contains("wrote"), "{said}");
    let bytes = std::fs::read(&encoder).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let shape = |name: &str| st.tensor(name).unwrap().shape().to_vec();
    assert_eq!(shape("patch_embed.proj.weight"), [128, 3, 4, 4]);
    assert_eq!(shape("cls_token"), [1, 1, 128]);
    assert_eq!(shape("pos_embed"), [1, 50, 128]);
    assert_eq!(shape("blocks.3.attn.qkv.weight"), [384, 128]);
    assert_eq!(shape("blocks.3.mlp.fc1.weight"), [512, 128]);
    assert_eq!(shape("norm.bias"), [128]);
    assert!(
        st.names()
            .iter()
            .all(|n| !n.starts_with("decoder") && *n != "mask_token")
    );
    // 4 blocks × 12 tensors + cls, pos, patch weight and bias, final norm.
    assert_eq!(st.len(), 4 * 12 + 6);
    // The whole model by default, next to the run.
    crate::common::stdout(runner().arg("export").arg(&run));
    let full = std::fs::read(run.join("export/mae.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&full).unwrap();
    assert_eq!(st.tensor("decoder_pred.weight").unwrap().shape(), [48, 64]);
    assert_eq!(st.tensor("decoder_pos_embed").unwrap().shape(), [1, 50, 64]);
}

#[test]
fn same_seed_same_losses_and_resume_continues_the_curve() {
    fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let args = |dir: &Path| {
        let mut cmd = mae_tiny(dir);
        cmd.args([
            "train.max_steps=6",
            "train.log_every_steps=1",
            "scheduler.warmup_steps=2",
            "eval.strategy=no",
            "checkpoint.every_steps=3",
            "loader.num_workers=2",
        ]);
        cmd
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    crate::common::stdout(&mut args(&a));
    crate::common::stdout(&mut args(&b));
    let la = train_losses(&a);
    assert_eq!(la.len(), 6);
    assert_eq!(la, train_losses(&b), "same seed, different losses");
    // Another seed draws other crops and masks.
    let c = tmp.path().join("c");
    crate::common::stdout(args(&c).arg("seed=7"));
    assert_ne!(la, train_losses(&c));
    // Resuming from the step-3 checkpoint repeats steps 4–6 exactly.
    let r = tmp.path().join("r");
    std::fs::create_dir_all(&r).unwrap();
    crate::common::stdout(&mut args(&r));
    std::fs::remove_dir_all(r.join("checkpoints/step-00000006")).unwrap();
    std::fs::remove_file(r.join("model.safetensors")).unwrap();
    crate::common::stdout(args(&r).arg("resume=auto"));
    assert_eq!(train_losses(&r), la);
}

#[test]
fn image_folders_train_and_skip_unreadable_images() {
    let data = skimage_data();
    let tmp = tempfile::tempdir().unwrap();
    // ImageNet layout: class folders of JPEG and PNG photographs (grey, RGB and RGBA among
    // them), plus one damaged JPEG in the training images.
    let root = tmp.path().join("images");
    let mut n = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let p = entry.unwrap().path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ["png", "jpg"].contains(&ext) {
            let class = root.join(if n % 2 == 0 { "even" } else { "odd" });
            std::fs::create_dir_all(&class).unwrap();
            std::fs::copy(&p, class.join(p.file_name().unwrap())).unwrap();
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} sample images in {}", data.display());
    // A JPEG signature followed by garbage. (A merely truncated JPEG decodes, grey-filled,
    // with the `image` crate's decoder, as with PIL's LOAD_TRUNCATED_IMAGES.)
    let mut damaged = vec![0xff, 0xd8, 0xff, 0xdb];
    damaged.extend(b"not the rest of a JPEG file".repeat(8));
    std::fs::write(root.join("odd/damaged.jpg"), damaged).unwrap();
    std::fs::write(root.join("odd/empty.png"), b"").unwrap();

    // Small crops of the folder, 4 images held out of it; `extra` says how long and what
    // is evaluated.
    let on_folder = |run: &Path, extra: &[&str]| {
        mae_tiny(run)
            .args([
                "train.per_device_batch_size=8",
                "scheduler.warmup_steps=1",
                "data.input_size=32",
                "data.eval_images=4",
                "checkpoint.strategy=no",
                "data.eval_path=null",
            ])
            .arg(format!("data.path={}", root.display()))
            .args(extra)
            .output()
            .unwrap()
    };
    let run = tmp.path().join("run");
    let out = on_folder(
        &run,
        &[
            "train.max_steps=4",
            "data.grid_images=2",
            "eval.every_steps=4",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("holding out 4 of {} images", n + 2)),
        "{stderr}"
    );
    // 4 steps × 8 samples visit every training image of this epoch's order at most once; the
    // two broken files are reported by path whenever they are drawn.
    let losses = train_losses(&run);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let grid = image::open(run.join("samples/step-00000004.png")).unwrap();
    // 32 px cells upscaled 4× to 128.
    assert_eq!(grid.height(), 2 * 128 + 3 * 2);
    if stderr.contains("skipping unreadable image") {
        assert!(
            stderr.contains("damaged.jpg") || stderr.contains("empty.png"),
            "{stderr}"
        );
    }
    // A full epoch draws both broken files: reported, counted, and the run completes.
    let run2 = tmp.path().join("run2");
    let out = on_folder(
        &run2,
        &[
            "train.max_steps=null",
            "train.epochs=1",
            "data.grid_images=0",
            "eval.strategy=no",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("damaged.jpg") && stderr.contains("empty.png"),
        "{stderr}"
    );
    assert!(stderr.contains("(2 so far)"), "{stderr}");
}

#[test]
fn bad_image_data_is_reported_before_any_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let labels = tmp.path().join("train-labels-idx1-ubyte");
    std::fs::write(&labels, [0u8, 0, 8, 1, 0, 0, 0, 0]).unwrap();
    for (path, want) in [
        (&empty, "holds no images"),
        (&labels, "not an IDX image file"),
    ] {
        let run = tmp.path().join("run");
        let out = mae_tiny(&run)
            .arg(format!("data.path={}", path.display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(want) && stderr.contains("data.path"),
            "{stderr}"
        );
        assert!(!run.exists(), "a run directory was left behind");
    }
}

#[test]
fn the_exported_encoder_loads_into_timm_with_runners_features() {
    // A short mae-tiny run, its encoder exported, loaded into timm's ViT of the same size:
    // only the classifier head is missing, and timm's features of two images equal runner's.
    fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    crate::common::stdout(mae_tiny(&run).args([
        "train.max_steps=3",
        "scheduler.warmup_steps=1",
        "eval.strategy=no",
        "checkpoint.strategy=no",
    ]));
    let encoder = tmp.path().join("encoder.safetensors");
    export_encoder(&run, &encoder);
    // Runner's own features of two images, through the encoder the trainer uses.
    let resolved = runner::run::resolve_run_dir(&run)
        .unwrap()
        .unwrap_or_else(|_| panic!("the run's configuration resolves"));
    let side = 28;
    let batch = 2;
    let images: Vec<f32> = (0..batch * 3 * side * side)
        .map(|i| ((i * 7919 % 251) as f32 / 125.0) - 1.0)
        .collect();
    let features = runner::jobs::mae_encoder_features(
        &resolved.experiment,
        &run.join("model.safetensors"),
        images.clone(),
        batch,
    )
    .unwrap();
    let s = &features.shape;
    assert_eq!((s.image_size, s.patch_size), (side, 4));
    let raw = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(tmp.path().join("images.f32"), raw(&images)).unwrap();
    std::fs::write(tmp.path().join("features.f32"), raw(&features.values)).unwrap();
    let out = Command::new("python3")
        .arg(crate::common::repo().join("tests/cli/fixtures/timm_features.py"))
        .arg(&encoder)
        .arg(tmp.path().join("images.f32"))
        .arg(tmp.path().join("features.f32"))
        .arg(format!(
            "{},{},{},{},{},{batch}",
            s.image_size, s.patch_size, s.embed_dim, s.depth, s.num_heads
        ))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "timm failed (install it and a torchvision built for the venv's torch into the python3 \
         on PATH, without touching torch: `pip install --no-deps timm==1.0.31 \
         torchvision==0.26.0`; .ci/run does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("timm: {said}");
    assert_eq!(
        said["missing"],
        serde_json::json!(["head.bias", "head.weight"]),
        "{said}"
    );
    assert_eq!(said["unexpected"], serde_json::json!([]), "{said}");
    assert_eq!(said["shape"], serde_json::json!(features.dims), "{said}");
    assert_eq!(features.dims, [batch, 1 + 49, 128]);
    let (diff, scale) = (
        said["max_abs_diff"].as_f64().unwrap(),
        said["max_abs"].as_f64().unwrap(),
    );
    assert!(scale > 0.1, "{said}");
    assert!(
        diff < 1e-4 * scale.max(1.0),
        "features differ by {diff}: {said}"
    );
}
