//! The rank watchdog: every rank says it is alive, and where it is, through the rendezvous
//! store; a rank that stops saying so, or says it failed, is named, and every other rank exits.
//!
//! A thread per rank writes `runner/beat/<rank>` every [`BEAT`] (a [`Beat`]: alive, its counter
//! and step) on its own store connection, and reads the others'. A rank whose counter has not moved for
//! `stale` (at most [`STALE`], at most `hardware.ddp_timeout`) stopped responding: it died, or
//! its machine did. One that wrote `Failed(why)` stopped on an error of its own. Rank 0 serves
//! the store, so when it dies the others cannot reach the store and say that. In each case the
//! watchdog prints the error, lets the run directory record it (rank 0), and ends the process
//! (`_exit`: the training thread may be blocked inside a collective that will never return).
//!
//! A rank that hangs while alive keeps beating; the collective it holds up times out after
//! `hardware.ddp_timeout` in the other ranks, and their error names the ranks that had not
//! reached that step.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::c10d::Store;

/// How often a rank says it is alive.
pub const BEAT: Duration = Duration::from_secs(1);
/// How long a silent rank counts as alive.
pub const STALE: Duration = Duration::from_secs(15);

pub use super::ranks::OnFatal;

/// One rank's last word, stored as JSON under [`beat_key`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Beat {
    Alive { counter: u64, step: u64 },
    Done,
    Failed(String),
}

impl Beat {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a beat serializes")
    }
    pub fn decode(text: &str) -> Option<Beat> {
        serde_json::from_str(text).ok()
    }
}

pub fn beat_key(rank: usize) -> String {
    format!("runner/beat/{rank}")
}

struct Shared {
    step: AtomicU64,
    stop: AtomicBool,
    on_fatal: Mutex<Option<OnFatal>>,
    /// Last step each rank reported (for naming the ranks a timed-out collective waited for).
    steps: Mutex<Vec<Option<u64>>>,
}

pub struct Watchdog {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    rank: usize,
    store: Arc<Store>,
    hosts: Vec<String>,
}

impl Watchdog {
    /// Starts watching over `store` (a connection of the watchdog's own), as `rank` among the
    /// ranks on `hosts`.
    pub fn start(
        store: Store,
        rank: usize,
        hosts: Vec<String>,
        stale: Duration,
        master: String,
    ) -> Watchdog {
        let shared = Arc::new(Shared {
            step: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            on_fatal: Mutex::new(None),
            steps: Mutex::new(vec![None; hosts.len()]),
        });
        let store = Arc::new(store);
        let handle = {
            let (shared, store, hosts) = (shared.clone(), store.clone(), hosts.clone());
            std::thread::Builder::new()
                .name("runner-watchdog".into())
                .spawn(move || watch(&shared, &store, rank, &hosts, stale, &master))
                .expect("spawning the watchdog thread")
        };
        Watchdog {
            shared,
            handle: Some(handle),
            rank,
            store,
            hosts,
        }
    }

    pub fn set_step(&self, step: u64) {
        self.shared.step.store(step, Ordering::Relaxed);
    }

    /// What runs (once) before the watchdog ends the process: rank 0 records the failure in
    /// the run directory.
    pub fn on_fatal(&self, f: OnFatal) {
        *self
            .shared
            .on_fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// The ranks whose last report was before `step` (they had not reached it), named.
    pub fn behind(&self, step: u64) -> Vec<String> {
        let steps = self.shared.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps
            .iter()
            .enumerate()
            .filter(|(r, s)| *r != self.rank && s.is_some_and(|s| s < step))
            .map(|(r, s)| format!("rank {r} on {} (at step {})", self.hosts[r], s.unwrap_or(0)))
            .collect()
    }

    /// Stops beating and says how this rank ended: `Done` or `Failed(why)`.
    pub fn finish(&mut self, last: Beat) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = self
            .store
            .set(&beat_key(self.rank), last.encode().as_bytes());
    }

    /// Rank 0 keeps serving the store until every other rank has said how it ended (or has
    /// stopped responding), at most `wait`.
    pub fn wait_for_others(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        for r in (0..self.hosts.len()).filter(|&r| r != self.rank) {
            while Instant::now() < deadline {
                match self
                    .store
                    .get(&beat_key(r), Duration::from_secs(1))
                    .ok()
                    .and_then(|b| Beat::decode(&String::from_utf8_lossy(&b)))
                {
                    Some(Beat::Alive { .. }) => std::thread::sleep(Duration::from_millis(100)),
                    _ => break,
                }
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn watch(
    shared: &Shared,
    store: &Store,
    rank: usize,
    hosts: &[String],
    stale: Duration,
    master: &str,
) {
    let mut counter = 0u64;
    // Per other rank: the last counter seen and when it last moved.
    let mut seen: HashMap<usize, (u64, Instant)> = HashMap::new();
    let mut store_failing_since: Option<Instant> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        counter += 1;
        let step = shared.step.load(Ordering::Relaxed);
        let mut store_ok = store
            .set(
                &beat_key(rank),
                Beat::Alive { counter, step }.encode().as_bytes(),
            )
            .is_ok();
        for (r, host) in hosts.iter().enumerate().filter(|(r, _)| *r != rank) {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let beat = match store.get(&beat_key(r), BEAT) {
                Ok(b) => Beat::decode(&String::from_utf8_lossy(&b)),
                Err(_) => {
                    store_ok = false;
                    break;
                }
            };
            match beat {
                Some(Beat::Alive {
                    counter: c,
                    step: s,
                }) => {
                    shared.steps.lock().unwrap_or_else(|p| p.into_inner())[r] = Some(s);
                    let entry = seen.entry(r).or_insert((c, Instant::now()));
                    if entry.0 != c {
                        *entry = (c, Instant::now());
                    } else if entry.1.elapsed() >= stale {
                        fatal(
                            shared,
                            store,
                            rank,
                            &format!(
                                "rank {r} on {host} stopped responding: no heartbeat for {}s (the \
                                 process died or its machine is unreachable); stopping every rank",
                                stale.as_secs()
                            ),
                        );
                    }
                }
                Some(Beat::Failed(why)) => fatal(
                    shared,
                    store,
                    rank,
                    &format!("rank {r} on {host} failed: {why}"),
                ),
                Some(Beat::Done) | None => {}
            }
        }
        if store_ok {
            store_failing_since = None;
        } else if rank != 0 {
            let since = *store_failing_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= BEAT * 3 {
                fatal(
                    shared,
                    store,
                    rank,
                    &format!(
                        "rank 0 on {} stopped responding: its rendezvous store at {master} is \
                         unreachable (the process died or its machine is down); stopping",
                        hosts[0]
                    ),
                );
            }
        }
        let mut slept = Duration::ZERO;
        while slept < BEAT && !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            slept += Duration::from_millis(50);
        }
    }
}

/// Prints `why`, lets the run directory record it, says so in the store and ends the process.
fn fatal(shared: &Shared, store: &Store, rank: usize, why: &str) -> ! {
    let tag = crate::dist::contract::rank_from_env()
        .filter(|&r| r > 0)
        .map(|r| format!("[rank {r}] "))
        .unwrap_or_default();
    eprintln!("{tag}error: {why}");
    let _ = std::io::stderr().flush();
    if let Some(f) = shared
        .on_fatal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        f(why);
    }
    let _ = store.set(
        &beat_key(rank),
        Beat::Failed(why.to_string()).encode().as_bytes(),
    );
    // SAFETY: ends the process without running destructors: the training thread may be inside
    // libtorch, blocked on a peer that is gone.
    unsafe { libc::_exit(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_round_trip() {
        for b in [
            Beat::Alive {
                counter: 7,
                step: 120,
            },
            Beat::Done,
            Beat::Failed("the loss is NaN at step 3".into()),
        ] {
            assert_eq!(Beat::decode(&b.encode()), Some(b));
        }
        assert_eq!(Beat::decode("alive x 1"), None);
        assert_eq!(Beat::decode(""), None);
    }
}
