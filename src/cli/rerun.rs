//! `runner rerun RUN_DIR`: the recorded configuration trained again into a new directory,
//! after comparing the run's record (code, build, data) with now (`record::drift`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::{LogFormat, refuse};
use crate::config::Request;
use crate::record::{self, drift};
use crate::rundir;

pub const DRIFT_FILE: &str = "drift.json";

pub fn rerun(
    run_dir: &Path,
    output_dir: Option<&str>,
    check: bool,
    allow_drift: bool,
    quiet: bool,
    log_format: LogFormat,
) -> Result<ExitCode> {
    if !rundir::is_run_dir(run_dir) {
        return Ok(refuse(&format!(
            "`{}` is not a run directory: it has no {}",
            run_dir.display(),
            rundir::RESOLVED_CONFIG
        )));
    }
    let Some(recorded) = record::read(run_dir) else {
        return Ok(refuse(&format!(
            "`{}` has no readable {} (a run recorded by an older runner), so there is nothing to \
             compare with now; train its configuration again with `runner run {}`",
            run_dir.display(),
            record::RECORD,
            run_dir.join(rundir::RESOLVED_CONFIG).display()
        )));
    };
    let found = drift::compare(&recorded);
    let real = found.iter().filter(|d| !d.note).count();
    for d in &found {
        eprintln!(
            "{} {}: {}\n    then: {}\n    now:  {}",
            if d.note { "note:" } else { "drift:" },
            d.section,
            d.what,
            d.then,
            d.now
        );
    }
    if check {
        println!(
            "{}: {}",
            run_dir.display(),
            if real == 0 {
                "the code, build and data are as recorded".to_string()
            } else {
                format!(
                    "{real} difference{} from the record",
                    if real == 1 { "" } else { "s" }
                )
            }
        );
        return Ok(ExitCode::from(u8::from(real > 0)));
    }
    if real > 0 && !allow_drift {
        let restore = drift::restore_commands(&recorded, run_dir);
        let code_drifted = found.iter().any(|d| d.section == "code" && !d.note);
        eprintln!(
            "error: {real} difference{} between `{}`'s record and now; not rerun. Pass \
             --allow-drift to rerun anyway (the differences are then recorded in the new run)",
            if real == 1 { "" } else { "s" },
            run_dir.display()
        );
        if code_drifted && !restore.is_empty() {
            eprintln!("help: the recorded code comes back with:");
            for c in restore {
                eprintln!("    {c}");
            }
        }
        return Ok(ExitCode::from(1));
    }
    let out = match output_dir {
        Some(d) => d.to_string(),
        None => format!(
            "{}-rerun-{}",
            run_dir.display().to_string().trim_end_matches('/'),
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        ),
    };
    // A run launched through Slurm is submitted again the same way, with its sbatch options.
    if let Ok(script) = std::fs::read_to_string(run_dir.join(crate::dist::slurm::SCRIPT)) {
        let o = crate::dist::slurm::options_from_script(&script);
        let config = super::ConfigArgs {
            experiment: run_dir.join(rundir::RESOLVED_CONFIG),
            profiles: Vec::new(),
            set: vec!["resume=null".into()],
            seed: None,
            output_dir: Some(out.clone()),
            multirun: Vec::new(),
            overrides: Vec::new(),
        };
        let slurm = super::SlurmArgs {
            slurm: true,
            print: false,
            partition: o.partition,
            time: o.time,
            account: o.account,
            qos: o.qos,
            cpus_per_task: o.cpus_per_task,
            sbatch: o.extra,
        };
        let code = super::launch::launch(&config, &slurm)?;
        write_drift(Path::new(&out), run_dir, &found, real)?;
        return Ok(code);
    }
    let req = Request {
        output_dir: Some(out.clone()),
        // A fresh run of the same configuration, not a continuation of a checkpoint.
        overrides: vec!["resume=null".into()],
        ..rundir::recorded_request(run_dir, Request::default().with_process_env())
    };
    let code = super::run::execute(&req, false, quiet, log_format)?;
    write_drift(Path::new(&out), run_dir, &found, real)?;
    Ok(code)
}

/// `drift.json` in the new run, when it was rerun despite differences.
fn write_drift(new_dir: &Path, run_dir: &Path, found: &[drift::Drift], real: usize) -> Result<()> {
    if real == 0 || !new_dir.is_dir() {
        return Ok(());
    }
    let record = serde_json::json!({
        "rerun_of": crate::host::absolute(run_dir).display().to_string(),
        "differences": found,
    });
    crate::durable::write(
        &new_dir.join(DRIFT_FILE),
        &serde_json::to_vec_pretty(&record)?,
    )
}
