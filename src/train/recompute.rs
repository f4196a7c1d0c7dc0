//! Gradient checkpointing by blocks (`train.gradient_checkpointing`): a training forward pass
//! cut into [`Stages`], whose blocks keep only their inputs and are run again, one at a time,
//! during the backward pass.
//!
//! burn's autodiff has no "recompute this function" node (its `BalancedCheckpointing`
//! recomputes only cheap element-wise ops, which leaves most of a transformer block's
//! activations in place), so the recomputation is done here, above it, with the public API
//! alone, which makes it the same on every backend:
//!
//! 1. **Forward.** The stem (embeddings, masking, the first convolution) runs with autodiff and
//!    keeps its graph. Each [`Stage::Block`] then runs on a copy of the model whose parameters
//!    require no gradient, so burn records nothing for it, and only its input is kept; a
//!    [`Stage::Kept`] (cheap glue between blocks: a norm and a re-ordering, the posterior
//!    sample) runs once with autodiff and keeps its graph.
//! 2. **Backward**, from the head down: the head (last norm, output layer, loss) runs with
//!    autodiff from the last boundary and is differentiated, which gives the loss's gradient
//!    `g` with respect to that boundary. Each block, from the last to the first, runs again
//!    from its kept input, now with autodiff, and `Σ output ⊙ g` (plus any loss term the stage
//!    adds) is differentiated: the parameters' gradients, and the next `g`. The stem last.
//!
//! At any moment only one block's activations are alive, beside the boundaries and the kept
//! stages' graphs, and every block's forward runs twice (the usual price: about a third more
//! compute per step).
//!
//! Random draws (dropout) must be the same when a block runs again: the device RNG is seeded
//! before every stage from the step's seed and the stage's index, in both passes, and
//! [`Stages::plain`] (one graph, no recomputation) seeds the same way, so the two give the same
//! gradients; tests compare them, and compare `plain` with the job's own loss.

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, FloatDType, Gradients, Tensor};

use super::seed::mix;

/// The tensor that crosses from one stage to the next.
pub trait Boundary: Clone + Sized {
    fn detach(self) -> Self;
    fn require_grad(self) -> Self;
    fn grad(&self, grads: &Gradients) -> Option<Self>;
    fn is_tracked(&self) -> bool;
    /// `Σ self ⊙ g`, `[1]`, in fp32: differentiated, it sends `g` back through `self`.
    fn dot(self, g: Self) -> Tensor<1>;
}

impl<const D: usize> Boundary for Tensor<D> {
    fn detach(self) -> Self {
        Tensor::detach(self)
    }
    fn require_grad(self) -> Self {
        Tensor::require_grad(self)
    }
    fn grad(&self, grads: &Gradients) -> Option<Self> {
        Tensor::grad(self, grads)
    }
    fn is_tracked(&self) -> bool {
        Tensor::is_tracked(self)
    }
    fn dot(self, g: Self) -> Tensor<1> {
        (self.cast(FloatDType::F32) * g.cast(FloatDType::F32)).sum()
    }
}

/// What a stage gives: the next boundary, and a term it adds to the loss (the CausalVAE's KL).
pub struct Out<X> {
    pub next: X,
    pub loss: Option<Tensor<1>>,
}

impl<X> Out<X> {
    pub fn next(next: X) -> Out<X> {
        Out { next, loss: None }
    }
}

type StageFn<'a, M, X> = Box<dyn Fn(&M, X) -> Out<X> + 'a>;
type StemFn<'a, M, X> = Box<dyn FnOnce(&M) -> X + 'a>;
type HeadFn<'a, M, X> = Box<dyn FnOnce(&M, X) -> Tensor<1> + 'a>;

pub enum Stage<'a, M, X> {
    /// Recomputed during backward; only its input is kept.
    Block(StageFn<'a, M, X>),
    /// Run once; its graph is kept until its backward.
    Kept(StageFn<'a, M, X>),
}

/// A training forward pass: stem → stages → head (the loss, `[1]`).
pub struct Stages<'a, M, X> {
    pub stem: StemFn<'a, M, X>,
    pub stages: Vec<Stage<'a, M, X>>,
    pub head: HeadFn<'a, M, X>,
}

/// The result of one forward and backward pass.
pub struct Stepped {
    /// The loss (fp32, unscaled).
    pub loss: f64,
    /// The gradients of `scale × loss`.
    pub grads: GradientsParams,
}

impl<'a, M: Module, X: Boundary> Stages<'a, M, X> {
    /// A stage for each of `blocks`, recomputed.
    pub fn blocks<B: 'a>(
        blocks: impl IntoIterator<Item = B>,
        f: impl Fn(&B, &M, X) -> X + Clone + 'a,
    ) -> Vec<Stage<'a, M, X>> {
        blocks
            .into_iter()
            .map(|b| {
                let f = f.clone();
                Stage::Block(Box::new(move |m: &M, x: X| Out::next(f(&b, m, x))))
            })
            .collect()
    }

    /// Forward and backward with activations kept only at the stages' boundaries (the
    /// module's comment has the method). `seed` seeds the device RNG before every stage.
    pub fn checkpointed(
        self,
        model: &M,
        scale: f64,
        seed: u64,
        device: &Device,
    ) -> Result<Stepped> {
        let reseed = |i: usize| device.seed(mix(seed, i as u64));
        let frozen = model.clone().no_grad();
        let mut acc = GradientsAccumulator::<M>::new();
        let take = |grads: Gradients, acc: &mut GradientsAccumulator<M>| {
            acc.accumulate(model, GradientsParams::from_grads(grads, model));
        };

        reseed(0);
        let stem = (self.stem)(model);
        let mut cur = stem.clone().detach();
        let mut inputs = Vec::with_capacity(self.stages.len());
        let mut kept: Vec<Option<(X, Out<X>)>> = Vec::with_capacity(self.stages.len());
        for (i, stage) in self.stages.iter().enumerate() {
            reseed(i + 1);
            match stage {
                Stage::Block(f) => {
                    inputs.push(Some(cur.clone()));
                    cur = f(&frozen, cur).next;
                    kept.push(None);
                }
                Stage::Kept(f) => {
                    inputs.push(None);
                    let leaf = cur.require_grad();
                    let out = f(model, leaf.clone());
                    cur = out.next.clone().detach();
                    kept.push(Some((leaf, out)));
                }
            }
        }
        drop(frozen);

        reseed(self.stages.len() + 1);
        let leaf = cur.require_grad();
        let loss = (self.head)(model, leaf.clone()).cast(FloatDType::F32);
        let mut value = f64::from(loss.clone().into_scalar::<f32>());
        let grads = loss.mul_scalar(scale).backward();
        let mut g = leaf.grad(&grads);
        take(grads, &mut acc);

        for (i, stage) in self.stages.iter().enumerate().rev() {
            let Some(grad) = g.take() else {
                bail!("stage {i}'s output does not reach the loss (a job's stages are wrong)");
            };
            let (leaf, out) = match stage {
                Stage::Block(f) => {
                    reseed(i + 1);
                    let input = inputs[i].take().context("a block's input was not kept")?;
                    let leaf = input.require_grad();
                    let out = f(model, leaf.clone());
                    (leaf, out)
                }
                Stage::Kept(_) => kept[i].take().context("a kept stage's graph is gone")?,
            };
            let mut surrogate = out.next.dot(grad);
            if let Some(term) = out.loss {
                let term = term.cast(FloatDType::F32);
                value += f64::from(term.clone().into_scalar::<f32>());
                surrogate = surrogate + term.mul_scalar(scale);
            }
            let grads = surrogate.backward();
            g = leaf.grad(&grads);
            take(grads, &mut acc);
        }
        if stem.is_tracked() {
            let grad = g.context("the stem's output does not reach the loss")?;
            take(stem.dot(grad).backward(), &mut acc);
        }
        Ok(Stepped {
            loss: value,
            grads: acc.grads(),
        })
    }

    /// The same pass as one graph, seeded as [`Stages::checkpointed`] seeds: what it must
    /// equal.
    pub fn plain(self, model: &M, scale: f64, seed: u64, device: &Device) -> Stepped {
        let reseed = |i: usize| device.seed(mix(seed, i as u64));
        reseed(0);
        let mut x = (self.stem)(model);
        let mut terms = Vec::new();
        for (i, stage) in self.stages.iter().enumerate() {
            reseed(i + 1);
            let (Stage::Block(f) | Stage::Kept(f)) = stage;
            let out = f(model, x);
            x = out.next;
            terms.extend(out.loss);
        }
        reseed(self.stages.len() + 1);
        let mut loss = (self.head)(model, x).cast(FloatDType::F32);
        for t in terms {
            loss = loss + t.cast(FloatDType::F32);
        }
        let value = f64::from(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.mul_scalar(scale).backward(), model);
        Stepped { loss: value, grads }
    }
}

/// For the jobs' tests: checkpointed and plain passes of `stages` (made twice by `make`)
/// give the same loss and gradients, within `tol` relative to each gradient's largest entry.
#[cfg(test)]
pub(crate) fn assert_checkpointing_matches<'a, M: Module, X: Boundary>(
    model: &M,
    make: impl Fn() -> Stages<'a, M, X>,
    device: &Device,
    tol: f32,
) {
    // burn initialises a parameter when it is first read, drawing from the RNG the passes
    // seed: a first pass reads them all, so that the two compared draw the same masks.
    make().plain(model, 1.0, 5, device);
    let plain = make().plain(model, 1.0, 5, device);
    let ckpt = make().checkpointed(model, 1.0, 5, device).unwrap();
    assert!(
        (plain.loss - ckpt.loss).abs() <= 1e-5 * plain.loss.abs().max(1.0),
        "loss {} vs {}",
        plain.loss,
        ckpt.loss
    );
    struct Compare<'g> {
        plain: &'g GradientsParams,
        ckpt: &'g GradientsParams,
        tol: f32,
        compared: usize,
    }
    impl burn::module::ModuleVisitor for Compare<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            let (a, b) = (self.plain.get::<D>(p.id), self.ckpt.get::<D>(p.id));
            let (Some(a), Some(b)) = (a, b) else {
                assert!(
                    self.plain.get::<D>(p.id).is_none() && self.ckpt.get::<D>(p.id).is_none(),
                    "parameter {} has a gradient in one pass only",
                    p.id
                );
                return;
            };
            let vec = |t: Tensor<D>| -> Vec<f32> {
                t.cast(FloatDType::F32).into_data().try_to_vec().unwrap()
            };
            let (a, b) = (vec(a), vec(b));
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            let worst = a
                .iter()
                .zip(&b)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst <= self.tol * scale,
                "parameter {}: gradients differ by {worst} (largest {scale})",
                p.id
            );
            self.compared += 1;
        }
    }
    let mut check = Compare {
        plain: &plain.grads,
        ckpt: &ckpt.grads,
        tol,
        compared: 0,
    };
    model.visit(&mut check);
    let compared = check.compared;
    assert!(compared > 0, "no gradients compared");
}
