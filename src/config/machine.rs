//! Checks that depend on this machine and this binary rather than on the configuration:
//! run by `runner run` (and `--dry-run`) before any work starts, and by `runner validate
//! --strict`. What the engine and devices can do is the capability table's; the machine's
//! facts are passed in, so config stays free of burn.
//! Relative paths are taken from the current directory, as the seed tools' flags are.

use std::path::Path;

use super::capability::{self, Facts, Query};
use super::diagnostic::Diagnostic;
use super::layers::Layers;
use super::types::*;

/// A program the job needs on this machine that is missing (FFmpeg for video containers):
/// the key whose value needs it, what is wrong, how to fix it. Answered by the jobs, passed in
/// by the caller (config knows no job's data).
pub struct MissingTool {
    pub key: String,
    pub message: String,
    pub help: String,
}
pub type ToolCheck<'a> = &'a dyn Fn(&Experiment) -> Option<MissingTool>;

/// Every problem this machine has with `exp`: missing paths, the capability table's machine
/// rows for these `facts`, and the programs `tool_check` finds missing.
pub fn machine_checks(
    exp: &Experiment,
    layers: &Layers,
    facts: &Facts,
    tool_check: ToolCheck<'_>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // Hub ids not in the local cache (`config::hub`), said after the missing paths.
    let mut not_cached = Vec::new();
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
            if let Some(t) = &d.tokenizer
                && let Err(why) = super::hub::locate(t)
            {
                not_cached.push(layers.diag_at(
                    "data.tokenizer",
                    Diagnostic::error("missing-path", format!("tokenizer: {why}")).help(
                        "give a vocab.txt, a tokenizer.json, a folder holding either, or a \
                         Hugging Face id in the local cache",
                    ),
                ));
            }
        }
        DataConfig::CausalVae(d) => need("data.video_path", &d.video_path, "video data"),
    }
    if let ModelConfig::TextClassification(TextModel {
        pretrained: Some(dir),
        ..
    }) = &exp.model
    {
        match super::hub::locate(dir) {
            Ok(found) => {
                for file in ["config.json", "model.safetensors"] {
                    need(
                        "model.pretrained",
                        &found.path().join(file).to_string_lossy(),
                        "pretrained checkpoint file",
                    );
                }
            }
            Err(why) => not_cached.push(layers.diag_at(
                "model.pretrained",
                Diagnostic::error("missing-path", format!("pretrained checkpoint: {why}")).help(
                    "give a Hugging Face checkpoint folder, or a Hugging Face id in the local \
                     cache",
                ),
            )),
        }
    }
    if let Some(init) = &exp.init_from {
        need("init_from", init, "initial weights");
    }
    if let Some(resume) = exp.resume.as_deref().filter(|r| *r != "auto") {
        need("resume", resume, "checkpoint");
    }
    out.extend(not_cached);
    if let Some(missing) = tool_check(exp) {
        out.push(layers.diag_at(
            &missing.key,
            Diagnostic::error("missing-tool", missing.message).help(missing.help),
        ));
    }
    for refusal in capability::machine(&Query::of(exp), facts) {
        out.push(layers.diag_at(
            refusal.key,
            Diagnostic::error(refusal.code, refusal.message).help(refusal.help),
        ));
    }
    out
}
