//! Training throughput of a BERT classifier on runner (`--backend flex` or `tch`): the same
//! step the trainer takes (forward, cross-entropy, backward, global-norm clipping, AdamW),
//! on random token ids, reported as one JSON line. `just bench-train` runs it side by side
//! with the same model in PyTorch eager (bench/bert_torch.py) and prints the ratio.
//!
//! Usage: cargo bench --bench train_throughput -- [--batch 32] [--seq 128] [--steps 10]
//!        [--warmup 2] [--layers 4] [--hidden 256] [--heads 4] [--backend flex|tch]
//!        [--device cpu|cuda|cuda:N] (tch needs `--features tch`)

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorData;
use runner::config::types::OptimizerConfig;
use runner::jobs::text::model::{BertClassifier, BertInput, BertShape};
use runner::train::{clip, optim};

mod common;

use common::{arg, time_steps};

fn main() {
    let (batch, seq, steps, warmup) = (
        arg("--batch", 32),
        arg("--seq", 128),
        arg("--steps", 10),
        arg("--warmup", 2),
    );
    let hidden = arg("--hidden", 256);
    let shape = BertShape {
        vocab_size: 30522,
        hidden_size: hidden,
        num_layers: arg("--layers", 4),
        num_heads: arg("--heads", 4),
        intermediate_size: 4 * hidden,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        dropout: 0.1,
        num_labels: 3,
    };
    let on = common::device();
    let device = on.0.clone();
    let model = BertClassifier::new(&shape, &device);
    let cfg = OptimizerConfig {
        lr: Some(2e-5),
        weight_decay: 0.01,
        ..OptimizerConfig::default()
    };
    let mut opt = optim::build(&cfg, &model);
    // Fixed pseudo-random ids (a 64-bit LCG), so both implementations see full-length rows.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % m) as i64
    };
    let ids: Vec<i64> = (0..batch * seq).map(|_| 1000 + next(29_000)).collect();
    let labels: Vec<i64> = (0..batch).map(|_| next(3)).collect();
    let input = BertInput {
        input_ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, seq]), &device),
        token_type_ids: Tensor::<2, Int>::zeros([batch, seq], &device),
        attention_mask: Tensor::<2>::ones([batch, seq], &device),
    };
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);

    // Taken and put back each step: a clone would keep the old tensors alive and stop burn
    // from updating them in place.
    let mut model = Some(model);
    time_steps(
        &on,
        warmup,
        steps,
        batch,
        &format!("\"seq\": {seq}"),
        || {
            let m = model.take().expect("model");
            let loss = loss_fn.forward(m.forward(&input), targets.clone());
            let _value: f32 = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            let (grads, _) = clip::clip_global_norm(&m, grads, 1.0);
            model = Some(opt.step(2e-5, m, grads));
        },
    );
}
