//! How the ranks of a data-parallel run meet, as the trainer sees it.
//!
//! [`Collective`] is all the trainer knows of other processes: sum or broadcast flat tensors,
//! exchange short texts (which checkpoint to resume, whether every rank read its data), and
//! report progress for the watchdog. [`Single`] is the one-process run, where everything is the
//! identity; `dist::group::Group` is libtorch's c10d (Gloo, NCCL) behind the `tch` feature.
//!
//! On top of it, backend-independent: [`average_gradients`] (DDP's bucketed all-reduce, after
//! the whole backward pass: burn's autodiff has no per-parameter hooks to start buckets
//! early), [`broadcast_model`] (every rank starts from rank 0's weights, as DDP's constructor
//! does), [`part`] (each rank evaluates its part of a held-out set; the sums meet) and
//! [`exchange`] (typed handshakes).

use std::ops::Range;

use anyhow::{Result, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor, TensorData};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub trait Collective: Send + Sync {
    /// This process's rank, 0 to `world() − 1`; rank 0 writes the run directory.
    fn rank(&self) -> usize;
    /// Processes taking part.
    fn world(&self) -> usize;
    /// Whether every operation is the identity (one process, no process group), so callers
    /// may skip the work of preparing them. A process group of one rank is not: it runs its
    /// collectives, which is how the code path is tested on a single GPU.
    fn is_identity(&self) -> bool {
        false
    }
    /// Sums every flat tensor across ranks (each rank passes the same shapes, in the same order).
    fn all_reduce_sum(&self, flat: Vec<Tensor<1>>) -> Result<Vec<Tensor<1>>>;
    /// Rank 0's tensors, on every rank.
    fn broadcast(&self, flat: Vec<Tensor<1>>) -> Result<Vec<Tensor<1>>>;
    /// Every rank's `value` under `key` (a key is used once per run), indexed by rank.
    fn exchange(&self, key: &str, value: &str) -> Result<Vec<String>>;
    /// "rank N on HOST", for messages.
    fn describe(&self, rank: usize) -> String;
    /// The trainer is about to take optimizer step `step` + 1 (for the watchdog, which names a
    /// rank that falls behind).
    fn progress(&self, _step: u64) {}
    /// Why a collective operation failed, as well as this rank can tell (the watchdog knows
    /// which rank stopped).
    fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        error
    }
}

impl dyn Collective + '_ {
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }
}

/// One process: every collective operation is the identity.
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn is_identity(&self) -> bool {
        true
    }
    fn all_reduce_sum(&self, flat: Vec<Tensor<1>>) -> Result<Vec<Tensor<1>>> {
        Ok(flat)
    }
    fn broadcast(&self, flat: Vec<Tensor<1>>) -> Result<Vec<Tensor<1>>> {
        Ok(flat)
    }
    fn exchange(&self, _key: &str, value: &str) -> Result<Vec<String>> {
        Ok(vec![value.to_string()])
    }
    fn describe(&self, _rank: usize) -> String {
        "this process".into()
    }
}

/// Elements of every float parameter, in module order (the order every rank visits them in).
fn numels<M: Module>(model: &M) -> Vec<usize> {
    struct Collect(Vec<usize>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.val().shape().num_elements());
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// Consecutive runs of `slots` (by index) of about `cap` elements each; a parameter larger
/// than `cap` is a bucket of its own.
fn buckets(numels: &[usize], cap: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, &n) in numels.iter().enumerate() {
        if size > 0 && size + n > cap {
            out.push(start..i);
            start = i;
            size = 0;
        }
        size += n;
    }
    if start < numels.len() {
        out.push(start..numels.len());
    }
    out
}

/// Flattens `parts` (one per slot of `range`) into one bucket, sums the buckets across ranks
/// and cuts them back into per-slot flat tensors.
fn reduce_in_buckets(
    coll: &dyn Collective,
    parts: Vec<Tensor<1>>,
    numels: &[usize],
    cap: usize,
    broadcast: bool,
) -> Result<Vec<Tensor<1>>> {
    let ranges = buckets(numels, cap);
    let mut parts = parts.into_iter();
    let flat: Vec<Tensor<1>> = ranges
        .iter()
        .map(|r| Tensor::cat(parts.by_ref().take(r.len()).collect(), 0))
        .collect();
    let reduced = if broadcast {
        coll.broadcast(flat)?
    } else {
        coll.all_reduce_sum(flat)?
    };
    let mut out = Vec::with_capacity(numels.len());
    for (bucket, r) in reduced.into_iter().zip(ranges) {
        let mut offset = 0;
        for &n in &numels[r] {
            out.push(bucket.clone().narrow(0, offset, n));
            offset += n;
        }
    }
    Ok(out)
}

/// Elements per bucket for `ddp_bucket_cap_mb` MiB of fp32.
pub fn bucket_elements(cap_mb: u32) -> usize {
    (cap_mb as usize * (1 << 20) / 4).max(1)
}

/// DDP's gradient averaging: every rank's `grads` (the fp32 master gradients of its
/// micro-batches) and `loss` become the mean over ranks, summed in buckets of `cap` elements.
/// A parameter some ranks have no gradient for (it took no part in their forward pass) counts
/// as a zero gradient there; one no rank has a gradient for stays without one.
pub fn average_gradients<M: Module>(
    coll: &dyn Collective,
    model: &M,
    mut grads: GradientsParams,
    loss: f64,
    device: &Device,
    cap: usize,
) -> Result<(GradientsParams, f64)> {
    let world = coll.world();
    if coll.is_identity() {
        return Ok((grads, loss));
    }
    let sizes = numels(model);
    // One small sum first: the loss, and which ranks have each parameter's gradient.
    struct Take<'a> {
        grads: &'a mut GradientsParams,
        flat: Vec<Option<Tensor<1>>>,
    }
    impl ModuleVisitor for Take<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let g = self.grads.remove::<D>(p.id);
            self.flat.push(g.map(|g| {
                let n = g.shape().num_elements();
                g.reshape([n])
            }));
        }
    }
    let mut take = Take {
        grads: &mut grads,
        flat: Vec::with_capacity(sizes.len()),
    };
    model.visit(&mut take);
    let local = take.flat;
    let mut header = vec![loss];
    header.extend(local.iter().map(|g| f64::from(u8::from(g.is_some()))));
    sum_host(coll, device, &mut header)?;
    let loss = header[0] / world as f64;
    let present: Vec<bool> = header[1..].iter().map(|&n| n > 0.5).collect();

    let mut parts = Vec::new();
    let mut numels = Vec::new();
    for ((g, &n), &any) in local.into_iter().zip(&sizes).zip(&present) {
        if !any {
            continue;
        }
        parts.push(g.unwrap_or_else(|| Tensor::zeros([n], (device, DType::F32))));
        numels.push(n);
    }
    let mut reduced = reduce_in_buckets(coll, parts, &numels, cap, false)?.into_iter();
    let scale = 1.0 / world as f64;
    let mut out = GradientsParams::new();
    struct Put<'a> {
        out: &'a mut GradientsParams,
        present: std::slice::Iter<'a, bool>,
        reduced: &'a mut dyn Iterator<Item = Tensor<1>>,
        scale: f64,
    }
    impl ModuleVisitor for Put<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if !self.present.next().copied().unwrap_or(false) {
                return;
            }
            let flat = self
                .reduced
                .next()
                .expect("one reduced gradient per present slot");
            let shape = p.val().shape();
            self.out
                .register::<D>(p.id, flat.mul_scalar(self.scale).reshape(shape));
        }
    }
    model.visit(&mut Put {
        out: &mut out,
        present: present.iter(),
        reduced: &mut reduced,
        scale,
    });
    Ok((out, loss))
}

/// Every rank's copy of `model` replaced by rank 0's (parameters only; buffers follow the
/// parameters' initialisation and checkpoints, which are the same everywhere).
pub fn broadcast_model<M: Module>(coll: &dyn Collective, model: M, cap: usize) -> Result<M> {
    if coll.is_identity() {
        return Ok(model);
    }
    struct Values(Vec<Tensor<1>>, Vec<usize>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let v = p.val().inner();
            let n = v.shape().num_elements();
            self.0.push(v.reshape([n]));
            self.1.push(n);
        }
    }
    let mut values = Values(Vec::new(), Vec::new());
    model.visit(&mut values);
    let Values(parts, numels) = values;
    let received = reduce_in_buckets(coll, parts, &numels, cap, true)?;
    struct Set(std::vec::IntoIter<Tensor<1>>);
    impl ModuleMapper for Set {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let flat = self.0.next().expect("one broadcast tensor per parameter");
            param.map(|t| {
                let grad = t.is_require_grad();
                let t = Tensor::from_inner(flat.reshape(t.shape()));
                if grad { t.require_grad() } else { t }
            })
        }
    }
    Ok(model.map(&mut Set(received.into_iter())))
}

/// Sums `values` across ranks (as f64 on the training device: Gloo and NCCL both reduce
/// doubles).
pub fn sum_host(coll: &dyn Collective, device: &Device, values: &mut [f64]) -> Result<()> {
    if coll.is_identity() || values.is_empty() {
        return Ok(());
    }
    let t = Tensor::<1>::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        (device, DType::F64),
    );
    let summed = coll.all_reduce_sum(vec![t])?;
    let Some(summed) = summed.into_iter().next() else {
        bail!("the all-reduce returned nothing");
    };
    let v: Vec<f64> = summed
        .into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    values.copy_from_slice(&v);
    Ok(())
}

/// The examples of a set of `n` that rank `rank` of `world` evaluates: `r·n/W .. (r+1)·n/W`,
/// contiguous, so rank 0 holds the first ones (which the sample files show).
pub fn part(rank: usize, world: usize, n: usize) -> Range<usize> {
    let w = world.max(1);
    rank * n / w..(rank + 1) * n / w
}

/// Every rank's `value` under `key`, as JSON through [`Collective::exchange`] (the handshakes
/// of a run: whether each rank is ready, the run directory, the checkpoint to resume).
pub fn exchange<T: Serialize + DeserializeOwned>(
    coll: &dyn Collective,
    key: &str,
    value: &T,
) -> Result<Vec<T>> {
    let text = serde_json::to_string(value)?;
    coll.exchange(key, &text)?
        .iter()
        .enumerate()
        .map(|(r, t)| {
            serde_json::from_str(t).map_err(|e| {
                anyhow::anyhow!(
                    "{} sent `{key}` as {t:?}, which is not what this rank expects: {e}",
                    coll.describe(r)
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_cap_and_keep_order() {
        assert_eq!(buckets(&[3, 3, 3, 10, 1], 6), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(buckets(&[1, 1, 1], 100), vec![0..3]);
        assert_eq!(buckets(&[], 4), Vec::<Range<usize>>::new());
        assert_eq!(bucket_elements(25), 25 * 262_144);
    }

    #[test]
    fn parts_cover_a_set_once() {
        for (n, w) in [(10, 3), (2, 4), (256, 8)] {
            let covered: Vec<usize> = (0..w).flat_map(|r| part(r, w, n)).collect();
            assert_eq!(covered, (0..n).collect::<Vec<_>>());
        }
        assert_eq!(part(0, 1, 5), 0..5);
    }

    #[test]
    fn exchanges_carry_typed_values() {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct Ready {
            dir: Option<String>,
        }
        let got = exchange(
            &Single,
            "ready",
            &Ready {
                dir: Some("runs/x".into()),
            },
        )
        .unwrap();
        assert_eq!(
            got,
            [Ready {
                dir: Some("runs/x".into())
            }]
        );
    }
}
