//! runner's own launcher, as torchrun's: start this machine's workers (the same `runner run`
//! command line, with the rank contract in their environment), watch them, and stop them all
//! when one fails or the launcher is interrupted.
//!
//! A worker that fails is named at once (rank, pid, host, exit status or signal). The others
//! get [`GRACE`] to notice by themselves (their watchdog names the rank that stopped, and rank 0
//! records the failure in `meta.json`), then SIGTERM, then SIGKILL. Ctrl-C reaches every worker
//! from the terminal; SIGTERM or SIGHUP to the launcher is passed on to them. Workers get
//! `PR_SET_PDEATHSIG`, so they do not outlive a launcher that is killed outright.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::contract::{Role, worker_env};
use crate::config::types::HardwareConfig;

/// How long the other workers have to stop by themselves after one fails.
pub const GRACE: Duration = Duration::from_secs(30);
/// How long a worker has between SIGTERM and SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(10);

/// The workers to start on this machine.
#[derive(Debug, Clone)]
pub struct Workers {
    pub first_rank: usize,
    pub local_world: usize,
    pub world: usize,
    pub node_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// OpenMP threads per worker when the user set none (torchrun sets 1; runner shares the
    /// machine's cores among CPU workers).
    pub omp_threads: Option<usize>,
}

struct Worker {
    rank: usize,
    child: Child,
    status: Option<ExitStatus>,
}

/// Starts and watches this machine's workers for `role` (a [`Role::Launch`]); their exit code.
/// CPU workers share the machine's cores (OpenMP threads) unless `OMP_NUM_THREADS` is set.
pub fn launch(role: &Role, hw: &HardwareConfig) -> Result<ExitCode> {
    let Role::Launch {
        first_rank,
        local_world,
        world,
        node_rank,
        master_addr,
        master_port,
    } = role
    else {
        anyhow::bail!("this process is not the launcher of its machine's workers");
    };
    let omp_threads =
        (std::env::var_os("OMP_NUM_THREADS").is_none() && !hw.device.is_cuda()).then(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / local_world).max(1)
        });
    run(&Workers {
        first_rank: *first_rank,
        local_world: *local_world,
        world: *world,
        node_rank: *node_rank,
        master_addr: master_addr.clone(),
        master_port: *master_port,
        omp_threads,
    })
}

/// Runs the workers to the end; the launcher's exit code (0 when every worker succeeded, the
/// first failure's code otherwise, 128 + N after signal N).
pub fn run(w: &Workers) -> Result<ExitCode> {
    let exe =
        std::env::current_exe().context("cannot find the runner executable to start workers")?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let host = crate::host::hostname();
    let signal = Arc::new(AtomicUsize::new(0));
    for s in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register_usize(s, signal.clone(), s as usize)
            .context("cannot install the launcher's signal handlers")?;
    }

    let mut workers = Vec::with_capacity(w.local_world);
    for local in 0..w.local_world {
        let rank = w.first_rank + local;
        let mut cmd = Command::new(&exe);
        cmd.args(&args);
        for (k, v) in worker_env(
            rank,
            local,
            w.local_world,
            w.world,
            w.node_rank,
            &w.master_addr,
            w.master_port,
        ) {
            cmd.env(k, v);
        }
        if let Some(n) = w.omp_threads {
            cmd.env("OMP_NUM_THREADS", n.to_string());
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => workers.push(Worker {
                rank,
                child,
                status: None,
            }),
            Err(e) => {
                stop(&mut workers, libc::SIGTERM);
                return Err(e).with_context(|| format!("cannot start the worker of rank {rank}"));
            }
        }
    }
    tracing::info!(
        "started {} worker{} on {host}: rank{} {} of {}, rendezvous at {}:{}",
        w.local_world,
        if w.local_world == 1 { "" } else { "s" },
        if w.local_world == 1 { "" } else { "s" },
        if w.local_world == 1 {
            w.first_rank.to_string()
        } else {
            format!("{}–{}", w.first_rank, w.first_rank + w.local_world - 1)
        },
        w.world,
        w.master_addr,
        w.master_port
    );

    let mut first_failure: Option<(usize, ExitStatus)> = None;
    let mut failed_at: Option<Instant> = None;
    let mut termed_at: Option<Instant> = None;
    let mut interrupted: Option<i32> = None;
    loop {
        for wk in workers.iter_mut().filter(|w| w.status.is_none()) {
            if let Ok(Some(status)) = wk.child.try_wait() {
                wk.status = Some(status);
                if !status.success() && first_failure.is_none() && interrupted.is_none() {
                    eprintln!(
                        "error: rank {} (pid {}) on {host} {}",
                        wk.rank,
                        wk.child.id(),
                        describe(status)
                    );
                    first_failure = Some((wk.rank, status));
                    failed_at = Some(Instant::now());
                }
            }
        }
        if workers.iter().all(|w| w.status.is_some()) {
            break;
        }
        let sig = signal.swap(0, Ordering::SeqCst) as i32;
        if sig != 0 && interrupted.is_none() {
            interrupted = Some(sig);
            // Ctrl-C reached the workers from the terminal too; a signal sent to the launcher
            // alone is passed on.
            stop(
                &mut workers,
                if sig == libc::SIGINT {
                    libc::SIGINT
                } else {
                    libc::SIGTERM
                },
            );
            termed_at = Some(Instant::now());
        }
        let since = |t: Option<Instant>, d: Duration| t.is_some_and(|t| t.elapsed() >= d);
        if termed_at.is_none() && since(failed_at, GRACE) {
            eprintln!(
                "error: {} worker{} still running {}s after rank {} failed; stopping {}",
                running(&workers),
                if running(&workers) == 1 {
                    " is"
                } else {
                    "s are"
                },
                GRACE.as_secs(),
                first_failure.map_or(0, |f| f.0),
                if running(&workers) == 1 { "it" } else { "them" },
            );
            stop(&mut workers, libc::SIGTERM);
            termed_at = Some(Instant::now());
        }
        if since(termed_at, KILL_AFTER) {
            stop(&mut workers, libc::SIGKILL);
            termed_at = None;
            failed_at = None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(sig) = interrupted {
        eprintln!("runner: interrupted; every worker has stopped");
        return Ok(ExitCode::from(128 + sig as u8));
    }
    Ok(match first_failure {
        None => ExitCode::SUCCESS,
        Some((_, status)) => ExitCode::from(status.code().map_or(1, |c| c.clamp(1, 255) as u8)),
    })
}

fn running(workers: &[Worker]) -> usize {
    workers.iter().filter(|w| w.status.is_none()).count()
}

/// Sends `sig` to every worker still running.
fn stop(workers: &mut [Worker], sig: i32) {
    for w in workers.iter().filter(|w| w.status.is_none()) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(w.child.id() as i32, sig);
        }
    }
}

/// "exited with status 3", "was killed by signal 9 (SIGKILL)".
pub fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(sig) => format!("was killed by signal {sig}{}", signal_name(sig)),
        None => format!("ended ({status})"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => " (SIGKILL: killed outright, or by the out-of-memory killer)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGSEGV => " (SIGSEGV: a crash)",
        libc::SIGABRT => " (SIGABRT: an abort, often a C++ exception in libtorch)",
        libc::SIGBUS => " (SIGBUS)",
        _ => "",
    }
}
