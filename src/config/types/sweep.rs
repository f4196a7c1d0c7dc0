//! The `sweep:` section: several runs of one experiment (`runner sweep`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Several runs of this experiment, one per *cell*: every combination of the `grid` values,
/// times the `zip` groups, times the `seeds`. `runner sweep` runs them (`runner run` refuses
/// a file with a sweep); each cell is an ordinary run directory under `output_dir`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// Keys (dotted, as `--set` writes them: `optimizer.lr`) and the values each takes; every
    /// combination is a cell (Hydra's `-m key=a,b`). A list of values, or a generator:
    /// `{logspace: [1e-5, 1e-3, 5]}` (5 values from 1e-5 to 1e-3, evenly spaced in log,
    /// as numpy's geomspace), `{linspace: [0.0, 0.1, 3]}`.
    pub grid: BTreeMap<String, Axis>,
    /// Groups of keys advanced together: the n-th cell of a group takes the n-th value of
    /// each of its keys, so the lists of one group have one length (`model.arch: [bert-mini,
    /// bert-small]` with `train.per_device_batch_size: [32, 16]` is two cells, not four).
    pub zip: Vec<BTreeMap<String, Axis>>,
    /// The seeds every combination runs with (`seed` of each cell).
    #[schemars(length(min = 1))]
    pub seeds: Option<Vec<u64>>,
    /// Run every combination this many times, with seeds `seed`, `seed + 1`, … (instead of
    /// listing `seeds`).
    #[schemars(range(min = 1))]
    pub repeat: Option<u32>,
    /// Cells run at once by `runner sweep` (`--parallel` overrides it) and in a Slurm job
    /// array (`%max_parallel`). Default 1.
    #[schemars(range(min = 1))]
    pub max_parallel: Option<u32>,
}

/// The values of one swept key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Axis {
    /// The values, in order.
    Values(#[schemars(length(min = 1))] Vec<serde_json::Value>),
    /// `[first, last, count]` evenly spaced in log (both ends positive).
    Logspace { logspace: (f64, f64, u32) },
    /// `[first, last, count]` evenly spaced.
    Linspace { linspace: (f64, f64, u32) },
}

impl Axis {
    /// The values this axis takes (generated ones rounded to 4 significant digits, so that
    /// configurations and cell names stay readable), or why it has none.
    pub fn values(&self) -> Result<Vec<serde_json::Value>, String> {
        let spaced =
            |a: f64, b: f64, n: u32, log: bool| -> Result<Vec<serde_json::Value>, String> {
                if n == 0 {
                    return Err("the count (third number) must be at least 1".into());
                }
                if log && (a <= 0.0 || b <= 0.0) {
                    return Err("logspace needs two positive ends".into());
                }
                let (a, b) = if log { (a.log10(), b.log10()) } else { (a, b) };
                Ok((0..n)
                    .map(|i| {
                        let t = if n == 1 {
                            0.0
                        } else {
                            f64::from(i) / f64::from(n - 1)
                        };
                        let x = a + (b - a) * t;
                        let x = if log { 10f64.powf(x) } else { x };
                        serde_json::json!(round_significant(x, 4))
                    })
                    .collect())
            };
        match self {
            Axis::Values(v) if v.is_empty() => Err("the list of values is empty".into()),
            Axis::Values(v) => Ok(v.clone()),
            Axis::Logspace {
                logspace: (a, b, n),
            } => spaced(*a, *b, *n, true),
            Axis::Linspace {
                linspace: (a, b, n),
            } => spaced(*a, *b, *n, false),
        }
    }
}

fn round_significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let factor = 10f64.powi(digits - 1 - magnitude);
    let rounded = (x * factor).round() / factor;
    // Through the shortest decimal form, so that 3.162e-4 is that and not 3.1620000000000004e-4.
    format!("{rounded:.prec$e}", prec = (digits - 1) as usize)
        .parse()
        .unwrap_or(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_give_rounded_values() {
        let log = Axis::Logspace {
            logspace: (1e-5, 1e-3, 5),
        };
        let v: Vec<f64> = log
            .values()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(v, [1e-5, 3.162e-5, 1e-4, 3.162e-4, 1e-3]);
        let lin = Axis::Linspace {
            linspace: (0.0, 0.1, 3),
        };
        let v: Vec<f64> = lin
            .values()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(v, [0.0, 0.05, 0.1]);
        assert!(
            Axis::Logspace {
                logspace: (0.0, 1.0, 3)
            }
            .values()
            .is_err()
        );
        assert!(
            Axis::Linspace {
                linspace: (0.0, 1.0, 0)
            }
            .values()
            .is_err()
        );
        assert!(Axis::Values(vec![]).values().is_err());
    }
}
