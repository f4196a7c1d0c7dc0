//! What changed between a run's record and now: the code (commit, dirty patch), the build
//! (runner, Cargo.lock, burn, libtorch, the CUDA driver) and the data (content). Each is a
//! [`Drift`]; an mtime that moved while the content stayed, or another CPU, is a note.

use std::path::Path;

use serde::Serialize;

use super::RunRecord;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// `code`, `build` or `data`.
    pub section: &'static str,
    pub what: String,
    pub then: String,
    pub now: String,
    /// Only worth knowing: it does not make the rerun another experiment.
    pub note: bool,
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "(none)".into())
}

/// `recorded` against this binary, machine and files.
pub fn compare(recorded: &RunRecord) -> Vec<Drift> {
    let mut out = Vec::new();
    let mut push = |section, what: &str, then: String, now: String, note| {
        if then != now {
            out.push(Drift {
                section,
                what: what.to_string(),
                then,
                now,
                note,
            });
        }
    };
    // --- code
    if let Some(code) = &recorded.code {
        match super::code::take(Path::new(&code.root)) {
            Some(now) => {
                push(
                    "code",
                    "commit",
                    text(&code.commit),
                    text(&now.code.commit),
                    false,
                );
                push(
                    "code",
                    "uncommitted changes (sha256 of `git diff HEAD`)",
                    text(&code.patch_sha256),
                    text(&now.code.patch_sha256),
                    false,
                );
            }
            None => push(
                "code",
                "work tree",
                code.root.clone(),
                "(not a git work tree now)".into(),
                false,
            ),
        }
    }
    // --- build
    let b = &recorded.build;
    let now = super::build::now(&b.backend, b.cuda_driver.is_some());
    push(
        "build",
        "runner version",
        b.runner_version.clone(),
        now.runner_version.clone(),
        false,
    );
    push(
        "build",
        "runner build commit",
        b.runner_commit.clone(),
        now.runner_commit.clone(),
        false,
    );
    push(
        "build",
        "Cargo.lock (sha256)",
        b.cargo_lock_sha256.clone(),
        now.cargo_lock_sha256.clone(),
        false,
    );
    push(
        "build",
        "burn",
        b.burn_version.clone(),
        now.burn_version.clone(),
        false,
    );
    push(
        "build",
        "libtorch",
        text(&b.libtorch_version),
        text(&now.libtorch_version),
        false,
    );
    if b.cuda_driver.is_some() {
        push(
            "build",
            "CUDA driver",
            text(&b.cuda_driver),
            text(&now.cuda_driver),
            false,
        );
        push(
            "build",
            "CUDA devices",
            b.cuda_devices.join(", "),
            now.cuda_devices.join(", "),
            false,
        );
    }
    push(
        "build",
        "CPU",
        b.cpu_model.clone(),
        now.cpu_model.clone(),
        true,
    );
    push(
        "build",
        "CPUs",
        b.cpus.to_string(),
        now.cpus.to_string(),
        true,
    );
    // --- data
    for f in &recorded.data {
        let now = super::data::fingerprint(&f.key, Path::new(&f.path));
        let what = format!("{} ({})", f.path, f.key);
        // A Hugging Face id is read again from today's cache: its revision may name another
        // commit now (the recorded snapshot folder can still be there, unchanged).
        if let Some(hub) = &f.hub {
            let today = crate::config::hub::resolve(
                &crate::config::hub::cache_dir(),
                &hub.id,
                Some(&hub.revision),
            )
            .map(|s| s.sha)
            .unwrap_or_else(|why| why);
            if today != hub.sha {
                push(
                    "data",
                    &format!("{}@{} ({})", hub.id, hub.revision, f.key),
                    hub.sha.clone(),
                    today,
                    false,
                );
            }
        }
        if now.kind != f.kind {
            push("data", &what, f.kind.clone(), now.kind.clone(), false);
        } else if now.xxh3 != f.xxh3 || now.size != f.size {
            push(
                "data",
                &what,
                format!("{} bytes, xxh3 {}", f.size, &f.xxh3[..16.min(f.xxh3.len())]),
                format!(
                    "{} bytes, xxh3 {}",
                    now.size,
                    &now.xxh3[..16.min(now.xxh3.len())]
                ),
                false,
            );
        } else if now.mtime != f.mtime {
            push(
                "data",
                &format!("{what}: modified time (same content)"),
                text(&f.mtime),
                text(&now.mtime),
                true,
            );
        }
    }
    out
}

/// The commands that bring back the recorded code (when it is not what is checked out now).
pub fn restore_commands(recorded: &RunRecord, run_dir: &Path) -> Vec<String> {
    let Some(code) = &recorded.code else {
        return Vec::new();
    };
    let Some(commit) = &code.commit else {
        return Vec::new();
    };
    let short = &commit[..12.min(commit.len())];
    let tree = format!("{}-rerun-{short}", code.root);
    let mut cmds = vec![format!("git -C {} worktree add {tree} {commit}", code.root)];
    if let Some(patch) = &code.patch {
        cmds.push(format!(
            "git -C {tree} apply {}",
            crate::host::absolute(&run_dir.join(patch)).display()
        ));
    }
    if code.untracked.iter().any(|u| u.copied) {
        cmds.push(format!(
            "cp -r {}/. {tree}/",
            crate::host::absolute(&run_dir.join(super::code::DIR).join("untracked")).display()
        ));
    }
    cmds.push(format!(
        "# and the runner it ran with: version {}, built from {}",
        recorded.build.runner_version,
        if recorded.build.runner_commit.is_empty() {
            "an unknown commit"
        } else {
            &recorded.build.runner_commit
        }
    ));
    cmds
}
