//! Data order and batch assembly.
//!
//! [`Plan`] fixes which examples form each micro-batch: epoch `e` is a permutation drawn from
//! a ChaCha8 stream seeded with `(seed, e)` (specified bit for bit, so the order is the same on
//! every machine and after a resume), cut into `per_device_batch_size` pieces; `grad_accum_steps`
//! consecutive pieces make one optimizer step. The position in the data is therefore the step
//! number alone. With `world` data-parallel ranks, the permutation is first made a multiple of
//! `world` long (repeating its start, or dropping its end with `drop_last`, as PyTorch's
//! `DistributedSampler` does) and rank `r` takes every `world`-th example from `r`: the ranks'
//! k-th micro-batches together are the single-process k-th micro-batch of `world ×
//! per_device_batch_size` examples. [`Loader`] assembles the batches of one epoch in `loader.num_workers` threads,
//! each a bounded `prefetch_factor` ahead, and hands them out in order.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use anyhow::Result;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::job::Job;
use crate::config::derived::EpochShape;

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub examples: usize,
    pub batch_size: usize,
    pub accum: usize,
    pub drop_last: bool,
    pub shuffle: bool,
    pub seed: u64,
    /// This process's data-parallel rank, and the number of ranks.
    pub rank: usize,
    pub world: usize,
}

impl Plan {
    /// How an epoch is cut (the arithmetic is the configuration's, so `runner show`, the
    /// checkpoints and this plan agree).
    fn shape(&self) -> EpochShape {
        EpochShape::new(
            self.examples,
            self.batch_size,
            self.world,
            self.accum,
            self.drop_last,
        )
    }

    /// Examples this rank sees per epoch.
    fn shard_len(&self) -> usize {
        self.shape().examples_per_rank
    }

    /// Micro-batches in one epoch (the same on every rank).
    pub fn micro_batches_per_epoch(&self) -> usize {
        self.shape().micro_batches
    }

    /// Optimizer steps in one epoch (the last may have fewer micro-batches, as in HF's Trainer).
    pub fn steps_per_epoch(&self) -> u64 {
        self.shape().steps as u64
    }

    /// The example indices of every micro-batch of `epoch` on this rank, in order.
    pub fn micro_batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.examples).collect();
        if self.shuffle {
            // One stream per epoch: the seed and epoch packed into ChaCha's 256-bit seed.
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&self.seed.to_le_bytes());
            key[8..16].copy_from_slice(&epoch.to_le_bytes());
            key[16..24].copy_from_slice(b"runner/d");
            order.shuffle(&mut ChaCha8Rng::from_seed(key));
        }
        if self.world > 1 {
            let total = self.shard_len() * self.world;
            let padding: Vec<usize> = order
                .iter()
                .cycle()
                .take(total.saturating_sub(order.len()))
                .copied()
                .collect();
            order.extend(padding);
            order.truncate(total);
            order = order
                .into_iter()
                .skip(self.rank)
                .step_by(self.world)
                .collect();
        }
        order
            .chunks(self.batch_size)
            .take(self.micro_batches_per_epoch())
            .map(<[usize]>::to_vec)
            .collect()
    }
}

/// Batches of one epoch (or its rest), assembled ahead by worker threads, handed out in order.
pub struct Loader<J: Job> {
    inner: Inner<J>,
}

enum Inner<J: Job> {
    /// `num_workers: 0`: assembled on the training thread when asked for.
    Inline {
        job: Arc<J>,
        batches: std::vec::IntoIter<Vec<usize>>,
        epoch_seed: u64,
    },
    Workers {
        receivers: Vec<Receiver<Result<J::Batch>>>,
        handles: Vec<JoinHandle<()>>,
        next: usize,
        remaining: usize,
    },
}

impl<J: Job> Loader<J> {
    /// `epoch_seed` ([`super::seed::epoch_seed`]) is handed to every `train_batch` call.
    pub fn new(
        job: Arc<J>,
        batches: Vec<Vec<usize>>,
        epoch_seed: u64,
        workers: usize,
        prefetch: usize,
    ) -> Self {
        if workers == 0 || batches.len() <= 1 {
            return Loader {
                inner: Inner::Inline {
                    job,
                    batches: batches.into_iter(),
                    epoch_seed,
                },
            };
        }
        let workers = workers.min(batches.len());
        let remaining = batches.len();
        let batches = Arc::new(batches);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx): (SyncSender<Result<J::Batch>>, _) = sync_channel(prefetch.max(1));
            let job = job.clone();
            let batches = batches.clone();
            // Worker w assembles batches w, w + workers, …; the consumer reads the workers
            // round-robin, which restores the order. A closed channel (the loader dropped
            // early) ends the worker.
            let handle = std::thread::Builder::new()
                .name(format!("runner-loader-{w}"))
                .spawn(move || {
                    for indices in batches.iter().skip(w).step_by(workers) {
                        if tx.send(job.train_batch(indices, epoch_seed)).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawning a loader thread");
            receivers.push(rx);
            handles.push(handle);
        }
        Loader {
            inner: Inner::Workers {
                receivers,
                handles,
                next: 0,
                remaining,
            },
        }
    }
}

impl<J: Job> Iterator for Loader<J> {
    type Item = Result<J::Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Inline {
                job,
                batches,
                epoch_seed,
            } => batches.next().map(|b| job.train_batch(&b, *epoch_seed)),
            Inner::Workers {
                receivers,
                next,
                remaining,
                ..
            } => {
                if *remaining == 0 {
                    return None;
                }
                let w = *next % receivers.len();
                *next += 1;
                *remaining -= 1;
                Some(match receivers[w].recv() {
                    Ok(batch) => batch,
                    Err(_) => Err(anyhow::anyhow!("loader worker {w} stopped (it panicked)")),
                })
            }
        }
    }
}

impl<J: Job> Drop for Loader<J> {
    fn drop(&mut self) {
        if let Inner::Workers {
            receivers, handles, ..
        } = &mut self.inner
        {
            // Closing the channels first unblocks workers waiting to send.
            receivers.clear();
            for h in handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(examples: usize, drop_last: bool) -> Plan {
        Plan {
            examples,
            batch_size: 4,
            accum: 3,
            drop_last,
            shuffle: true,
            seed: 9,
            rank: 0,
            world: 1,
        }
    }

    #[test]
    fn epochs_are_permutations_fixed_by_seed_and_epoch() {
        let p = plan(10, false);
        let e0 = p.micro_batches(0);
        assert_eq!(e0, p.micro_batches(0));
        assert_ne!(e0, p.micro_batches(1));
        let mut all: Vec<usize> = e0.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(e0.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
        assert_eq!(p.steps_per_epoch(), 1);
    }

    #[test]
    fn drop_last_drops_the_short_batch() {
        let p = plan(10, true);
        assert_eq!(p.micro_batches(0).len(), 2);
        assert_eq!(p.micro_batches_per_epoch(), 2);
        assert_eq!(plan(3, true).micro_batches_per_epoch(), 0);
        assert_eq!(plan(3, false).micro_batches_per_epoch(), 1);
    }

    /// Two ranks' k-th micro-batches are the single process's k-th micro-batch of twice the
    /// size; the ends of epochs are padded from the start, or dropped, as DistributedSampler.
    #[test]
    fn ranks_split_each_batch_of_the_single_process() {
        let single = Plan {
            batch_size: 8,
            ..plan(16, false)
        };
        let ranks: Vec<Plan> = (0..2)
            .map(|rank| Plan {
                rank,
                world: 2,
                ..plan(16, false)
            })
            .collect();
        let one = single.micro_batches(3);
        let two: Vec<Vec<Vec<usize>>> = ranks.iter().map(|p| p.micro_batches(3)).collect();
        assert_eq!(one.len(), two[0].len());
        for (k, batch) in one.iter().enumerate() {
            let mut joined = [two[0][k].clone(), two[1][k].clone()].concat();
            joined.sort();
            let mut want = batch.clone();
            want.sort();
            assert_eq!(joined, want, "micro-batch {k}");
        }
        assert_eq!(ranks[0].steps_per_epoch(), single.steps_per_epoch());

        // 11 examples on 2 ranks: 6 each, the 12th repeats the epoch's first; drop_last: 5 each.
        for drop_last in [false, true] {
            let shards: Vec<Vec<usize>> = (0..2)
                .map(|rank| {
                    Plan {
                        rank,
                        world: 2,
                        batch_size: 5,
                        ..plan(11, drop_last)
                    }
                    .micro_batches(0)
                    .concat()
                })
                .collect();
            let n = if drop_last { 5 } else { 6 };
            assert_eq!((shards[0].len(), shards[1].len()), (n, n));
            let mut all = shards.concat();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), if drop_last { 10 } else { 11 });
        }
    }

    #[test]
    fn the_order_is_pinned() {
        // ChaCha8 and rand's shuffle are specified; a change here would break resuming old
        // runs, so it must be deliberate.
        assert_eq!(
            plan(10, false).micro_batches(0).concat(),
            [2, 5, 8, 0, 7, 9, 3, 6, 4, 1]
        );
    }
}
