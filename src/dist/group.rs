//! A rank's membership of a data-parallel run: the rendezvous store, the c10d process group,
//! the watchdog, and the [`Collective`] the trainer talks to.
//!
//! Joining: rank 0 serves a TCPStore at `master_addr:master_port`, every rank connects (retrying
//! until `hardware.ddp_timeout`), writes its hostname and first heartbeat, and joins the Gloo or
//! NCCL process group, which returns once every rank is there. Tensors go to c10d as libtorch's
//! own (burn-tch's primitives, no copies through the host).

// burn 0.22 marks burn-tch deprecated in favour of CubeCL; the design card names it, and this
// is the one place besides train::backend that touches its tensors.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use burn::backend::LibTorch;
use burn::backend::libtorch::TchTensor;
use burn::tensor::Tensor;

use super::c10d::{self, Store};
use super::contract::Layout;
use super::ranks::OnFatal;
use super::watchdog::{Beat, STALE, Watchdog, beat_key};
use crate::config::types::DistBackend;
use crate::train::collective::Collective;

pub struct Group {
    layout: Layout,
    // Field order is drop order: the process group before the store it rendezvoused through.
    pg: c10d::Group,
    watchdog: std::sync::Mutex<Watchdog>,
    store: Arc<Store>,
    hosts: Vec<String>,
    timeout: Duration,
    /// Optimizer step the trainer is at (for naming the ranks a timed-out collective waits for).
    step: std::sync::atomic::AtomicU64,
}

impl Group {
    pub fn join(layout: &Layout, backend: DistBackend, timeout: Duration) -> Result<Group> {
        // The capability table has checked that this binary has the process group.
        let name = backend.as_str();
        let (rank, world) = (layout.rank, layout.world);
        let at = format!("{}:{}", layout.master_addr, layout.master_port);
        let store = Store::connect(
            &layout.master_addr,
            layout.master_port,
            rank == 0,
            world,
            timeout,
        )
        .with_context(|| {
            if rank == 0 {
                format!(
                    "rank 0 cannot serve the rendezvous at {at} (is the port in use? set \
                         hardware.master_port)"
                )
            } else {
                format!(
                    "rank {rank} cannot reach the rendezvous at {at} within {}s (rank 0 \
                         serves it: is it running, and is hardware.master_addr right?)",
                    timeout.as_secs()
                )
            }
        })?;
        let host = crate::host::hostname();
        store.set(&format!("runner/host/{rank}"), host.as_bytes())?;
        store.set(
            &beat_key(rank),
            Beat::Alive {
                counter: 0,
                step: 0,
            }
            .encode()
            .as_bytes(),
        )?;
        let mut hosts = Vec::with_capacity(world);
        for r in 0..world {
            let h = store
                .get(&format!("runner/host/{r}"), timeout)
                .with_context(|| {
                    format!(
                        "rank {r} did not join the rendezvous at {at} within {}s",
                        timeout.as_secs()
                    )
                })?;
            hosts.push(String::from_utf8_lossy(&h).into_owned());
        }
        let ifname = std::env::var("GLOO_SOCKET_IFNAME").ok();
        let pg = c10d::Group::new(&store, name, ifname.as_deref(), rank, world, timeout)
            .with_context(|| format!("rank {rank} cannot join the {name} process group"))?;
        let watch_store = Store::connect(
            &layout.master_addr,
            layout.master_port,
            false,
            world,
            timeout,
        )
        .context("the watchdog cannot reach the rendezvous store")?;
        let watchdog = Watchdog::start(watch_store, rank, hosts.clone(), STALE.min(timeout), at);
        tracing::info!("rank {rank} of {world} on {host}: joined the {name} process group");
        Ok(Group {
            layout: layout.clone(),
            pg,
            watchdog: std::sync::Mutex::new(watchdog),
            store: Arc::new(store),
            hosts,
            timeout,
            step: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Registers what the watchdog does before it ends the process (rank 0: mark the run
    /// directory failed).
    pub fn on_fatal(&self, f: OnFatal) {
        self.watchdog().on_fatal(f);
    }

    fn watchdog(&self) -> std::sync::MutexGuard<'_, Watchdog> {
        self.watchdog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How this rank ended, for the others: `None` when it finished, else why it failed. Rank 0
    /// then keeps the store up until the others have finished too.
    pub fn finish(&self, error: Option<&str>) {
        let mut w = self.watchdog();
        w.finish(match error {
            None => Beat::Done,
            Some(e) => Beat::Failed(e.to_string()),
        });
        if self.layout.rank == 0 {
            w.wait_for_others(Duration::from_secs(30));
        }
    }

    fn to_torch(t: Tensor<1>) -> Result<tch::Tensor> {
        // Collectives work on values: whatever autodiff association a tensor has is dropped.
        let TchTensor { tensor, storage } = t
            .inner()
            .try_into_primitive::<LibTorch>()
            .map_err(|e| anyhow!("a collective needs libtorch tensors: {e:?}"))?;
        // In place is safe only on memory no other tensor shares.
        Ok(if storage.can_mut() {
            tensor
        } else {
            tensor.copy()
        })
    }

    fn from_torch(t: tch::Tensor) -> Tensor<1> {
        Tensor::from_primitive::<LibTorch>(TchTensor::new(t))
    }

    fn collective(
        &self,
        what: &str,
        flat: Vec<Tensor<1>>,
        op: impl FnOnce(&c10d::Group, &mut [tch::Tensor]) -> Result<()>,
    ) -> Result<Vec<Tensor<1>>> {
        let mut tensors = flat
            .into_iter()
            .map(Self::to_torch)
            .collect::<Result<Vec<_>>>()?;
        if let Err(e) = op(&self.pg, &mut tensors) {
            let step = self.step.load(std::sync::atomic::Ordering::Relaxed) + 1;
            return Err(self.explain(e.context(format!("the {what} of step {step} failed"))));
        }
        Ok(tensors.into_iter().map(Self::from_torch).collect())
    }
}

impl Collective for Group {
    fn rank(&self) -> usize {
        self.layout.rank
    }
    fn world(&self) -> usize {
        self.layout.world
    }
    fn all_reduce_sum(&self, flat: Vec<Tensor<1>>) -> Result<Vec<Tensor<1>>> {
        self.collective("all-reduce", flat, |pg, t| pg.all_reduce_sum(t))
    }
    fn broadcast(&self, flat: Vec<Tensor<1>>) -> Result<Vec<Tensor<1>>> {
        self.collective("broadcast", flat, |pg, t| pg.broadcast(t))
    }
    fn exchange(&self, key: &str, value: &str) -> Result<Vec<String>> {
        let k = |r: usize| format!("runner/x/{key}/{r}");
        self.store.set(&k(self.layout.rank), value.as_bytes())?;
        (0..self.layout.world)
            .map(|r| {
                self.store
                    .get(&k(r), self.timeout)
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .with_context(|| format!("{} did not report `{key}`", self.describe(r)))
            })
            .collect()
    }
    fn describe(&self, rank: usize) -> String {
        format!(
            "rank {rank} on {}",
            self.hosts.get(rank).map_or("?", String::as_str)
        )
    }
    fn progress(&self, step: u64) {
        self.step.store(step, std::sync::atomic::Ordering::Relaxed);
        self.watchdog().set_step(step);
    }
    fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        // A peer that died makes the collective fail at once; the watchdog names it within
        // STALE and ends the process. Wait for that rather than report the library's message.
        std::thread::sleep(STALE.min(self.timeout) + Duration::from_secs(3));
        let step = self.step.load(std::sync::atomic::Ordering::Relaxed) + 1;
        let behind = self.watchdog().behind(step);
        if behind.is_empty() {
            error
        } else {
            error.context(format!("not at step {step}: {}", behind.join(", ")))
        }
    }
}
