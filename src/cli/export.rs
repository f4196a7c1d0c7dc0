//! `runner export`: a finished run's weights under the reference implementation's names.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::report;
use crate::error::fail;
use crate::{jobs, rundir};

pub fn export(
    run_dir: &Path,
    encoder_only: bool,
    checkpoint: Option<&Path>,
    output: Option<&Path>,
) -> Result<ExitCode> {
    let resolved = match crate::run::resolve_run_dir(run_dir)? {
        Ok(r) => r,
        Err(d) => return Ok(report(&d, &run_dir.join(rundir::RESOLVED_CONFIG))),
    };
    let weights = match checkpoint {
        Some(p) if p.is_dir() => p.join(crate::train::checkpoint::MODEL),
        Some(p) => p.to_path_buf(),
        None => {
            let final_model = run_dir.join(crate::train::trainer::FINAL_WEIGHTS);
            if !final_model.is_file() {
                return Err(fail(
                    format!(
                        "`{}` has no model.safetensors (the run has not finished)",
                        run_dir.display()
                    ),
                    format!(
                        "export a checkpoint with --checkpoint {}/checkpoints/step-N",
                        run_dir.display()
                    ),
                ));
            }
            final_model
        }
    };
    let out = output.map(Path::to_path_buf).unwrap_or_else(|| {
        run_dir.join("export").join(if encoder_only {
            "encoder.safetensors"
        } else {
            "mae.safetensors"
        })
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let done = jobs::export(&resolved.experiment, &weights, encoder_only, &out)?;
    println!(
        "wrote {} ({} tensors, {} parameters) from {}",
        out.display(),
        done.tensors,
        done.parameters,
        weights.display()
    );
    Ok(ExitCode::SUCCESS)
}
