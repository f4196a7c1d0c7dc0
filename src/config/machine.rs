//! Checks that depend on this machine and this binary rather than on the configuration:
//! run by `runner run` before any work starts, and by `runner validate --strict`.
//! Relative paths are taken from the current directory, as the seed tools' flags are.

use std::path::Path;

use super::diagnostic::Diagnostic;
use super::layers::Layers;
use super::types::*;

/// Whether this binary can train on a hardware section, and if not why. The answer belongs
/// to the engine (`train::backend::check`, the one place devices are made); the caller
/// passes it in so that config stays free of burn.
pub type DeviceCheck<'a> = &'a dyn Fn(&HardwareConfig) -> Result<(), DeviceProblem>;

/// Why the engine cannot train on a hardware section: the key to point at (`hardware.backend`
/// for a backend this binary lacks, `hardware.device` for a device this machine lacks), what
/// is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceProblem {
    pub key: &'static str,
    pub message: String,
    pub help: String,
}

/// A program the job needs on this machine that is missing (FFmpeg for video containers):
/// the key whose value needs it, what is wrong, how to fix it. Answered by the jobs, passed in
/// by the caller like [`DeviceCheck`].
pub struct MissingTool {
    pub key: String,
    pub message: String,
    pub help: String,
}
pub type ToolCheck<'a> = &'a dyn Fn(&Experiment) -> Option<MissingTool>;

pub fn machine_checks(
    exp: &Experiment,
    layers: &Layers,
    device_check: DeviceCheck<'_>,
    tool_check: ToolCheck<'_>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut need = |key: &str, path: &str, what: &str| {
        let p = Path::new(path);
        if !p.exists() {
            out.push(
                layers.diag_at(
                    key,
                    Diagnostic::error("missing-path", format!("{what} `{path}` does not exist"))
                        .help("check the path; relative paths start at the current directory"),
                ),
            );
        }
    };
    match &exp.data {
        DataConfig::Mae(d) => {
            need("data.path", &d.path, "image data");
            if let Some(eval) = &d.eval_path {
                need("data.eval_path", eval, "held-out image data");
            }
        }
        DataConfig::TextClassification(d) => {
            need("data.train_file", &d.train_file, "training file");
            for (i, f) in d.validation_files.iter().enumerate() {
                need(&format!("data.validation_files.{i}"), f, "validation file");
            }
            if let Some(t) = &d.tokenizer {
                need("data.tokenizer", t, "tokenizer");
            }
        }
        DataConfig::CausalVae(d) => need("data.video_path", &d.video_path, "video data"),
    }
    if let ModelConfig::TextClassification(TextModel {
        pretrained: Some(dir),
        ..
    }) = &exp.model
    {
        for file in ["config.json", "model.safetensors"] {
            need(
                "model.pretrained",
                &Path::new(dir).join(file).to_string_lossy(),
                "pretrained checkpoint file",
            );
        }
    }
    if let Some(init) = &exp.init_from {
        need("init_from", init, "initial weights");
    }
    if let Some(resume) = exp.resume.as_deref().filter(|r| *r != "auto") {
        need("resume", resume, "checkpoint");
    }
    if let Some(missing) = tool_check(exp) {
        out.push(layers.diag_at(
            &missing.key,
            Diagnostic::error("missing-tool", missing.message).help(missing.help),
        ));
    }
    if let Err(problem) = device_check(&exp.hardware) {
        out.push(layers.diag_at(
            problem.key,
            Diagnostic::error("backend", problem.message).help(problem.help),
        ));
    }
    out
}
