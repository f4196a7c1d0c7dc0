//! A BERT encoder with a sequence-classification head, laid out as Hugging Face's
//! `BertForSequenceClassification` so that checkpoints map by name: word + position +
//! token-type embeddings, post-LN transformer layers with exact (erf) GELU, a tanh pooler
//! over `[CLS]`, dropout and a linear classifier.

use burn::module::Param;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use crate::jobs::cost::{NORM, SampleCost, Tally, matmul};
use crate::kernels::{LayerNorm, dropout, gelu, linear, softmax_last};
use crate::train::recompute::Stages;

/// Sizes of one model (from `arch`, explicit keys, or a checkpoint's `config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct BertShape {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub dropout: f64,
    pub num_labels: usize,
}

impl BertShape {
    /// One sample of `seq` tokens (`jobs::cost` says what is counted).
    pub fn cost(&self, seq: usize) -> SampleCost {
        let (s, h, f) = (
            seq as f64,
            self.hidden_size as f64,
            self.intermediate_size as f64,
        );
        let a = self.num_heads as f64;
        let drop = if self.dropout > 0.0 { 1.0 } else { 0.0 };
        let (embeddings, layer, head) = self.params_by_stage();
        let mut t = Tally::default();
        // Embeddings: the sum (LayerNorm's input), the dropout's mask.
        t.params(embeddings);
        t.kept_norm(NORM * s * h);
        t.kept_masks(drop * s * h);
        for _ in 0..self.num_layers {
            let flops = matmul(s, h, 4.0 * h) + 2.0 * matmul(s, h, s) + 2.0 * matmul(s, h, f);
            // The input of q/k/v; q, k, v; the attention output (out's input); two LayerNorms'
            // inputs (the residual sums); the first's output (ffn-in's input); GELU's input
            // and output (ffn-out's input). Over the scores: softmax's output and, under
            // dropout, the dropped probabilities (the product with v keeps them).
            let per_token = (6.0 + 2.0 * NORM) * h + 2.0 * f;
            let scores = (1.0 + drop) * a * s * s;
            t.params(layer);
            t.block(flops, per_token * s + scores, 2.0 * NORM * s * h, s * h);
            // In backward: the output's and input's gradients, and the ffn's hidden gradient
            // or the scores' (GELU's and softmax's backward write theirs in place).
            t.block_in_flight((f * s).max(a * s * s) + 2.0 * s * h);
            // Masks: after attention's and the ffn's output projections, over the scores.
            t.block_masks(drop * (2.0 * s * h + a * s * s));
        }
        // Pooler over [CLS] (its input, tanh's output), the classifier's input.
        let labels = self.num_labels as f64;
        t.params(head);
        t.kept(matmul(1.0, h, h) + matmul(1.0, h, labels), 3.0 * h + labels);
        t.kept_masks(drop * h);
        // ids, token types (i64) and the mask (f32) per token; the label.
        t.finish("tokens", s, 20.0 * s + 8.0)
    }

    /// Parameters of the model with these sizes.
    pub fn num_params(&self) -> u64 {
        let (embeddings, layer, head) = self.params_by_stage();
        embeddings + self.num_layers as u64 * layer + head
    }

    /// Parameters of the embeddings (with their LayerNorm), of one layer, and of the pooler
    /// and classifier.
    fn params_by_stage(&self) -> (u64, u64, u64) {
        let (h, f) = (self.hidden_size as u64, self.intermediate_size as u64);
        let embeddings =
            (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) as u64 * h
                + 2 * h;
        let layer = 4 * (h * h + h) + h * f + f + f * h + h + 2 * 2 * h;
        let head = h * h + h + h * self.num_labels as u64 + self.num_labels as u64;
        (embeddings, layer, head)
    }
}

/// BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm.
const INIT_STD: f64 = 0.02;

fn normal() -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: INIT_STD,
    }
}

fn linear_layer(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut l = LinearConfig::new(d_in, d_out)
        .with_initializer(normal())
        .init(device);
    l.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    l
}

fn embedding(n: usize, d: usize, device: &Device) -> Embedding {
    EmbeddingConfig::new(n, d)
        .with_initializer(normal())
        .init(device)
}

fn layer_norm(shape: &BertShape, device: &Device) -> LayerNorm {
    LayerNorm::new(shape.hidden_size, shape.layer_norm_eps, device)
}

#[derive(Module, Debug)]
pub struct Embeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
    pub num_heads: usize,
}

/// The projection after attention or the feed-forward layer, with its residual LayerNorm.
#[derive(Module, Debug)]
pub struct ResidualOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct Attention {
    pub self_attn: SelfAttention,
    pub output: ResidualOutput,
}

#[derive(Module, Debug)]
pub struct Intermediate {
    pub dense: Linear,
}

#[derive(Module, Debug)]
pub struct Layer {
    pub attention: Attention,
    pub intermediate: Intermediate,
    pub output: ResidualOutput,
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub layer: Vec<Layer>,
}

#[derive(Module, Debug)]
pub struct Pooler {
    pub dense: Linear,
}

#[derive(Module, Debug)]
pub struct BertClassifier {
    pub embeddings: Embeddings,
    pub encoder: Encoder,
    pub pooler: Pooler,
    pub dropout: Dropout,
    pub classifier: Linear,
}

/// A batch on the device: `[batch, seq]` ids, token types and a 1/0 attention mask.
pub struct BertInput {
    pub input_ids: Tensor<2, Int>,
    pub token_type_ids: Tensor<2, Int>,
    pub attention_mask: Tensor<2>,
}

impl BertClassifier {
    pub fn new(shape: &BertShape, device: &Device) -> BertClassifier {
        let h = shape.hidden_size;
        let dropout = || DropoutConfig::new(shape.dropout).init();
        let residual = |d_in: usize| ResidualOutput {
            dense: linear_layer(d_in, h, device),
            layer_norm: layer_norm(shape, device),
            dropout: dropout(),
        };
        BertClassifier {
            embeddings: Embeddings {
                word_embeddings: embedding(shape.vocab_size, h, device),
                position_embeddings: embedding(shape.max_position_embeddings, h, device),
                token_type_embeddings: embedding(shape.type_vocab_size, h, device),
                layer_norm: layer_norm(shape, device),
                dropout: dropout(),
            },
            encoder: Encoder {
                layer: (0..shape.num_layers)
                    .map(|_| Layer {
                        attention: Attention {
                            self_attn: SelfAttention {
                                query: linear_layer(h, h, device),
                                key: linear_layer(h, h, device),
                                value: linear_layer(h, h, device),
                                dropout: dropout(),
                                num_heads: shape.num_heads,
                            },
                            output: residual(h),
                        },
                        intermediate: Intermediate {
                            dense: linear_layer(h, shape.intermediate_size, device),
                        },
                        output: residual(shape.intermediate_size),
                    })
                    .collect(),
            },
            pooler: Pooler {
                dense: linear_layer(h, h, device),
            },
            dropout: dropout(),
            classifier: linear_layer(h, shape.num_labels, device),
        }
    }

    /// The encoder's last hidden states, `[batch, seq, hidden]`.
    pub fn encode(&self, input: &BertInput) -> Tensor<3> {
        let mut x = self.embed(input);
        let mask = key_mask(&input.attention_mask, x.dtype());
        for layer in &self.encoder.layer {
            x = layer.forward(x, mask.clone());
        }
        x
    }

    /// The embeddings, normalised: the first layer's input, `[batch, seq, hidden]`.
    pub fn embed(&self, input: &BertInput) -> Tensor<3> {
        let [batch, seq] = input.input_ids.dims();
        let device = input.input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .reshape([1, seq])
            .expand([batch, seq]);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(input.input_ids.clone())
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings
                .forward(input.token_type_ids.clone());
        dropout(&e.dropout, e.layer_norm.forward(x))
    }

    /// Class logits, `[batch, num_labels]`.
    pub fn forward(&self, input: &BertInput) -> Tensor<2> {
        self.classify(self.encode(input))
    }

    /// Class logits from the last hidden states: the pooler over `[CLS]` and the classifier.
    pub fn classify(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [batch, _, h] = hidden.dims();
        let cls = hidden.slice([0..batch, 0..1]).reshape([batch, h]);
        let pooled = self.pooler.dense.forward(cls).tanh();
        self.classifier.forward(dropout(&self.dropout, pooled))
    }
}

impl BertClassifier {
    /// The classification loss as stages for gradient checkpointing: the embeddings, one
    /// recomputed stage per layer, then the pooler, classifier and [`cross_entropy`].
    pub fn loss_stages<'a>(
        num_layers: usize,
        input: BertInput,
        targets: Tensor<1, Int>,
    ) -> Stages<'a, BertClassifier, Tensor<3>> {
        let keys = input.attention_mask.clone();
        Stages {
            stem: Box::new(move |m: &BertClassifier| m.embed(&input)),
            stages: Stages::blocks(
                0..num_layers,
                move |&i, m: &BertClassifier, x: Tensor<3>| {
                    let mask = key_mask(&keys, x.dtype());
                    m.encoder.layer[i].forward(x, mask)
                },
            ),
            head: Box::new(move |m: &BertClassifier, x| cross_entropy(m.classify(x), targets)),
        }
    }
}

/// Mean cross-entropy of `logits` against class `targets`, in fp32 whatever the model
/// computes in, as Megatron's cross-entropy is.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let device = logits.device();
    CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits.cast(FloatDType::F32), targets)
}

/// Additive mask over keys from the 1/0 attention mask, `[batch, 1, 1, seq]`: 0 where attended,
/// a large negative number at padding (made in fp32, then in the activations' `dtype`: −inf
/// in fp16, harmless since [CLS] is always attended).
pub fn key_mask(attention_mask: &Tensor<2>, dtype: DType) -> Tensor<4> {
    let [batch, seq] = attention_mask.dims();
    (attention_mask.clone().neg() + 1.0)
        .mul_scalar(-1.0e9)
        .reshape([batch, 1, 1, seq])
        .cast(dtype)
}

impl Layer {
    /// One post-LN transformer layer; `mask` is [`key_mask`]'s.
    pub fn forward(&self, x: Tensor<3>, mask: Tensor<4>) -> Tensor<3> {
        let attended = self.attention.self_attn.forward(x.clone(), mask);
        let x = self.attention.output.forward(attended, x);
        let inner = gelu(linear(&self.intermediate.dense, x.clone()));
        self.output.forward(inner, x)
    }
}

impl ResidualOutput {
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let y = dropout(&self.dropout, linear(&self.dense, x));
        self.layer_norm.forward(y + residual)
    }
}

impl SelfAttention {
    fn forward(&self, x: Tensor<3>, mask: Tensor<4>) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let split = |t: Tensor<3>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);
        let q = split(linear(&self.query, x.clone()));
        let k = split(linear(&self.key, x.clone()));
        let v = split(linear(&self.value, x));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((head_dim as f64).sqrt())
            + mask;
        let probs = dropout(&self.dropout, softmax_last(scores));
        probs
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(dropout: f64) -> BertShape {
        BertShape {
            vocab_size: 50,
            hidden_size: 16,
            num_layers: 2,
            num_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 16,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            dropout,
            num_labels: 3,
        }
    }

    fn input(device: &Device) -> (BertInput, Tensor<1, Int>) {
        let int = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [2, 8]), device);
        // The second sequence is padded after 5 tokens.
        let mask: Vec<f32> = (0..16).map(|i| if i < 13 { 1.0 } else { 0.0 }).collect();
        let input = BertInput {
            input_ids: int((0..16).map(|i| (i * 7 % 50) as i64).collect()),
            token_type_ids: int((0..16).map(|i| i64::from(i % 8 >= 4)).collect()),
            attention_mask: Tensor::from_data(TensorData::new(mask, [2, 8]), device),
        };
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), device);
        (input, labels)
    }

    #[test]
    fn the_counted_parameters_are_the_built_ones() {
        let (_rng, device) = crate::train::backend::seeded_test_device(0);
        for shape in [
            tiny(0.1),
            BertShape {
                num_layers: 3,
                intermediate_size: 40,
                ..tiny(0.1)
            },
        ] {
            let built = BertClassifier::new(&shape, &device).num_params() as u64;
            assert_eq!(shape.num_params(), built);
            // Backward's last point (the embeddings) has made every parameter's gradient.
            let cost = shape.cost(16);
            let points = [&cost.backward, &cost.backward_checkpointed];
            for p in points.map(|p| p.last().expect("stages")) {
                assert_eq!(p.params_with_gradients, built as f64);
            }
        }
    }

    #[test]
    fn checkpointed_gradients_equal_the_plain_ones() {
        let (_rng, devices) = crate::train::backend::seeded_test_devices(3);
        for device in devices {
            // Without dropout the stages are the model's own loss.
            let model = BertClassifier::new(&tiny(0.0), &device);
            let stages = || {
                let (input, labels) = input(&device);
                BertClassifier::loss_stages(2, input, labels)
            };
            let (x, labels) = input(&device);
            let own = f64::from(cross_entropy(model.forward(&x), labels).into_scalar::<f32>());
            let plain = stages().plain(&model, 1.0, 0, &device).loss;
            assert!((own - plain).abs() < 1e-6, "{own} vs {plain}");
            crate::train::recompute::assert_checkpointing_matches(&model, stages, &device, 1e-4);
            // With dropout, a recomputed block draws the masks of its first pass.
            let model = BertClassifier::new(&tiny(0.3), &device);
            crate::train::recompute::assert_checkpointing_matches(&model, stages, &device, 1e-4);
        }
    }

    #[test]
    fn bf16_training_follows_fp32() {
        let (_rng, devices) = crate::train::backend::seeded_test_devices(7);
        for device in devices {
            let model = BertClassifier::new(&tiny(0.0), &device);
            let (input, labels) = input(&device);
            crate::train::precision::assert_bf16_follows_fp32(
                &model,
                |m| cross_entropy(m.forward(&input), labels.clone()),
                0.02,
            );
        }
    }
}
