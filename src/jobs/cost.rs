//! What one training sample costs a model, counted from its shapes (for `runner plan`):
//! the forward pass's FLOPs (2 per multiply-add of every matrix product and convolution;
//! element-wise work is left out, as `torch.utils.flop_counter` leaves it out) and the
//! activations burn's autodiff keeps for the backward pass, in elements.
//!
//! The activation counts are per op: a matrix product or convolution its input, a
//! LayerNorm/GroupNorm three tensors of its input's size, SiLU two, GELU one, softmax its
//! output, dropout its input and its random mask; a tensor saved by several ops counts once.
//! With gradient checkpointing a model keeps the input of every block, the kept stages'
//! activations and, at the peak, one block's.
//!
//! These figures predict the peak a step reaches, and are checked against runner's measured
//! peak on the embedded backend (`just bench-checkpointing`: within 8% at the small sizes),
//! not transcribed from burn's source. burn 0.22's autodiff keeps less for some ops (a
//! LayerNorm or GroupNorm keeps the centred input and the normalised one, dropout only its
//! mask) and more for softmax (the shifted scores and their exponential besides the output
//! the next product keeps), and the backward pass adds transient buffers that are not counted
//! separately (burn-flex's convolution backward: an im2col of the input per thread and a
//! column buffer of up to 8 MiB; zero-filled gradients of slices). Splitting the figure into
//! burn's kept tensors and a per-backend transient term is what would keep it accurate at
//! shapes far from the measured ones; against PyTorch (`just bench-plan-accuracy`) runner keeps
//! 1.2-1.8 times as much, which fused norm, softmax and byte-mask dropout ops would cut.

/// Per training sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SampleCost {
    /// Forward-pass FLOPs (backward is about twice as many).
    pub forward_flops: f64,
    /// Activation elements kept for backward.
    pub activations: f64,
    /// The same with gradient checkpointing (`train.gradient_checkpointing`).
    pub activations_checkpointed: f64,
    /// Extra forward FLOPs gradient checkpointing spends recomputing the blocks.
    pub recompute_flops: f64,
    /// The most an evaluation's forward pass (no graph) holds at once, taken as three times
    /// the largest block input (the input, the output and one intermediate alive together).
    pub inference: f64,
    /// Bytes of one sample as the loader hands it over (host memory).
    pub input_bytes: f64,
    /// What a sample is made of, e.g. `("tokens", 128.0)`.
    pub unit: &'static str,
    pub units: f64,
}

/// Running sums over a model's stages: a stem, recomputed blocks, kept stages and a head.
#[derive(Debug, Default)]
pub struct Tally {
    flops: f64,
    recompute: f64,
    kept: f64,
    boundaries: f64,
    largest_block: f64,
    largest_input: f64,
    all: f64,
}

impl Tally {
    /// A stage that is never recomputed (stem, glue, head).
    pub fn kept(&mut self, flops: f64, activations: f64) {
        self.flops += flops;
        self.kept += activations;
        self.all += activations;
    }

    /// A recomputed block whose input has `input` elements.
    pub fn block(&mut self, flops: f64, activations: f64, input: f64) {
        self.flops += flops;
        self.recompute += flops;
        self.boundaries += input;
        self.largest_block = self.largest_block.max(activations);
        self.largest_input = self.largest_input.max(input);
        self.all += activations;
    }

    /// The sample's cost; `input_bytes` is what the loader hands over for it.
    pub fn finish(self, unit: &'static str, units: f64, input_bytes: f64) -> SampleCost {
        SampleCost {
            forward_flops: self.flops,
            activations: self.all,
            activations_checkpointed: self.kept + self.boundaries + self.largest_block,
            recompute_flops: self.recompute,
            inference: 3.0 * self.largest_input,
            input_bytes,
            unit,
            units,
        }
    }
}

/// A LayerNorm or GroupNorm over `n` elements: what it keeps.
pub const NORM: f64 = 3.0;

/// Multiply-adds → FLOPs.
pub fn matmul(m: f64, k: f64, n: f64) -> f64 {
    2.0 * m * k * n
}
