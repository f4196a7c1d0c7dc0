//! Hugging Face Hub ids (`google-bert/bert-base-uncased`,
//! `sentence-transformers/all-MiniLM-L6-v2@<revision>`) in `model.pretrained` and
//! `data.tokenizer`, resolved offline from the local Hugging Face cache, as `transformers`
//! resolves them with `HF_HUB_OFFLINE=1`: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; in it
//! `models--<org>--<name>/refs/<revision>` names a commit whose files are in
//! `snapshots/<commit>/`. Nothing is ever downloaded: an id the cache lacks is an error naming
//! the folder searched and the command that fills it.
//!
//! Invariant: a value that is an existing path is a path, whatever its shape; only a value
//! shaped `<org>/<name>[@<revision>]` that names no existing path is looked up as an id.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A Hub id found in the local cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `org/name`.
    pub id: String,
    /// What was asked for: a branch or tag (`main` when none was given) or a commit.
    pub revision: String,
    /// The commit the revision resolved to (the snapshot folder's name).
    pub sha: String,
    /// The snapshot folder (not recorded: a run record keeps it as its fingerprint's path).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// The local cache folder, from the same variables as `huggingface_hub`.
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HF_HUB_CACHE") {
        return dir;
    }
    let home = var("HF_HOME").unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("huggingface")
    });
    home.join("hub")
}

/// `(org/name, revision)` when `value` is shaped like a Hub id and names no existing path.
pub fn as_id(value: &str) -> Option<(&str, Option<&str>)> {
    if Path::new(value).exists() || value.starts_with(['.', '/', '~']) {
        return None;
    }
    let (id, revision) = match value.split_once('@') {
        Some((id, rev)) => (id, Some(rev)),
        None => (value, None),
    };
    let part = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let (org, name) = id.split_once('/')?;
    (part(org) && part(name) && revision.is_none_or(part)).then_some((id, revision))
}

/// Where `value` is on this machine: itself when it exists, the cached snapshot when it is a
/// Hub id the cache holds; otherwise an error saying what was searched and how to fill it.
pub fn locate(value: &str) -> Result<Located, String> {
    match as_id(value) {
        None if Path::new(value).exists() => Ok(Located::Path(PathBuf::from(value))),
        None => Err(format!("`{value}` does not exist")),
        Some((id, revision)) => resolve(&cache_dir(), id, revision).map(Located::Hub),
    }
}

/// A value of `model.pretrained` or `data.tokenizer`, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    Path(PathBuf),
    Hub(Snapshot),
}

impl Located {
    pub fn path(&self) -> &Path {
        match self {
            Located::Path(p) => p,
            Located::Hub(s) => &s.dir,
        }
    }
}

/// `id` at `revision` (default `main`) in the cache folder `cache`.
pub fn resolve(cache: &Path, id: &str, revision: Option<&str>) -> Result<Snapshot, String> {
    let rev = revision.unwrap_or("main");
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let fill = format!(
        "`{id}` is neither a path nor in the local Hugging Face cache at revision `{rev}` \
         (searched `{}`); nothing is downloaded: fill the cache on a machine with network \
         (`hf download {id}{}`) and copy it here, or point HF_HUB_CACHE or HF_HOME at a copy",
        repo.display(),
        revision
            .map(|r| format!(" --revision {r}"))
            .unwrap_or_default()
    );
    let sha = match std::fs::read_to_string(repo.join("refs").join(rev)) {
        Ok(text) => text.trim().to_string(),
        // A commit given as the revision names its snapshot folder directly.
        Err(_) if is_commit(rev) => rev.to_string(),
        Err(_) => return Err(fill),
    };
    let dir = repo.join("snapshots").join(&sha);
    if !dir.is_dir() {
        return Err(fill);
    }
    Ok(Snapshot {
        id: id.to_string(),
        revision: rev.to_string(),
        sha,
        dir,
    })
}

fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";

    fn cache() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("models--org--model");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots").join(SHA)).unwrap();
        std::fs::write(repo.join("refs/main"), format!("{SHA}\n")).unwrap();
        tmp
    }

    #[test]
    fn ids_paths_and_revisions() {
        assert_eq!(as_id("org/model"), Some(("org/model", None)));
        assert_eq!(as_id("org/model@v1.0"), Some(("org/model", Some("v1.0"))));
        // Paths, existing or not, are never ids.
        assert_eq!(as_id("./org/model"), None);
        assert_eq!(as_id("/abs/model"), None);
        assert_eq!(as_id("checkpoints/bert-base-uncased/vocab.txt"), None);
        assert_eq!(as_id("vocab.txt"), None);
        assert_eq!(as_id("src/config"), None, "an existing folder is a path");
    }

    #[test]
    fn the_cache_resolves_branches_and_commits_and_names_what_it_searched() {
        let tmp = cache();
        let s = resolve(tmp.path(), "org/model", None).unwrap();
        assert_eq!((s.revision.as_str(), s.sha.as_str()), ("main", SHA));
        assert!(
            s.dir
                .ends_with(format!("models--org--model/snapshots/{SHA}"))
        );
        assert_eq!(
            resolve(tmp.path(), "org/model", Some(SHA)).unwrap().sha,
            SHA
        );
        let err = resolve(tmp.path(), "org/model", Some("v2")).unwrap_err();
        assert!(
            err.contains("revision `v2`")
                && err.contains("models--org--model")
                && err.contains("hf download org/model --revision v2"),
            "{err}"
        );
        let err = resolve(tmp.path(), "org/other", None).unwrap_err();
        assert!(err.contains("hf download org/other`"), "{err}");
    }
}
