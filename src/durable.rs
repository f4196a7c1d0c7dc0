//! Durable writes: the one way runner writes a file that must survive a crash whole.
//!
//! Every file of a run directory (meta.json, summary.json, the config files, checkpoints, the
//! final weights, exports, sample images) and the generated schema go through here. A write
//! goes to a temporary file beside the target (same directory, so the rename cannot cross
//! filesystems), is fsynced, renamed over the target, and the directory is fsynced so that the
//! rename itself is on disk. A reader, or a machine that loses power, sees the old file or the
//! new one, never part of one. A kill leaves at most a temporary file named
//! `.<name>.<random>.runner-tmp`, which [`remove_leftovers`] clears.

use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{Context, Result};

/// How temporary files end; nothing else runner writes ends like this.
const TMP_SUFFIX: &str = ".runner-tmp";

/// Writes `bytes` to `path` durably (see the module docs).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)?;
        Ok(())
    })
}

/// Writes `path` durably with `fill`, which writes the content to the temporary path it is
/// given (for libraries that write files themselves, such as burn-store's safetensors writer).
/// When `fill` fails, the target is untouched and the temporary file removed.
pub fn write_with(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A unique, exclusively created name: two writers of one target never share a temporary.
    // It gets the target's permissions, or a new file's (0666 less the umask, as
    // `File::create`), not tempfile's owner-only default: run directories are shared.
    let permissions = fs::metadata(path)
        .map(|m| m.permissions())
        .unwrap_or_else(|_| fs::Permissions::from_mode(0o666));
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(TMP_SUFFIX)
        .permissions(permissions)
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in `{}`", dir.display()))?
        .into_temp_path();
    let written = fill(&tmp)
        .and_then(|()| sync_file(&tmp))
        .with_context(|| format!("cannot write `{}`", path.display()));
    written?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the new `{}` into place", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// Flushes a file's content to disk.
pub fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush `{}` to disk", path.display()))
}

/// Makes renames and creations in `dir` durable. Some filesystems refuse to open or fsync a
/// directory; what a failure here risks is the same as a crash without the call, so it is not
/// an error.
pub fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Renames `from` to `to` (same filesystem) and makes the rename durable.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to)
        .with_context(|| format!("cannot move `{}` to `{}`", from.display(), to.display()))?;
    sync_dir(parent(to));
    Ok(())
}

/// Removes the temporary files a killed write left in `dir`; returns how many.
pub fn remove_leftovers(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if is_temporary(&entry.path()) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether `path` is one of this module's temporary files, or a scratch file a library left
/// beside one (burn-store writes `<our temporary>.<pid>-<n>.tmp` and renames it onto ours).
pub fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| n.starts_with('.') && n.contains(TMP_SUFFIX))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.json");
        write(&path, b"old").unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "only the target is left");
    }

    #[test]
    fn files_get_the_permissions_a_plain_create_gives_or_keep_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let path = dir.path().join("config.resolved.yaml");
        write(&path, b"a").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write(&path, b"b").unwrap();
        assert_eq!(mode(&path), 0o640);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write(&path, b"whole").unwrap();
        let err = write_with(&path, |tmp| {
            fs::write(tmp, b"half")?;
            anyhow::bail!("the disk is full")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("the disk is full"), "{err:#}");
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn leftovers_of_killed_writes_are_recognised_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let left = dir.path().join(".model.safetensors.Ab12Cd.runner-tmp");
        fs::write(&left, b"half").unwrap();
        let scratch = dir
            .path()
            .join(".model.safetensors.Ab12Cd.runner-tmp.4242-0.tmp");
        fs::write(&scratch, b"half").unwrap();
        fs::write(dir.path().join("model.safetensors"), b"whole").unwrap();
        assert!(is_temporary(&left));
        assert!(!is_temporary(&dir.path().join("model.safetensors")));
        assert_eq!(remove_leftovers(dir.path()), 2);
        assert!(!left.exists() && !scratch.exists());
        assert!(dir.path().join("model.safetensors").exists());
    }
}
