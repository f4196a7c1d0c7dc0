//! Facts about this machine and its processes that run records and launchers need: the
//! hostname, absolute paths, and whether a recorded process is still the one that wrote the
//! record (a pid can be reused, so its start time is compared as well).

use std::path::{Path, PathBuf};

/// This machine's name.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// `path` made absolute (against the current directory), or as it is when that is gone.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat`, field 22);
/// `None` where there is no such process or no `/proc`.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` on this machine is alive and, when `started` is known, is the process
/// that started then (not a later one given the same pid).
pub fn is_alive(pid: u32, started: Option<u64>) -> bool {
    let Ok(pid_t) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    match (exists, started) {
        (false, _) => false,
        (true, None) => true,
        (true, Some(t)) => start_time(pid).is_none_or(|now| now == t),
    }
}

/// This process's resident memory now, in bytes (`/proc/self/statm`; `None` off Linux).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The most resident memory this process has held, in bytes (its high-water mark).
pub fn peak_rss_bytes() -> Option<u64> {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    // Linux reports kilobytes.
    u64::try_from(usage.ru_maxrss).ok().map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not_it() {
        let me = std::process::id();
        let started = start_time(me);
        assert!(started.is_some(), "this machine has /proc");
        assert!(is_alive(me, started));
        assert!(
            !is_alive(me, started.map(|t| t + 1)),
            "another process with our pid"
        );
        assert!(!is_alive(u32::MAX, None));
    }
}
