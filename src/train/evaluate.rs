//! One evaluation: every rank takes its part of each held-out set, the job sums per-example
//! statistics over it, the ranks' sums are added, and the job turns the totals into metrics;
//! then the process that writes the run directory lets the job draw its sample files. Jobs
//! therefore never see ranks, and one process is the case of one part per set.

use std::path::Path;

use anyhow::Result;
use burn::tensor::Device;

use super::collective::{self, Collective};
use super::job::{EvalSet, Job};

/// Evaluates `model` (in inference mode) on every held-out set of `job`.
pub fn evaluate<J: Job>(
    job: &J,
    model: &J::Model,
    device: &Device,
    batch_size: usize,
    coll: &dyn Collective,
    step: u64,
    run_dir: &Path,
) -> Result<Vec<EvalSet>> {
    let mut sets = Vec::new();
    for (i, set) in job.held_out().into_iter().enumerate() {
        let part = collective::part(coll.rank(), coll.world(), set.len);
        // Every rank returns as many sums, whatever the size of its part (zeros for none).
        let mut sums = job.eval_sums(model, device, i, part, batch_size)?;
        collective::sum_host(coll, device, &mut sums)?;
        sets.push(EvalSet {
            name: set.name,
            metrics: job.eval_metrics(i, &sums),
        });
    }
    if coll.is_main() {
        job.draw(model, device, step, run_dir)?;
    }
    Ok(sets)
}
