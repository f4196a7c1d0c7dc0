//! Tokenization with Hugging Face's `tokenizers`: WordPiece from a `vocab.txt`, or any
//! `tokenizer.json`. Pairs are encoded `[CLS] a [SEP] b [SEP]` with token type ids 0 and 1,
//! truncated longest-first to `max_seq_length` (special tokens included), as `run_glue.py`
//! does. Padding is per batch (`jobs::text::batch`), not here.

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{EncodeInput, Model as _, Tokenizer, TruncationParams, TruncationStrategy};

use super::data::Example;

/// One encoded example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
}

/// Why a tokenizer cannot be loaded.
#[derive(Debug)]
pub struct TokenizerError(pub String);

impl std::fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TokenizerError {}

impl TextTokenizer {
    /// Loads `path`: a `tokenizer.json` (any file ending in `.json`), a `vocab.txt`, or a
    /// directory holding either (a Hugging Face checkpoint directory; `tokenizer.json` wins).
    pub fn load(path: &Path, max_seq_length: usize) -> Result<TextTokenizer, TokenizerError> {
        let file = resolve_file(path)?;
        let mut inner = if file.extension().is_some_and(|e| e == "json") {
            Tokenizer::from_file(&file).map_err(|e| {
                TokenizerError(format!(
                    "{}: not a Hugging Face tokenizer.json: {e}",
                    file.display()
                ))
            })?
        } else {
            wordpiece(&file)?
        };
        // The batch pads; a tokenizer.json may carry its own fixed padding, which we drop.
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                ..TruncationParams::default()
            }))
            .map_err(|e| TokenizerError(format!("{}: {e}", file.display())))?;
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0);
        for special in ["[CLS]", "[SEP]"] {
            if inner.token_to_id(special).is_none() {
                return Err(TokenizerError(format!(
                    "{}: the vocabulary has no `{special}` token, which BERT-style pair \
                     encoding needs; use a BERT WordPiece vocabulary",
                    file.display()
                )));
            }
        }
        Ok(TextTokenizer { inner, pad_id })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Encodes every example (in parallel); `[CLS] a [SEP] (b [SEP])`.
    pub fn encode_all(&self, examples: &[Example]) -> Result<Vec<Encoded>, TokenizerError> {
        let inputs: Vec<EncodeInput> = examples
            .iter()
            .map(|e| match &e.text_b {
                Some(b) => (e.text_a.as_str(), b.as_str()).into(),
                None => e.text_a.as_str().into(),
            })
            .collect();
        let encodings = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| TokenizerError(format!("tokenization failed: {e}")))?;
        Ok(encodings
            .into_iter()
            .map(|enc| Encoded {
                ids: enc.get_ids().to_vec(),
                type_ids: enc.get_type_ids().to_vec(),
            })
            .collect())
    }
}

fn resolve_file(path: &Path) -> Result<PathBuf, TokenizerError> {
    if path.is_dir() {
        for name in ["tokenizer.json", "vocab.txt"] {
            let candidate = path.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        return Err(TokenizerError(format!(
            "{}: the directory holds neither tokenizer.json nor vocab.txt",
            path.display()
        )));
    }
    if !path.is_file() {
        return Err(TokenizerError(format!(
            "{}: no such tokenizer file (give a vocab.txt, a tokenizer.json or a directory with one)",
            path.display()
        )));
    }
    Ok(path.to_path_buf())
}

/// BERT's WordPiece pipeline around a `vocab.txt`. Lowercasing follows a
/// `tokenizer_config.json` beside it (`do_lower_case`); without one, BERT's uncased default.
fn wordpiece(vocab: &Path) -> Result<Tokenizer, TokenizerError> {
    let vocab_str = vocab
        .to_str()
        .ok_or_else(|| TokenizerError(format!("{}: path is not valid UTF-8", vocab.display())))?;
    let model = WordPiece::from_file(vocab_str)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| {
            TokenizerError(format!(
                "{}: not a WordPiece vocabulary: {e}",
                vocab.display()
            ))
        })?;
    let lowercase = vocab
        .parent()
        .map(|d| d.join("tokenizer_config.json"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
        .unwrap_or(true);
    let token_id = |t: &str| {
        model.token_to_id(t).ok_or_else(|| {
            TokenizerError(format!(
                "{}: the vocabulary has no `{t}` token, which BERT-style pair encoding needs",
                vocab.display()
            ))
        })
    };
    let cls = token_id("[CLS]")?;
    let sep = token_id("[SEP]")?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_vocab() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnli-tiny/vocab.txt")
    }

    fn tok(max: usize) -> TextTokenizer {
        TextTokenizer::load(&tiny_vocab(), max).unwrap()
    }

    fn pair(a: &str, b: &str) -> Example {
        Example {
            text_a: a.into(),
            text_b: Some(b.into()),
            label: 0,
        }
    }

    #[test]
    fn pairs_are_cls_a_sep_b_sep_with_type_ids() {
        let t = tok(64);
        let enc = &t
            .encode_all(&[pair("Alice bought a car.", "alice bought.")])
            .unwrap()[0];
        let cls = t.inner.token_to_id("[CLS]").unwrap();
        let sep = t.inner.token_to_id("[SEP]").unwrap();
        assert_eq!(enc.ids[0], cls);
        assert_eq!(enc.ids.iter().filter(|&&i| i == sep).count(), 2);
        assert_eq!(*enc.ids.last().unwrap(), sep);
        let first_sep = enc.ids.iter().position(|&i| i == sep).unwrap();
        assert!(enc.type_ids[..=first_sep].iter().all(|&t| t == 0));
        assert!(enc.type_ids[first_sep + 1..].iter().all(|&t| t == 1));
        // Lowercased: `Alice` is found, not [UNK].
        assert_eq!(enc.ids[1], t.inner.token_to_id("alice").unwrap());
    }

    #[test]
    fn truncation_keeps_the_special_tokens_within_the_limit() {
        let t = tok(8);
        let long = "alice bought the blue chair in the park at night because bob did";
        let enc = &t.encode_all(&[pair(long, long)]).unwrap()[0];
        assert_eq!(enc.ids.len(), 8);
        assert_eq!(
            *enc.ids.last().unwrap(),
            t.inner.token_to_id("[SEP]").unwrap()
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = TextTokenizer::load(Path::new("/nonexistent/vocab.txt"), 8)
            .err()
            .unwrap();
        assert!(err.0.contains("/nonexistent/vocab.txt"), "{err}");
    }
}
