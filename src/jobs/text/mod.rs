//! `job: text_classification`: BERT-style sentence(-pair) classification, MNLI and GLUE.

pub mod data;
