//! A BERT encoder with a sequence-classification head, laid out as Hugging Face's
//! `BertForSequenceClassification` so that checkpoints map by name: word + position +
//! token-type embeddings, post-LN transformer layers with exact (erf) GELU, a tanh pooler
//! over `[CLS]`, dropout and a linear classifier.

use burn::module::Param;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};

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

/// BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm.
const INIT_STD: f64 = 0.02;

fn normal() -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: INIT_STD,
    }
}

fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
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
    LayerNormConfig::new(shape.hidden_size)
        .with_epsilon(shape.layer_norm_eps)
        .init(device)
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
            dense: linear(d_in, h, device),
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
                                query: linear(h, h, device),
                                key: linear(h, h, device),
                                value: linear(h, h, device),
                                dropout: dropout(),
                                num_heads: shape.num_heads,
                            },
                            output: residual(h),
                        },
                        intermediate: Intermediate {
                            dense: linear(h, shape.intermediate_size, device),
                        },
                        output: residual(shape.intermediate_size),
                    })
                    .collect(),
            },
            pooler: Pooler {
                dense: linear(h, h, device),
            },
            dropout: dropout(),
            classifier: linear(h, shape.num_labels, device),
        }
    }

    /// The encoder's last hidden states, `[batch, seq, hidden]`.
    pub fn encode(&self, input: &BertInput) -> Tensor<3> {
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
        let mut x = e.dropout.forward(e.layer_norm.forward(x));
        // Additive mask over keys: 0 where attended, a large negative number at padding (made
        // in fp32, then in the activations' dtype: −inf in fp16, harmless since [CLS] is
        // always attended).
        let mask = (input.attention_mask.clone().neg() + 1.0)
            .mul_scalar(-1.0e9)
            .reshape([batch, 1, 1, seq])
            .cast(x.dtype());
        for layer in &self.encoder.layer {
            x = layer.forward(x, mask.clone());
        }
        x
    }

    /// Class logits, `[batch, num_labels]`.
    pub fn forward(&self, input: &BertInput) -> Tensor<2> {
        let hidden = self.encode(input);
        let [batch, _, h] = hidden.dims();
        let cls = hidden.slice([0..batch, 0..1]).reshape([batch, h]);
        let pooled = self.pooler.dense.forward(cls).tanh();
        self.classifier.forward(self.dropout.forward(pooled))
    }
}

impl Layer {
    fn forward(&self, x: Tensor<3>, mask: Tensor<4>) -> Tensor<3> {
        let attended = self.attention.self_attn.forward(x.clone(), mask);
        let x = self.attention.output.forward(attended, x);
        let inner = gelu(self.intermediate.dense.forward(x.clone()));
        self.output.forward(inner, x)
    }
}

impl ResidualOutput {
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let y = self.dropout.forward(self.dense.forward(x));
        self.layer_norm.forward(y + residual)
    }
}

impl SelfAttention {
    fn forward(&self, x: Tensor<3>, mask: Tensor<4>) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let split = |t: Tensor<3>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((head_dim as f64).sqrt())
            + mask;
        let probs = self.dropout.forward(softmax(scores, 3));
        probs
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden])
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::tensor::FloatDType;

    use super::*;

    #[test]
    fn bf16_training_follows_fp32() {
        let (_rng, devices) = crate::train::backend::seeded_test_devices(7);
        for device in devices {
            let shape = BertShape {
                vocab_size: 50,
                hidden_size: 16,
                num_layers: 2,
                num_heads: 2,
                intermediate_size: 32,
                max_position_embeddings: 16,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
                dropout: 0.0,
                num_labels: 3,
            };
            let model = BertClassifier::new(&shape, &device);
            let ids: Vec<i64> = (0..16).map(|i| (i * 7 % 50) as i64).collect();
            let int =
                |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [2, 8]), &device);
            // The second sequence is padded after 5 tokens.
            let mask: Vec<f32> = (0..16).map(|i| if i < 13 { 1.0 } else { 0.0 }).collect();
            let input = BertInput {
                input_ids: int(ids),
                token_type_ids: int((0..16).map(|i| i64::from(i % 8 >= 4)).collect()),
                attention_mask: Tensor::from_data(TensorData::new(mask, [2, 8]), &device),
            };
            let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
            crate::train::precision::assert_bf16_follows_fp32(
                &model,
                |m| {
                    CrossEntropyLossConfig::new()
                        .init(&device)
                        .forward(m.forward(&input).cast(FloatDType::F32), labels.clone())
                },
                0.02,
            );
        }
    }
}
