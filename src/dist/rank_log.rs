//! Rank logs: where log lines go ([`Sink`], which `cli::logging` installs for `tracing`).
//! Standard error, except that the data-parallel ranks other than 0 write
//! theirs to `RUN_DIR/ranks/rank-N.log` once the run directory exists. Until then they keep
//! their lines for that file and show only warnings and errors (tagged `[rank N]`), so a
//! terminal shows one rank's log, not N interleaved copies.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static RANK: OnceLock<Option<usize>> = OnceLock::new();
static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();
/// A rank's lines from before its log file existed.
static EARLY: Mutex<Vec<u8>> = Mutex::new(Vec::new());

pub fn set_rank(rank: Option<usize>) {
    let _ = RANK.set(rank.filter(|&r| r > 0));
}

fn rank() -> Option<usize> {
    RANK.get().copied().flatten()
}

/// Adds `line` to this rank's log file, if it has one (what is also printed to stderr).
pub fn note(line: &str) {
    if let Some(f) = FILE.get() {
        let _ = writeln!(f.lock().unwrap_or_else(|p| p.into_inner()), "{line}");
    }
}

/// `[rank N] ` on ranks other than 0.
pub fn tag() -> String {
    rank().map(|r| format!("[rank {r}] ")).unwrap_or_default()
}

/// Sends this rank's log lines to `path` from now on, starting with the ones kept so far.
pub fn to_file(path: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut early = EARLY.lock().unwrap_or_else(|p| p.into_inner());
    file.write_all(&early)?;
    early.clear();
    let _ = FILE.set(Mutex::new(file));
    Ok(())
}

pub struct Sink;
pub struct Writer {
    /// A warning or an error: shown on every rank.
    loud: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = Writer;
    fn make_writer(&'a self) -> Writer {
        Writer { loud: true }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Writer {
        Writer {
            loud: *meta.level() <= tracing::Level::WARN,
        }
    }
}

impl Write for Writer {
    // The formatter hands over one whole event per call.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = FILE.get() {
            f.lock().unwrap_or_else(|p| p.into_inner()).write_all(buf)?;
            if !self.loud {
                return Ok(buf.len());
            }
        } else if rank().is_some() {
            EARLY
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            if !self.loud {
                return Ok(buf.len());
            }
        }
        let mut err = std::io::stderr().lock();
        err.write_all(tag().as_bytes())?;
        err.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match FILE.get() {
            Some(f) => f.lock().unwrap_or_else(|p| p.into_inner()).flush(),
            None => std::io::stderr().flush(),
        }
    }
}
