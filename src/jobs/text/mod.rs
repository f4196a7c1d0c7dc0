//! `job: text_classification`: BERT-style sentence(-pair) classification, MNLI and GLUE.

pub mod data;
pub mod job;
pub mod model;
pub mod pretrained;
pub mod tokenize;

pub use job::TextJob;
