//! `runner plan`: what a run will cost before it runs (`crate::plan`), as a short report or
//! JSON, with the learning-rate curve as a picture (`--plot`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::{ConfigArgs, DiffFormat, resolve_or_report};
use crate::plan::{self, bytes};
use crate::plot::{self, Chart, Curve};

pub fn plan(config: &ConfigArgs, format: DiffFormat, picture: Option<&Path>) -> Result<ExitCode> {
    let resolved = match resolve_or_report(config) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    crate::config::print_warnings(&resolved);
    let p = plan::plan(&resolved)?;
    if let Some(path) = picture {
        let mut curves = vec![Curve {
            label: "learning rate".into(),
            points: p.lr.points.clone(),
        }];
        if p.lr.warmup_end_step > 0.0 {
            curves.push(Curve {
                label: format!("warmup end (step {})", p.lr.warmup_end_step),
                points: vec![
                    (p.lr.warmup_end_step, 0.0),
                    (p.lr.warmup_end_step, p.lr.peak),
                ],
            });
        }
        let chart = Chart {
            title: "learning rate per step",
            x_label: "step",
            y_label: "lr",
            log_y: false,
        };
        plot::draw(path, &chart, &curves)?;
    }
    match format {
        DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&p)?),
        DiffFormat::Text => print!("{}", text(&p)),
    }
    if let Some(path) = picture {
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn text(p: &plan::Plan) -> String {
    let s = &p.steps;
    let m = &p.memory_per_rank;
    let d = &p.disk;
    let mut out = format!("{}\n", p.summary);
    out += &format!(
        "steps      {} examples → {} steps/epoch, {} steps ({:.2} epochs), warmup {}\n",
        s.examples, s.steps_per_epoch, s.total_steps, s.epochs, s.warmup_steps
    );
    out += &format!(
        "work       {} samples/step, {} samples; {} evaluations, {} checkpoints ({} kept)\n",
        s.global_batch_size, s.samples, s.evaluations, s.checkpoints_written, s.checkpoints_kept
    );
    out += &format!("parameters {}\n", p.parameters);
    out += &format!(
        "memory     {} per rank in model states: weights {}, gradients {}, AdamW {}{}\n",
        bytes(m.model_states),
        bytes(m.parameters),
        bytes(m.gradients),
        bytes(m.optimizer_state),
        if m.compute_copy > 0 {
            format!(", low-precision copy {}", bytes(m.compute_copy))
        } else {
            String::new()
        }
    );
    out += &format!(
        "disk       {}: {} checkpoint(s) of {}, final weights {}{}{}\n",
        bytes(d.total),
        d.checkpoints_kept,
        bytes(d.checkpoint_bytes),
        bytes(d.final_weights),
        if d.best_weights > 0 {
            format!(", best {}", bytes(d.best_weights))
        } else {
            String::new()
        },
        match (d.free, d.fits) {
            (Some(f), Some(true)) => format!("; {} free", bytes(f)),
            (Some(f), _) => format!("; only {} free: WARNING, the run will not fit", bytes(f)),
            _ => String::new(),
        }
    );
    out += &format!(
        "lr         {} (peak {:.3e}, {:.3e} → {:.3e})\n",
        p.lr.sparkline, p.lr.peak, p.lr.first, p.lr.last
    );
    out += &format!("not estimated yet: {}\n", p.not_estimated.join(", "));
    out
}
