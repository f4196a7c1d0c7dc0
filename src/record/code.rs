//! The code a run was trained from: the git commit, branch and remote of the experiment's
//! work tree, and when it is dirty the change itself (`git diff HEAD --binary`) and the
//! untracked files under the experiment's directory, so that a dirty run can be rebuilt.

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where the patch and the copied files go in the run directory.
pub const DIR: &str = "code";
pub const PATCH: &str = "git.patch";
/// A patch larger than this is hashed and listed, not kept.
const MAX_PATCH: usize = 16 << 20;
/// Untracked files up to this size are copied; larger ones are listed with their hash.
const MAX_COPY: u64 = 256 << 10;
/// Bytes of untracked files copied into one run directory at most.
const MAX_COPIES: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Code {
    pub root: String,
    pub commit: Option<String>,
    pub branch: Option<String>,
    /// `origin`'s URL, credentials taken out.
    pub remote: Option<String>,
    pub dirty: bool,
    /// Of `git diff HEAD --binary` (absent when clean).
    pub patch_sha256: Option<String>,
    /// `code/git.patch` when it was kept.
    pub patch: Option<String>,
    pub untracked: Vec<Untracked>,
    /// What the record left out, and why (a size cap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Untracked {
    /// Relative to the work tree's root.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Whether a copy is under `code/untracked/`.
    pub copied: bool,
}

/// The code and the bytes to keep beside the record.
pub struct Taken {
    pub code: Code,
    patch: Option<Vec<u8>>,
    copies: Vec<(String, Vec<u8>)>,
}

fn git(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

fn git_text(dir: &Path, args: &[&str]) -> Option<String> {
    git(dir, args).map(|b| String::from_utf8_lossy(&b).trim().to_string())
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// `https://user:token@host/x.git` → `https://host/x.git`.
pub fn strip_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((auth, host)) if !auth.contains('/') => format!("{scheme}://{host}"),
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The git state of the work tree holding `dir`; `None` outside one or without git.
pub fn take(dir: &Path) -> Option<Taken> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let root = git_text(dir, &["rev-parse", "--show-toplevel"])?;
    let root_path = Path::new(&root);
    let commit = git_text(dir, &["rev-parse", "HEAD"]);
    let branch = git_text(dir, &["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD");
    let remote = git_text(dir, &["remote", "get-url", "origin"]).map(|u| strip_credentials(&u));
    let patch = git(root_path, &["diff", "HEAD", "--binary"]).filter(|p| !p.is_empty());
    let mut left_out = Vec::new();
    let patch_sha256 = patch.as_deref().map(sha256);
    let patch = match patch {
        Some(p) if p.len() > MAX_PATCH => {
            left_out.push(format!(
                "the patch ({} bytes, over {} MiB): its sha256 is recorded",
                p.len(),
                MAX_PATCH >> 20
            ));
            None
        }
        p => p,
    };
    // Untracked files under the experiment's directory (what `git status` would list).
    let listed = git(
        dir,
        &[
            "ls-files",
            "--others",
            "--exclude-standard",
            "--full-name",
            "-z",
            ".",
        ],
    )
    .unwrap_or_default();
    let mut untracked = Vec::new();
    let mut copies = Vec::new();
    let mut copied_bytes = 0u64;
    for rel in listed.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = String::from_utf8_lossy(rel).into_owned();
        let Ok(bytes) = std::fs::read(root_path.join(&rel)) else {
            continue;
        };
        let size = bytes.len() as u64;
        let copy = size <= MAX_COPY && copied_bytes + size <= MAX_COPIES;
        if copy {
            copied_bytes += size;
        } else {
            left_out.push(format!(
                "untracked `{rel}` ({size} bytes): listed with its sha256, not copied"
            ));
        }
        untracked.push(Untracked {
            path: rel.clone(),
            size,
            sha256: sha256(&bytes),
            copied: copy,
        });
        if copy {
            copies.push((rel, bytes));
        }
    }
    let dirty = patch_sha256.is_some();
    Some(Taken {
        code: Code {
            root,
            commit,
            branch,
            remote,
            dirty,
            patch: patch.as_ref().map(|_| format!("{DIR}/{PATCH}")),
            patch_sha256,
            untracked,
            left_out,
        },
        patch,
        copies,
    })
}

impl Taken {
    /// Writes the patch and the copies under `run_dir/code/`.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        if self.patch.is_none() && self.copies.is_empty() {
            return Ok(());
        }
        let dir = run_dir.join(DIR);
        std::fs::create_dir_all(&dir)?;
        if let Some(p) = &self.patch {
            crate::durable::write(&dir.join(PATCH), p)?;
        }
        for (rel, bytes) in &self.copies {
            let path = dir.join("untracked").join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            crate::durable::write(&path, bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::strip_credentials;

    #[test]
    fn credentials_are_taken_out_of_remotes() {
        assert_eq!(
            strip_credentials("https://me:tok@github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
        assert_eq!(
            strip_credentials("https://github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
        assert_eq!(
            strip_credentials("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
    }
}
