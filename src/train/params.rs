//! Parameter ids derived from parameter paths.
//!
//! burn keys optimizer state by `ParamId`, which it draws at random when a module is built,
//! and safetensors files keep the ids of the module they are loaded into. So that a resumed
//! process (a new model, new ids) finds its AdamW moments, every parameter's id is replaced by
//! a hash of its path (`encoder.layer.0.attention.self_attn.query.weight`): the same model
//! structure gets the same ids in every process.

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::{Int, Tensor};

/// `model` with each parameter's id set from its path. Initialises lazy parameters (in the
/// module's fixed visiting order, so seeded draws stay deterministic).
pub fn with_path_ids<M: Module>(model: M) -> M {
    let mut mapper = PathIds { path: Vec::new() };
    let model = model.map(&mut mapper);
    debug_assert!(mapper.path.is_empty());
    model
}

struct PathIds {
    path: Vec<String>,
}

impl PathIds {
    fn id(&self, leaf: &str) -> ParamId {
        let mut path = self.path.join(".");
        path.push('.');
        path.push_str(leaf);
        ParamId::from(fnv1a64(path.as_bytes()))
    }
}

impl ModuleMapper for PathIds {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.id("float"), value, mapper)
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.id("int"), value, mapper)
    }
}

/// FNV-1a, 64 bits: a fixed, documented hash (std's `DefaultHasher` may change between Rust
/// releases, which would orphan the optimizer state of old checkpoints). Collisions among a
/// model's few thousand paths are vanishingly unlikely and are checked in debug builds by
/// the optimizer record count in tests.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use burn::module::ModuleVisitor;
    use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
    use burn::prelude::*;

    use super::*;

    #[derive(Module, Debug)]
    struct Net {
        a: Linear,
        layers: Vec<LayerNorm>,
    }

    fn ids(net: &Net) -> Vec<u64> {
        struct Ids(Vec<u64>);
        impl ModuleVisitor for Ids {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.0.push(p.id.val());
            }
        }
        let mut v = Ids(Vec::new());
        net.visit(&mut v);
        v.0
    }

    fn net(device: &Device) -> Net {
        Net {
            a: LinearConfig::new(2, 3).init(device),
            layers: (0..3)
                .map(|_| LayerNormConfig::new(3).init(device))
                .collect(),
        }
    }

    #[test]
    fn ids_depend_on_paths_only_and_are_distinct() {
        let (_guard, device) = crate::train::backend::seeded_test_device(3);
        let first = ids(&with_path_ids(net(&device)));
        let second = ids(&with_path_ids(net(&device)));
        assert_eq!(
            first, second,
            "two builds of one structure get the same ids"
        );
        assert_eq!(first.len(), 2 + 3 * 2);
        assert_eq!(first.iter().collect::<HashSet<_>>().len(), first.len());
        assert_ne!(
            ids(&net(&device)),
            ids(&net(&device)),
            "burn's own ids are random"
        );
    }
}
