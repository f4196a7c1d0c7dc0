//! Fingerprints of a run's inputs: every string of the resolved `data` and `model` sections
//! and `init_from` that names an existing file or folder (training and held-out files, image
//! folders, clip lists, tokenizers, pretrained weights).
//!
//! A file: its size, mtime and the xxh3-128 of its content (files over 1 GiB: of their size,
//! first and last 64 MiB). A folder: a walk in name order hashing every file's relative path
//! and size, the content of every file up to 64 KiB, and the content (first 4 MiB) of a
//! deterministic sample of 64 larger ones — a million-image folder costs a walk, not a read.
//! Content decides drift; an mtime alone is a note (a copied dataset is the same data).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use xxhash_rust::xxh3::Xxh3;

use crate::config::hub::{Located, Snapshot};

const WHOLE_FILE: u64 = 1 << 30;
const FILE_ENDS: u64 = 64 << 20;
const SMALL: u64 = 64 << 10;
const SAMPLE: usize = 64;
const SAMPLE_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The configuration key that named it (`data.train_file`, `data.validation_files.1`).
    pub key: String,
    /// Absolute.
    pub path: String,
    /// `file`, `folder`, or `missing` (gone by the time of a rerun).
    pub kind: String,
    pub size: u64,
    /// Files in a folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<String>,
    pub xxh3: String,
    /// The Hugging Face id the value named (`model.pretrained: org/name`), as the local cache
    /// resolved it; `path` is then the snapshot folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<Snapshot>,
}

/// The inputs a configuration names: (key, path) of every string leaf under `data` and
/// `model` and of `init_from` that is an existing path, or a Hugging Face id the local cache
/// holds (then with the id, its revision and commit; the path is the snapshot folder).
pub fn inputs(config: &Json) -> Vec<(String, PathBuf, Option<Snapshot>)> {
    let mut out = Vec::new();
    for section in ["data", "model", "init_from"] {
        let Some(v) = config.get(section) else {
            continue;
        };
        walk(v, section, &mut out);
    }
    out
}

fn walk(v: &Json, key: &str, out: &mut Vec<(String, PathBuf, Option<Snapshot>)>) {
    match v {
        Json::String(s) if !s.is_empty() => match crate::config::hub::locate(s) {
            Ok(Located::Path(p)) => out.push((key.to_string(), crate::host::absolute(&p), None)),
            Ok(Located::Hub(snap)) => out.push((
                key.to_string(),
                crate::host::absolute(&snap.dir),
                Some(snap),
            )),
            Err(_) => {}
        },
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{key}.{i}"), out);
            }
        }
        Json::Object(map) => {
            for (k, item) in map {
                walk(item, &format!("{key}.{k}"), out);
            }
        }
        _ => {}
    }
}

fn mtime(meta: &std::fs::Metadata) -> Option<String> {
    let t: chrono::DateTime<chrono::Utc> = meta.modified().ok()?.into();
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Feeds up to `limit` bytes of `path` from `offset` into `h`.
fn feed(h: &mut Xxh3, path: &Path, offset: u64, limit: u64) -> std::io::Result<()> {
    use std::io::Seek as _;
    let mut f = std::fs::File::open(path)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut f = f.take(limit);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// `path`'s fingerprint now.
pub fn fingerprint(key: &str, path: &Path) -> Fingerprint {
    let missing = || Fingerprint {
        key: key.to_string(),
        path: path.display().to_string(),
        kind: "missing".into(),
        size: 0,
        files: None,
        mtime: None,
        xxh3: String::new(),
        hub: None,
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return missing();
    };
    let mut h = Xxh3::new();
    if meta.is_file() {
        let size = meta.len();
        let ok = if size <= WHOLE_FILE {
            feed(&mut h, path, 0, size)
        } else {
            h.update(&size.to_le_bytes());
            feed(&mut h, path, 0, FILE_ENDS)
                .and_then(|_| feed(&mut h, path, size - FILE_ENDS, FILE_ENDS))
        };
        if ok.is_err() {
            return missing();
        }
        return Fingerprint {
            key: key.to_string(),
            path: path.display().to_string(),
            kind: "file".into(),
            size,
            files: None,
            mtime: mtime(&meta),
            xxh3: format!("{:032x}", h.digest128()),
            hub: None,
        };
    }
    // A folder: the sorted listing, small files whole, a sample of large ones.
    let mut files: Vec<(PathBuf, u64)> = walkdir::WalkDir::new(path)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| Some((e.path().to_path_buf(), e.metadata().ok()?.len())))
        .collect();
    files.sort();
    let large: Vec<usize> = (0..files.len()).filter(|&i| files[i].1 > SMALL).collect();
    let every = large.len().div_ceil(SAMPLE).max(1);
    let sampled: std::collections::HashSet<usize> = large.iter().copied().step_by(every).collect();
    let mut total = 0;
    for (i, (p, size)) in files.iter().enumerate() {
        let rel = p.strip_prefix(path).unwrap_or(p);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(&size.to_le_bytes());
        total += size;
        if *size <= SMALL || sampled.contains(&i) {
            let _ = feed(&mut h, p, 0, SAMPLE_BYTES);
        }
    }
    Fingerprint {
        key: key.to_string(),
        path: path.display().to_string(),
        kind: "folder".into(),
        size: total,
        files: Some(files.len() as u64),
        mtime: mtime(&meta),
        xxh3: format!("{:032x}", h.digest128()),
        hub: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_and_folders_are_walked_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "one").unwrap();
        let first = fingerprint("data.x", &f);
        assert_eq!((first.kind.as_str(), first.size), ("file", 3));
        std::fs::write(&f, "two").unwrap();
        assert_ne!(fingerprint("data.x", &f).xxh3, first.xxh3);
        std::fs::write(dir.path().join("b.txt"), "b").unwrap();
        let folder = fingerprint("data.d", dir.path());
        assert_eq!((folder.kind.as_str(), folder.files), ("folder", Some(2)));
        assert_eq!(fingerprint("data.d", dir.path()).xxh3, folder.xxh3);
        assert_eq!(fingerprint("k", &dir.path().join("gone")).kind, "missing");
        let config = serde_json::json!({"data": {"path": f.display().to_string(), "x": "nope"}});
        assert_eq!(inputs(&config).len(), 1);
    }
}
