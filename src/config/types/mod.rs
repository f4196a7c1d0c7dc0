//! The typed experiment configuration.
//!
//! These types are the single source of truth: serde reads and writes them, schemars turns
//! their doc comments, defaults and ranges into `schema/runner.schema.json`, and `runner init`
//! writes starter files from that schema. Nothing here knows about burn or any backend.

mod experiment;
mod hardware;
mod job;
mod sections;
mod sweep;

pub use experiment::*;
pub use hardware::*;
pub use job::*;
pub use sections::*;
pub use sweep::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// strum's names (what the code prints) are serde's (what files hold).
    #[test]
    fn names_are_the_files_names() {
        fn serde_name<T: serde::Serialize>(v: T) -> String {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        }
        for j in JobKind::ALL {
            assert_eq!(j.as_str(), serde_name(j));
            assert_eq!(JobKind::parse(j.as_str()), Some(*j));
        }
        for b in [Backend::Flex, Backend::Tch] {
            assert_eq!(b.as_str(), serde_name(b));
        }
        for d in [Dtype::Fp32, Dtype::Bf16, Dtype::Fp16] {
            assert_eq!(d.as_str(), serde_name(d));
        }
        for d in [
            DistBackend::Nccl,
            DistBackend::Gloo,
            DistBackend::Mpi,
            DistBackend::Hccl,
        ] {
            assert_eq!(d.as_str(), serde_name(d));
        }
    }
}
