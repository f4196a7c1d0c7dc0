//! This process's part in a run, behind one facade: [`Ranks`] is one process training alone,
//! or one rank of a data-parallel run (the c10d process group, the watchdog, the rank log).
//! The run path (`crate::run`) talks to it without knowing which, so no `cfg` line of the
//! data-parallel engine appears outside `dist`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::contract::Layout;
use super::rank_log;
use crate::config::types::HardwareConfig;
use crate::train::collective::{self, Collective, Single};

/// What each rank says once it has read its data (the run's first handshake).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Ready {
    /// Ready to train. Rank 0 adds the run directory and the checkpoint to resume (or none).
    Ready {
        dir: Option<PathBuf>,
        resume: Option<PathBuf>,
    },
    /// Rank 0 found the run complete already (`resume=auto`): nothing to do.
    Complete { dir: PathBuf },
    /// Rank 0 cannot use the run directory: a configuration problem.
    Refused { why: String },
    /// This rank cannot start (its data, its device).
    Failed { error: String },
}

/// Whether rank 0 created the run directory (the second handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Created {
    Yes,
    No,
}

/// What a run does when the watchdog ends it (rank 0: record the failure in `meta.json`).
pub type OnFatal = Box<dyn Fn(&str) + Send + Sync>;

/// This process's membership of the run.
pub struct Ranks {
    #[cfg(runner_c10d)]
    group: Option<super::group::Group>,
}

impl Ranks {
    /// Training alone.
    pub fn single() -> Ranks {
        Ranks {
            #[cfg(runner_c10d)]
            group: None,
        }
    }

    /// Joins the data-parallel run `layout` describes (the rendezvous, the process group, the
    /// watchdog), or trains alone without one.
    #[cfg_attr(not(runner_c10d), allow(unused_variables))]
    pub fn join(layout: Option<&Layout>, hw: &HardwareConfig) -> Result<Ranks> {
        let Some(layout) = layout else {
            return Ok(Ranks::single());
        };
        #[cfg(runner_c10d)]
        {
            let backend = crate::config::capability::default_dist_backend(hw);
            let timeout = std::time::Duration::from_secs(u64::from(hw.ddp_timeout));
            Ok(Ranks {
                group: Some(super::group::Group::join(layout, backend, timeout)?),
            })
        }
        #[cfg(not(runner_c10d))]
        {
            Err(crate::error::fail(
                format!(
                    "rank {} of {}: this runner binary has no data-parallel engine",
                    layout.rank, layout.world
                ),
                "build it with the `tch` feature: `just setup-tch build-tch`",
            ))
        }
    }

    /// What the trainer talks to.
    pub fn collective(&self) -> &dyn Collective {
        #[cfg(runner_c10d)]
        if let Some(g) = &self.group {
            return g;
        }
        &Single
    }

    pub fn is_main(&self) -> bool {
        self.collective().rank() == 0
    }

    /// Whether this is one process training alone (signals then stop it at a step boundary;
    /// data-parallel ranks are stopped by their launcher).
    pub fn alone(&self) -> bool {
        self.collective().is_identity()
    }

    /// Every rank's [`Ready`], indexed by rank.
    pub fn ready(&self, mine: &Ready) -> Result<Vec<Ready>> {
        collective::exchange(self.collective(), "ready", mine)
    }

    /// Whether rank 0 created the run directory (rank 0 says, the others hear).
    pub fn created(&self, mine: Created) -> Result<Created> {
        Ok(collective::exchange(self.collective(), "created", &mine)?[0])
    }

    /// "rank N on HOST" (or "this process"), for messages.
    pub fn describe(&self, rank: usize) -> String {
        self.collective().describe(rank)
    }

    /// From now on, this rank's log lines go to `RUN_DIR/ranks/rank-N.log` (ranks other than 0;
    /// rank 0 logs to standard error).
    pub fn log_into(&self, run_dir: &Path) -> Result<()> {
        let rank = self.collective().rank();
        if rank == 0 {
            return Ok(());
        }
        let log = run_dir.join("ranks").join(format!("rank-{rank}.log"));
        rank_log::to_file(&log)
            .with_context(|| format!("cannot write this rank's log `{}`", log.display()))
    }

    /// What the watchdog does before it ends the process: `on_rank0` on rank 0, a line in the
    /// rank's log elsewhere. Nothing when training alone (no watchdog).
    #[cfg_attr(not(runner_c10d), allow(unused_variables))]
    pub fn on_fatal(&self, on_rank0: OnFatal) {
        #[cfg(runner_c10d)]
        if let Some(g) = &self.group {
            if self.is_main() {
                g.on_fatal(on_rank0);
            } else {
                g.on_fatal(Box::new(|why| rank_log::note(&format!("error: {why}"))));
            }
        }
    }

    /// Tells the other ranks how this one ended (`None`: it finished); rank 0 waits for them.
    #[cfg_attr(not(runner_c10d), allow(unused_variables))]
    pub fn finish(&self, error: Option<&str>) {
        #[cfg(runner_c10d)]
        if let Some(g) = &self.group {
            g.finish(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_are_json_values() {
        let ready = Ready::Ready {
            dir: Some("runs/x".into()),
            resume: None,
        };
        let text = serde_json::to_string(&ready).unwrap();
        assert_eq!(text, r#"{"state":"ready","dir":"runs/x","resume":null}"#);
        let alone = Ranks::single();
        assert_eq!(alone.ready(&ready).unwrap(), [ready]);
        assert_eq!(alone.created(Created::Yes).unwrap(), Created::Yes);
        assert!(alone.is_main() && alone.alone());
    }
}
