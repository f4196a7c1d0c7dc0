//! Running a sweep's cells: each one `runner run … --sweep-cell NAME` child process (burn-flex's
//! random generator is process-wide, so two cells cannot share a process), at most
//! `parallel` at once, sharing the CPU cores (each cell's OpenMP and rayon threads) or the
//! GPUs (`CUDA_VISIBLE_DEVICES` per slot).
//!
//! Each child's output goes to `SWEEP_DIR/logs/<cell>.log`; the sweep prints one line as a
//! cell starts and one as it ends. The children are in process groups of their own, so a
//! Ctrl-C reaches the sweep alone, which passes it on once to every running cell (a second
//! one would end a cell without its checkpoint) and starts no new one.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// One cell to run.
pub struct Job {
    pub name: String,
    /// Its place in the sweep, for the progress lines.
    pub index: usize,
}

/// How to run the cells.
pub struct Exec {
    /// `runner` and the arguments every cell's command shares (`run EXP -p … --set …`).
    pub exe: PathBuf,
    pub args: Vec<OsString>,
    /// Where each cell's output goes (`<dir>/<cell>.log`).
    pub log_dir: PathBuf,
    pub parallel: usize,
    pub fail_fast: bool,
    /// Environment for each slot (threads, GPUs), by slot.
    pub slot_env: Vec<Vec<(String, String)>>,
    /// Cells in the whole sweep, for the progress lines.
    pub total: usize,
}

/// How a cell's process ended.
pub struct Ended {
    pub name: String,
    pub status: Option<ExitStatus>,
    pub seconds: f64,
    pub log: PathBuf,
}

impl Ended {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// What running the cells came to.
pub struct Report {
    pub ended: Vec<Ended>,
    /// Cells never started (a signal or `--fail-fast` stopped the sweep first).
    pub not_started: Vec<String>,
    /// The signal that stopped the sweep.
    pub signal: Option<i32>,
}

struct Running {
    child: Child,
    name: String,
    slot: usize,
    started: Instant,
    log: PathBuf,
}

/// Environment for `parallel` slots: CPU cells split the cores (unless the caller fixed the
/// thread counts); CUDA cells split the visible GPUs.
pub fn slot_env(parallel: usize, cuda: bool, gpus: usize) -> Vec<Vec<(String, String)>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let visible: Vec<String> = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) if !list.trim().is_empty() => {
            list.split(',').map(|s| s.trim().to_string()).collect()
        }
        _ => (0..gpus).map(|g| g.to_string()).collect(),
    };
    (0..parallel)
        .map(|slot| {
            let mut env = Vec::new();
            if cuda && parallel > 1 && !visible.is_empty() {
                let per = (visible.len() / parallel).max(1);
                let first = (slot * per) % visible.len();
                let mine: Vec<String> = (0..per)
                    .map(|i| visible[(first + i) % visible.len()].clone())
                    .collect();
                env.push(("CUDA_VISIBLE_DEVICES".to_string(), mine.join(",")));
            }
            if !cuda && parallel > 1 {
                let threads = (cores / parallel).max(1).to_string();
                for var in ["OMP_NUM_THREADS", "RAYON_NUM_THREADS"] {
                    if std::env::var_os(var).is_none() {
                        env.push((var.to_string(), threads.clone()));
                    }
                }
            }
            env
        })
        .collect()
}

/// Runs `jobs`, at most `exec.parallel` at once; returns when every started cell ended.
pub fn run(exec: &Exec, jobs: Vec<Job>) -> Result<Report> {
    std::fs::create_dir_all(&exec.log_dir)
        .with_context(|| format!("cannot create `{}`", exec.log_dir.display()))?;
    let signal = Arc::new(AtomicUsize::new(0));
    for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_usize(s, signal.clone(), s as usize)
            .context("cannot install the sweep's signal handlers")?;
    }
    let mut queue: std::collections::VecDeque<Job> = jobs.into();
    let mut running: Vec<Running> = Vec::new();
    let mut free: Vec<usize> = (0..exec.parallel.max(1)).rev().collect();
    let mut ended = Vec::new();
    let mut forwarded = false;
    let mut stopping = false;
    loop {
        let sig = signal.load(Ordering::SeqCst);
        if sig != 0 && !forwarded {
            forwarded = true;
            stopping = true;
            eprintln!(
                "sweep: {} received; stopping the {} running cell(s) at their next step (they resume when the sweep runs again)",
                crate::run::signals::name(sig as i32),
                running.len()
            );
            for r in &running {
                // SAFETY: kill(2) on a child we started and have not reaped.
                unsafe { libc::kill(r.child.id() as i32, sig as i32) };
            }
        }
        while !stopping && let Some(slot) = free.pop() {
            let Some(job) = queue.pop_front() else {
                free.push(slot);
                break;
            };
            let log = exec.log_dir.join(format!("{}.log", job.name));
            let out = File::options()
                .create(true)
                .append(true)
                .open(&log)
                .with_context(|| format!("cannot open `{}`", log.display()))?;
            let err = out.try_clone()?;
            let mut cmd = Command::new(&exec.exe);
            cmd.args(&exec.args)
                .arg("--sweep-cell")
                .arg(&job.name)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0);
            for (k, v) in exec.slot_env.get(slot).into_iter().flatten() {
                cmd.env(k, v);
            }
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let child = cmd
                .spawn()
                .with_context(|| format!("cannot start cell `{}`", job.name))?;
            eprintln!(
                "sweep: [{}/{}] {} started (log {})",
                job.index + 1,
                exec.total,
                job.name,
                log.display()
            );
            running.push(Running {
                child,
                name: job.name,
                slot,
                started: Instant::now(),
                log,
            });
        }
        if running.is_empty() && (queue.is_empty() || stopping) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut i = 0;
        while i < running.len() {
            match running[i].child.try_wait()? {
                None => i += 1,
                Some(status) => {
                    let r = running.swap_remove(i);
                    free.push(r.slot);
                    let e = Ended {
                        name: r.name,
                        status: Some(status),
                        seconds: r.started.elapsed().as_secs_f64(),
                        log: r.log,
                    };
                    eprintln!("sweep: {} {} ({:.1}s)", e.name, describe(status), e.seconds);
                    if !e.succeeded() && exec.fail_fast && !stopping {
                        stopping = true;
                        eprintln!("sweep: --fail-fast: stopping the other cells");
                        for other in &running {
                            // SAFETY: as above.
                            unsafe { libc::kill(other.child.id() as i32, libc::SIGTERM) };
                        }
                    }
                    ended.push(e);
                }
            }
        }
    }
    let sig = signal.load(Ordering::SeqCst);
    Ok(Report {
        ended,
        not_started: queue.into_iter().map(|j| j.name).collect(),
        signal: (sig != 0).then_some(sig as i32),
    })
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(0), _) => "completed".into(),
        (Some(2), _) => "refused (exit 2)".into(),
        (Some(c), _) if c > 128 => format!("stopped by {}", crate::run::signals::name(c - 128)),
        (Some(c), _) => format!("failed (exit {c})"),
        (None, Some(s)) => format!("killed by {}", crate::run::signals::name(s)),
        (None, None) => "ended".into(),
    }
}

/// The lines of a cell's log that say why it failed: from the last `error:` on.
pub fn error_lines(log: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let from = lines
        .iter()
        .rposition(|l| l.starts_with("error") || l.contains(" ERROR "))
        .unwrap_or(lines.len().saturating_sub(5));
    lines[from..]
        .iter()
        .take(12)
        .map(|l| l.to_string())
        .collect()
}
