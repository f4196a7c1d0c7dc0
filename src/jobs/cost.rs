//! What one training sample costs a model, counted from its shapes (for `runner plan`):
//! the forward pass's FLOPs (2 per multiply-add of every matrix product and convolution;
//! element-wise work is left out, as `torch.utils.flop_counter` leaves it out) and the
//! activations burn's autodiff keeps for the backward pass, in elements.
//!
//! The activation counts are per op, as runner's engine keeps them (`src/kernels` for the
//! fused ones): a matrix product or convolution its inputs, a LayerNorm or the CausalVAE's
//! GroupNorm (with its SiLU) its input only (statistics are recomputed in backward), GELU its
//! input, softmax its output; a tensor saved by several ops counts once. Dropout keeps nothing
//! on burn-flex (its mask is regenerated from a seed in backward) and a mask of its input's
//! size on libtorch (burn's Bernoulli mask): counted apart, as `dropout_masks`, for the plan
//! to add where the backend keeps them. Under bf16/fp16 the norms' inputs are kept in fp32
//! (the fused norms widen them; `norm_inputs`), the rest at the compute dtype. With gradient checkpointing a model keeps the input
//! of every block, the kept stages' activations and, at the peak, one block's.
//!
//! These figures predict the peak a step reaches, and are checked against runner's measured
//! peak on the embedded backend (`just bench-checkpointing`) and against what PyTorch keeps
//! for the reference models (`just bench-plan-accuracy`), not transcribed from burn's source.
//! The column buffer burn-flex's convolution keeps between calls (up to 8 MiB) is counted
//! once per process (`conv_workspace`); gemm's per-thread packing buffers are the plan's to
//! add (`kernels::matmul_workspace`: they depend on the machine, not the model).
//!
//! Backward frees activations as it makes gradients, so the step's peak is not every
//! activation plus every gradient: each stage also says which parameters it owns and how
//! many gradient elements its backward holds at once (`Tally::block_in_flight`), and
//! [`SampleCost::backward`] lists, stage by stage from the last, what is alive then. Buffers
//! smaller than a block's gradients in flight are not counted (zero-filled gradients of
//! slices, gemm's per-call packing).

/// One moment of the backward pass, as a stage's backward ends: the activations still kept
/// (per sample, elements; those of the stages backward has not reached, and under
/// checkpointing the blocks' inputs and the stage's own recomputed ones) and the parameters
/// whose gradients exist by then (this stage's and every later one's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BackwardPoint {
    pub activations: f64,
    pub norm_inputs: f64,
    pub dropout_masks: f64,
    pub params_with_gradients: f64,
}

/// Per training sample.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SampleCost {
    /// Forward-pass FLOPs (backward is about twice as many).
    pub forward_flops: f64,
    /// Activation elements kept for backward.
    pub activations: f64,
    /// The same with gradient checkpointing (`train.gradient_checkpointing`).
    pub activations_checkpointed: f64,
    /// The norms' inputs among `activations` (and `activations_checkpointed`): kept in fp32
    /// under bf16/fp16, which the fused norms widen their input to.
    pub norm_inputs: f64,
    pub norm_inputs_checkpointed: f64,
    /// Elements of the dropout masks a backend that keeps them keeps (libtorch), without and
    /// with gradient checkpointing.
    pub dropout_masks: f64,
    pub dropout_masks_checkpointed: f64,
    /// Elements of the column buffer burn-flex's convolution keeps on the training thread
    /// (`kernels::conv3d_workspace`): once per process, not per sample.
    pub conv_workspace: f64,
    /// Extra forward FLOPs gradient checkpointing spends recomputing the blocks.
    pub recompute_flops: f64,
    /// The most an evaluation's forward pass (no graph) holds at once, taken as three times
    /// the largest block input (the input, the output and one intermediate alive together).
    pub inference: f64,
    /// Bytes of one sample as the loader hands it over (host memory).
    pub input_bytes: f64,
    /// The backward pass stage by stage, last stage first, without and with gradient
    /// checkpointing: activations go as gradients come, so the step's peak is the largest of
    /// these sums (`runner plan` weighs each at the batch and dtype), not all activations plus
    /// all gradients.
    #[serde(skip)]
    pub backward: Vec<BackwardPoint>,
    #[serde(skip)]
    pub backward_checkpointed: Vec<BackwardPoint>,
    /// What a sample is made of, e.g. `("tokens", 128.0)`.
    pub unit: &'static str,
    pub units: f64,
}

/// Running sums over a model's stages: a stem, recomputed blocks, kept stages and a head.
#[derive(Debug, Default)]
pub struct Tally {
    flops: f64,
    recompute: f64,
    workspace: f64,
    /// Every stage in forward order: the activation figures are sums over them.
    stages: Vec<Stage>,
    /// Parameters counted by [`Tally::params`] for the next stage.
    pending_params: f64,
}

/// What one counted stage keeps and owns.
#[derive(Debug, Default, Clone, Copy)]
struct Stage {
    recomputed: bool,
    activations: f64,
    norms: f64,
    masks: f64,
    /// A recomputed block's input (kept under checkpointing).
    input: f64,
    /// Gradients alive at once inside its backward.
    in_flight: f64,
    params: f64,
}

impl Tally {
    /// A stage that is never recomputed (stem, glue, head).
    pub fn kept(&mut self, flops: f64, activations: f64) {
        self.flops += flops;
        self.push(Stage {
            activations,
            ..Stage::default()
        });
    }

    /// `n` parameters belong to the next stage counted (their gradients are made in its
    /// backward).
    pub fn params(&mut self, n: u64) {
        self.pending_params += n as f64;
    }

    fn push(&mut self, stage: Stage) {
        let params = std::mem::take(&mut self.pending_params);
        self.stages.push(Stage { params, ..stage });
    }

    /// A norm's input of `elements` in a stage that is never recomputed (kept in fp32 under
    /// mixed precision).
    pub fn kept_norm(&mut self, elements: f64) {
        self.kept(0.0, elements);
        if let Some(stage) = self.stages.last_mut() {
            stage.norms += elements;
        }
    }

    /// A recomputed block whose input has `input` elements; `norms` of its `activations` are
    /// norms' inputs.
    pub fn block(&mut self, flops: f64, activations: f64, norms: f64, input: f64) {
        self.flops += flops;
        self.recompute += flops;
        self.push(Stage {
            recomputed: true,
            activations,
            norms,
            input,
            ..Stage::default()
        });
    }

    /// A convolution whose flex kernel needs a column buffer of `elements`: the largest is
    /// what stays allocated.
    pub fn workspace(&mut self, elements: f64) {
        self.workspace = self.workspace.max(elements);
    }

    /// Dropout masks of `elements` in a stage that is never recomputed.
    pub fn kept_masks(&mut self, elements: f64) {
        self.push(Stage {
            masks: elements,
            ..Stage::default()
        });
    }

    /// Dropout masks of `elements` in the recomputed block counted last.
    pub fn block_masks(&mut self, elements: f64) {
        if let Some(stage) = self.stages.iter_mut().rev().find(|s| s.recomputed) {
            stage.masks += elements;
        }
    }

    /// The most gradient elements alive at once inside the backward of the block counted
    /// last: for a transformer block, its output's gradient (held for the residual branch),
    /// its input's being summed, and the largest intermediate one (the MLP's hidden layer or
    /// attention's scores: the fused GELU and softmax write their input gradient over their
    /// output gradient on burn-flex; libtorch's kernels allocate it, one more such tensor
    /// than is counted).
    pub fn block_in_flight(&mut self, elements: f64) {
        if let Some(stage) = self.stages.iter_mut().rev().find(|s| s.recomputed) {
            stage.in_flight = stage.in_flight.max(elements);
        }
    }

    /// The backward pass's points, last stage first: before stage `j`'s backward ends, the
    /// stages up to `j` still hold what they keep (without checkpointing, everything; with
    /// it, the kept stages' activations and the blocks' inputs, plus `j`'s recomputed
    /// activations when `j` is a block), `j`'s gradients in flight are alive, and stages `j`
    /// onwards have made their parameters' gradients.
    fn backward_points(&self, checkpointed: bool) -> Vec<BackwardPoint> {
        let mut before = Vec::with_capacity(self.stages.len());
        let mut sum = BackwardPoint::default();
        for stage in &self.stages {
            before.push(sum);
            if !checkpointed || !stage.recomputed {
                sum.activations += stage.activations;
                sum.norm_inputs += stage.norms;
                sum.dropout_masks += stage.masks;
            } else {
                sum.activations += stage.input;
            }
        }
        let mut params = 0.0;
        let mut points = Vec::with_capacity(self.stages.len());
        for (stage, before) in self.stages.iter().zip(before).rev() {
            params += stage.params;
            let mut point = before;
            point.activations += stage.activations;
            point.norm_inputs += stage.norms;
            point.dropout_masks += stage.masks;
            point.activations += stage.in_flight;
            if checkpointed && stage.recomputed {
                point.activations += stage.input;
            }
            point.params_with_gradients = params;
            points.push(point);
        }
        points
    }

    /// The sample's cost; `input_bytes` is what the loader hands over for it.
    pub fn finish(mut self, unit: &'static str, units: f64, input_bytes: f64) -> SampleCost {
        // Parameters counted after the last stage belong to it.
        let left = std::mem::take(&mut self.pending_params);
        match self.stages.last_mut() {
            Some(stage) => stage.params += left,
            None => self.stages.push(Stage {
                params: left,
                ..Stage::default()
            }),
        }
        let (kept, blocks): (Vec<Stage>, Vec<Stage>) =
            self.stages.iter().partition(|s| !s.recomputed);
        let sum = |stages: &[Stage], f: fn(&Stage) -> f64| stages.iter().map(f).sum::<f64>();
        let max = |f: fn(&Stage) -> f64| blocks.iter().map(f).fold(0.0, f64::max);
        // The block held at the checkpointed peak: the first with the most activations.
        let largest = blocks.iter().fold(Stage::default(), |a, b| {
            if b.activations > a.activations { *b } else { a }
        });
        let all = |f: fn(&Stage) -> f64| sum(&self.stages, f);
        SampleCost {
            backward: self.backward_points(false),
            backward_checkpointed: self.backward_points(true),
            forward_flops: self.flops,
            activations: all(|s| s.activations),
            activations_checkpointed: sum(&kept, |s| s.activations)
                + sum(&blocks, |s| s.input)
                + largest.activations,
            norm_inputs: all(|s| s.norms),
            norm_inputs_checkpointed: sum(&kept, |s| s.norms) + largest.norms,
            dropout_masks: all(|s| s.masks),
            dropout_masks_checkpointed: sum(&kept, |s| s.masks) + max(|s| s.masks),
            conv_workspace: self.workspace,
            recompute_flops: self.recompute,
            inference: 3.0 * max(|s| s.input),
            input_bytes,
            unit,
            units,
        }
    }
}

/// A LayerNorm or GroupNorm over `n` elements: what it keeps (its input, `n`).
pub const NORM: f64 = 1.0;

/// Multiply-adds → FLOPs.
pub fn matmul(m: f64, k: f64, n: f64) -> f64 {
    2.0 * m * k * n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_and_masks_are_parts_counted_like_the_whole() {
        let mut t = Tally::default();
        t.kept(10.0, 100.0);
        t.kept_norm(20.0);
        t.kept_masks(5.0);
        // Two blocks: the larger one's norms and masks are the ones held at the peak.
        t.block(1.0, 50.0, 8.0, 4.0);
        t.block_masks(3.0);
        t.block(1.0, 70.0, 9.0, 6.0);
        t.block_masks(7.0);
        let c = t.finish("x", 1.0, 0.0);
        assert_eq!(c.activations, 100.0 + 20.0 + 50.0 + 70.0);
        assert_eq!(c.norm_inputs, 20.0 + 8.0 + 9.0);
        assert_eq!(c.activations_checkpointed, 120.0 + (4.0 + 6.0) + 70.0);
        assert_eq!(c.norm_inputs_checkpointed, 20.0 + 9.0);
        assert_eq!(c.dropout_masks, 5.0 + 3.0 + 7.0);
        assert_eq!(c.dropout_masks_checkpointed, 5.0 + 7.0);
        assert_eq!(c.forward_flops, 12.0);
        assert_eq!(c.recompute_flops, 2.0);
    }

    #[test]
    fn backward_frees_activations_as_it_makes_gradients() {
        // stem (kept 100, 10 params), two blocks (input 4 then 6, activations 50 then 70,
        // 20 params each), head (kept 30, 5 params).
        let mut t = Tally::default();
        t.params(10);
        t.kept(0.0, 100.0);
        t.params(20);
        t.block(0.0, 50.0, 0.0, 4.0);
        t.params(20);
        t.block(0.0, 70.0, 0.0, 6.0);
        t.params(5);
        t.kept(0.0, 30.0);
        let mut c = t.finish("x", 1.0, 0.0);
        let at = |points: &[BackwardPoint]| {
            points
                .iter()
                .map(|p| (p.activations, p.params_with_gradients))
                .collect::<Vec<_>>()
        };
        // Last stage first; every activation alive at the head, every gradient at the stem.
        assert_eq!(
            at(&c.backward),
            [(250.0, 5.0), (220.0, 25.0), (150.0, 45.0), (100.0, 55.0)]
        );
        // Checkpointed: the kept stages, the blocks' inputs, one block recomputed at a time.
        assert_eq!(
            at(&c.backward_checkpointed),
            [(140.0, 5.0), (180.0, 25.0), (154.0, 45.0), (100.0, 55.0)]
        );
        // No point holds more than the single figure: every kept stage, every input and the
        // largest block (130 + 10 + 70).
        assert!(
            c.backward_checkpointed
                .iter()
                .all(|p| p.activations <= c.activations_checkpointed)
        );
        // A block's gradients in flight add to its own point only.
        let mut t = Tally::default();
        t.kept(0.0, 100.0);
        t.block(0.0, 50.0, 0.0, 4.0);
        t.block_in_flight(8.0);
        t.kept(0.0, 30.0);
        c = t.finish("x", 1.0, 0.0);
        assert_eq!(
            at(&c.backward).iter().map(|p| p.0).collect::<Vec<_>>(),
            [180.0, 158.0, 100.0]
        );
    }
}
