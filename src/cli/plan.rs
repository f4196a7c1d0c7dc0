//! `runner plan`: what a run will cost before it runs (`crate::plan`), as a short report or
//! JSON, with the learning-rate curve as a picture (`--plot`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::{ConfigArgs, DiffFormat, report, resolve_or_report};
use crate::jobs::sizing::Counted;
use crate::plan::{self, bytes};
use crate::plot::{self, Chart, Curve};

pub fn plan(
    config: &ConfigArgs,
    format: DiffFormat,
    picture: Option<&Path>,
    measure: bool,
) -> Result<ExitCode> {
    let resolved = match resolve_or_report(config) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    crate::config::print_warnings(&resolved);
    if let Some(help) = crate::jobs::sizing::unplannable(&resolved.experiment) {
        eprintln!("{}", crate::error::render(&anyhow::Error::new(help), ""));
        return Ok(ExitCode::from(super::EXIT_CONFIG));
    }
    if measure {
        // Training here needs what `runner run` needs of this machine.
        let problems = crate::run::machine_problems(&resolved);
        if problems.has_errors() {
            return Ok(report(&problems, &config.experiment));
        }
    }
    let p = plan::plan(&resolved, measure)?;
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
        "steps      {} examples{} → {} steps/epoch, {} steps ({:.2} epochs), warmup {}\n",
        s.examples,
        match s.examples_counted {
            Counted::Data => "",
            Counted::Given => " (data.num_examples)",
        },
        s.steps_per_epoch,
        s.total_steps,
        s.epochs,
        s.warmup_steps
    );
    out += &format!(
        "work       {} samples/step, {} samples; {} evaluations, {} checkpoints ({} kept)\n",
        s.global_batch_size, s.samples, s.evaluations, s.checkpoints_written, s.checkpoints_kept
    );
    let w = &p.work;
    out += &format!(
        "model      {} parameters; {}/step ({} forward per sample of {:.0} {}), {} in all\n",
        p.parameters,
        flops(w.flops_per_step),
        flops(w.forward_flops_per_sample),
        w.units_per_sample,
        w.unit,
        flops(w.flops_per_run)
    );
    let ckpt = if m.activations == m.activations_with_checkpointing
        && m.activations != m.activations_without_checkpointing
    {
        format!(
            " (gradient checkpointing; {} without)",
            bytes(m.activations_without_checkpointing)
        )
    } else {
        format!(
            " ({} with gradient checkpointing)",
            bytes(m.activations_with_checkpointing)
        )
    };
    out += &format!(
        "memory     {} per rank{}: model states {} (weights {}, gradients {}, AdamW {}{}), \
         activations {}{ckpt}, backward's peak {} (activations with the gradients made so \
         far), eval batch {}{}{}{}\n",
        bytes(m.total),
        match (&m.device, m.fits) {
            (Some(d), Some(true)) => format!(" of {} ({})", bytes(d.bytes), d.name),
            (Some(_), _) => String::new(),
            _ => " (no device memory to hold it against: set hardware.device_model)".into(),
        },
        bytes(m.model_states),
        bytes(m.parameters),
        bytes(m.gradients),
        bytes(m.optimizer_state),
        if m.compute_copy > 0 {
            format!(", low-precision copy {}", bytes(m.compute_copy))
        } else {
            String::new()
        },
        bytes(m.activations),
        bytes(m.backward_peak),
        bytes(m.eval_batch),
        if m.loader_prefetch > 0 {
            format!(", loader prefetch {}", bytes(m.loader_prefetch))
        } else {
            String::new()
        },
        if m.conv_workspace > 0 {
            format!(", convolution columns {}", bytes(m.conv_workspace))
        } else {
            String::new()
        },
        if m.matmul_workspace > 0 {
            format!(", matmul packing {}", bytes(m.matmul_workspace))
        } else {
            String::new()
        },
    );
    if let (Some(d), Some(false)) = (&m.device, m.fits) {
        out += &format!(
            "           WARNING: {} more than the {} of {}: it will run out of memory. Each \
             of these keeps the global batch:\n",
            bytes(m.total - d.bytes),
            bytes(d.bytes),
            d.name
        );
    }
    for line in &m.advice {
        out += &format!("           {line}\n");
    }
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
    if let Some(m) = &p.measured {
        let each: Vec<String> = m.step_seconds.iter().map(|s| format!("{s:.3}")).collect();
        out += &format!(
            "measured   {:.3} s/step on {} (median of {} s), {} for the run at that pace{}\n",
            m.median_step_seconds,
            m.device,
            each.join(", "),
            duration(m.run_seconds),
            match m.peak_rss {
                Some(peak) => format!("; peak resident memory {}", bytes(peak)),
                None => String::new(),
            } + &match m.allocated_at_first_step.zip(m.peak_allocated) {
                Some((first, peak)) => format!(
                    ", peak allocated {} (+{} during the steps)",
                    bytes(peak),
                    bytes(peak.saturating_sub(first))
                ),
                None => String::new(),
            }
        );
    }
    match &p.time {
        Some(t) => {
            out += &format!(
                "time       an estimate: {:.3} s/step, {} for the run, at {:.0}% of {}'s {} \
                 TFLOP/s\n",
                t.step_seconds,
                duration(t.run_seconds),
                t.utilisation * 100.0,
                t.device,
                t.peak_tflops
            )
        }
        None if p.measured.is_none() => {
            out += "time       not estimated: no peak throughput for this device (--measure \
                    times real steps here)\n"
        }
        None => {}
    }
    for note in &p.notes {
        out += &format!("note       {note}\n");
    }
    out
}

/// FLOPs as people read them (`1.2 TFLOP`).
fn flops(n: f64) -> String {
    const UNITS: [&str; 6] = ["", "k", "M", "G", "T", "P"];
    let mut v = n;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}FLOP", UNITS[u])
}

/// Seconds as hours and minutes.
fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}
