//! `runner launch --slurm` against a real Slurm: a one-machine cluster from Debian's
//! `slurmctld`, `slurmd` and `munge`, brought up in a temporary directory (its own munge key and
//! socket, ports, state and spool), a tiny experiment trained through sbatch and srun with two
//! tasks, and the run directory checked. Needs root (slurmd starts jobs as their user) and the
//! packages, which `.ci/run` installs. Part of the `tch` tests: the tasks train data-parallel.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn which(program: &str) -> Option<PathBuf> {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(program))
    .find(|p| p.is_file())
}

/// A one-node Slurm cluster living in a temporary directory; stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<Child>,
}

impl Cluster {
    fn start() -> Cluster {
        let missing: Vec<&str> = ["munged", "slurmctld", "slurmd", "sbatch", "srun", "sinfo"]
            .into_iter()
            .filter(|p| which(p).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "{missing:?} not installed: apt-get install slurmctld slurmd slurm-client munge \
             (.ci/run does)"
        );
        assert_eq!(
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0")),
            Some(true),
            "slurmd must run as root to start jobs"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["munge", "state", "spool"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        let key = d.join("munge/munge.key");
        let bytes: Vec<u8> = (0..1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&key, bytes).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::fs::set_permissions(d.join("munge"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let socket = d.join("munge/munge.socket");

        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_string();
        let short = host.split('.').next().unwrap().to_string();
        let cpus = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        let conf = d.join("slurm.conf");
        let p = |name: &str| d.join(name).display().to_string();
        std::fs::write(
            &conf,
            format!(
                "ClusterName=runnertest\n\
                 SlurmctldHost={short}(127.0.0.1)\n\
                 SlurmUser=root\nSlurmdUser=root\n\
                 AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={socket}\n\
                 StateSaveLocation={state}\nSlurmdSpoolDir={spool}\n\
                 SlurmctldPidFile={ctldpid}\nSlurmdPidFile={dpid}\n\
                 SlurmctldPort={ctld}\nSlurmdPort={slurmd}\n\
                 SlurmctldLogFile={ctldlog}\nSlurmdLogFile={dlog}\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
                 ReturnToService=2\nMpiDefault=none\n\
                 JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
                 NodeName={short} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
                 PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
                socket = socket.display(),
                state = p("state"),
                spool = p("spool"),
                ctldpid = p("slurmctld.pid"),
                dpid = p("slurmd.pid"),
                ctld = free_port(),
                slurmd = free_port(),
                ctldlog = p("slurmctld.log"),
                dlog = p("slurmd.log"),
            ),
        )
        .unwrap();

        let mut daemons = Vec::new();
        let mut spawn = |program: &str, args: &[String]| {
            let child = Command::new(which(program).unwrap())
                .args(args)
                .env("SLURM_CONF", &conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
            daemons.push(child);
        };
        spawn(
            "munged",
            &[
                "-F".into(),
                "-f".into(),
                format!("--key-file={}", key.display()),
                format!("--socket={}", socket.display()),
                format!("--pid-file={}", p("munge/munged.pid")),
                format!("--log-file={}", p("munge/munged.log")),
                format!("--seed-file={}", p("munge/munged.seed")),
            ],
        );
        wait_until("munged's socket", Duration::from_secs(20), || {
            socket.exists()
        });
        spawn("slurmctld", &["-D".into(), "-c".into(), "-i".into()]);
        spawn("slurmd", &["-D".into()]);
        let cluster = Cluster { dir, conf, daemons };
        wait_until("the node to be idle", Duration::from_secs(60), || {
            cluster.slurm("sinfo", &["-h", "-o", "%T"]).trim() == "idle"
        });
        cluster
    }

    fn slurm(&self, program: &str, args: &[&str]) -> String {
        Command::new(which(program).unwrap())
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- {f}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.slurm("scancel", &["--full", "--user=root"]);
        for d in self.daemons.iter_mut().rev() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn launch_slurm_trains_on_two_tasks_and_runs_a_sweep_as_a_job_array() {
    let cluster = Cluster::start();
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let launched = stdout(
        runner()
            .env("SLURM_CONF", &cluster.conf)
            .env("OMP_NUM_THREADS", "1")
            .args([
                "launch",
                "experiments/mnli-tiny.yaml",
                "--slurm",
                "--time=10",
                "--output-dir",
            ])
            .arg(&run)
            .args([
                "hardware.backend=tch",
                "hardware.nproc_per_node=2",
                "train.per_device_batch_size=8",
                "train.max_steps=20",
                "loader.num_workers=0",
            ])
            .arg(format!("hardware.master_port={}", free_port())),
    );
    let job = launched
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in {launched:?}"))
        .trim_end_matches(':')
        .to_string();
    let script = std::fs::read_to_string(run.join("slurm.sbatch")).unwrap();
    assert!(
        script.contains("#SBATCH --ntasks-per-node=2")
            && script.contains("srun --kill-on-bad-exit=1"),
        "{script}"
    );

    // The job ends: its meta.json says how (or the queue forgets it).
    let meta_of = || -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).ok()?).ok()
    };
    let start = Instant::now();
    loop {
        let done = meta_of().is_some_and(|m| m["status"] != "running");
        let queued = cluster.slurm("squeue", &["-h", "-j", &job]).contains(&job);
        if done && !queued {
            break;
        }
        if !queued && start.elapsed() > Duration::from_secs(20) && meta_of().is_none() {
            panic!(
                "job {job} left the queue without a run: {}\n{}",
                std::fs::read_to_string(run.join(format!("slurm-{job}.out"))).unwrap_or_default(),
                cluster.logs()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "job {job} still running after 5 minutes\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let output = std::fs::read_to_string(run.join(format!("slurm-{job}.out"))).unwrap_or_default();
    let meta = meta_of().unwrap();
    assert_eq!(meta["status"], "completed", "{meta}\n{output}");
    assert!(output.contains("trained 20 steps"), "{output}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["samples"], 20 * 16, "two tasks of 8: {summary}");
    let log = std::fs::read_to_string(run.join("ranks/rank-1.log")).unwrap();
    assert!(
        log.contains("rank 1 on ") && log.contains("(of 2 ranks)"),
        "{log}"
    );
    assert!(
        metrics(&run)
            .iter()
            .filter(|m| m.get("loss").is_some())
            .count()
            >= 4
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        1,
        "one run directory"
    );

    // `rerun` submits a Slurm run again, with its sbatch options, into a new directory.
    let again = out.path().join("again");
    let said = stdout(
        runner()
            .env("SLURM_CONF", &cluster.conf)
            .env("OMP_NUM_THREADS", "1")
            .arg("rerun")
            .arg(&run)
            .arg("--output-dir")
            .arg(&again),
    );
    assert!(said.contains("submitted batch job"), "{said}");
    let script = std::fs::read_to_string(again.join("slurm.sbatch")).unwrap();
    assert!(
        script.contains("#SBATCH --time=10") && script.contains("config.resolved.yaml"),
        "{script}"
    );
    let status = |dir: &Path| -> Option<String> {
        let text = std::fs::read_to_string(dir.join("meta.json")).ok()?;
        let meta: serde_json::Value = serde_json::from_str(&text).ok()?;
        meta["status"].as_str().map(str::to_owned)
    };
    wait_until("the rerun", Duration::from_secs(300), || {
        status(&again).is_some_and(|s| s != "running")
            && cluster.slurm("squeue", &["-h"]).trim().is_empty()
    });
    assert_eq!(
        status(&again).as_deref(),
        Some("completed"),
        "{}",
        cluster.logs()
    );
    assert_eq!(metrics(&again).len(), metrics(&run).len());

    // A sweep is one job array: a task per cell, each running its cell by name.
    let sweep = out.path().join("sweep");
    let launched = stdout(
        runner()
            .env("SLURM_CONF", &cluster.conf)
            .env("OMP_NUM_THREADS", "1")
            .args([
                "launch",
                "experiments/mnli-tiny.yaml",
                "--slurm",
                "--time=10",
            ])
            .arg("--output-dir")
            .arg(&sweep)
            .args(["-m", "seed=1,2", "--set", "sweep.max_parallel=2"])
            .args([
                "train.max_steps=4",
                "eval.strategy=no",
                "loader.num_workers=0",
            ]),
    );
    let job = launched
        .split_whitespace()
        .skip_while(|w| *w != "array")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in {launched:?}"))
        .trim_end_matches(':')
        .to_string();
    let script = std::fs::read_to_string(sweep.join("slurm.sbatch")).unwrap();
    assert!(
        script.contains("#SBATCH --array=0-1%2") && script.contains("--sweep-cell"),
        "{script}"
    );
    let cell_status = |cell: &str| -> Option<String> {
        let text = std::fs::read_to_string(sweep.join(cell).join("meta.json")).ok()?;
        let meta: serde_json::Value = serde_json::from_str(&text).ok()?;
        meta["status"].as_str().map(str::to_owned)
    };
    wait_until("the array's two cells", Duration::from_secs(300), || {
        let ended = ["seed=1", "seed=2"]
            .iter()
            .all(|c| cell_status(c).is_some_and(|s| s != "running"));
        ended && !cluster.slurm("squeue", &["-h", "-j", &job]).contains(&job)
    });
    for (i, cell) in ["seed=1", "seed=2"].iter().enumerate() {
        let output =
            std::fs::read_to_string(sweep.join(format!("slurm-{job}_{i}.out"))).unwrap_or_default();
        assert_eq!(cell_status(cell).as_deref(), Some("completed"), "{output}");
        assert!(output.contains("trained 4 steps"), "{output}");
    }
    let rows: serde_json::Value = serde_json::from_str(&stdout(
        runner().arg("runs").arg(&sweep).args(["--format", "json"]),
    ))
    .unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
}
