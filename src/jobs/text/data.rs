//! Reading classification examples: GLUE-style TSV and JSON Lines.
//!
//! TSV files are read as GLUE's loaders read them: a header row naming the columns, fields
//! split on tabs with no quoting (MNLI's sentences contain unbalanced quotes). JSON Lines
//! files hold one object per line, as dataset dumps write them. Rows whose label is not one
//! of the task's (MNLI's `-` for "no gold label", `-1` for unlabelled test rows) are skipped
//! and counted, never silently dropped; anything malformed is an error naming file and line.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::config::types::TextTask;

/// One example: one or two texts and the index of its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: usize,
}

/// What a file held besides its examples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Rows skipped because their label is not one of the task's, by label text.
    pub skipped_labels: Vec<(String, usize)>,
    /// Examples per label index.
    pub per_label: Vec<usize>,
}

impl ReadReport {
    pub fn skipped(&self) -> usize {
        self.skipped_labels.iter().map(|(_, n)| n).sum()
    }
}

/// A data file that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for DataError {}

/// Label names of a task, in the order of the model's outputs (Hugging Face's GLUE order).
pub fn label_names(task: TextTask) -> &'static [&'static str] {
    match task {
        TextTask::Mnli => &["entailment", "neutral", "contradiction"],
        TextTask::Qnli | TextTask::Rte => &["entailment", "not_entailment"],
        TextTask::Wnli | TextTask::Mrpc | TextTask::Qqp | TextTask::Sst2 | TextTask::Cola => {
            &["0", "1"]
        }
    }
}

/// Whether the task classifies pairs of texts.
pub fn is_pair_task(task: TextTask) -> bool {
    !matches!(task, TextTask::Sst2 | TextTask::Cola)
}

/// Column names that may hold the first text, the second text and the label.
const TEXT_A: &[&str] = &[
    "sentence1",
    "premise",
    "question",
    "question1",
    "#1 String",
    "sentence",
];
const TEXT_B: &[&str] = &[
    "sentence2",
    "hypothesis",
    "sentence",
    "question2",
    "#2 String",
];
const LABEL: &[&str] = &["gold_label", "label", "is_duplicate", "Quality"];

/// The label index of `raw` for `task`: a label name, or its index as a number.
fn label_index(task: TextTask, raw: &str) -> Option<usize> {
    let names = label_names(task);
    let raw = raw.trim();
    names
        .iter()
        .position(|n| *n == raw)
        .or_else(|| raw.parse::<usize>().ok().filter(|&i| i < names.len()))
}

/// The first of `names` (other than `skip`) that `row` has, with its value.
fn field<'r>(
    row: &'r Json,
    names: &[&'static str],
    skip: Option<&str>,
) -> Option<(&'static str, &'r Json)> {
    names
        .iter()
        .filter(|n| Some(**n) != skip)
        .find_map(|n| row.get(*n).map(|v| (*n, v)))
}

/// Reads a `.tsv` or `.jsonl`/`.json` file of examples for `task`.
pub fn read_examples(path: &Path, task: TextTask) -> Result<(Vec<Example>, ReadReport), DataError> {
    let err = |line: Option<usize>, message: String| DataError {
        path: path.to_path_buf(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(None, format!("cannot read: {e}")))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut report = ReadReport {
        per_label: vec![0; label_names(task).len()],
        ..Default::default()
    };
    let mut examples = Vec::new();
    let mut push = |example: Result<Example, String>, report: &mut ReadReport| match example {
        Ok(e) => {
            report.per_label[e.label] += 1;
            examples.push(e);
        }
        Err(label) => match report.skipped_labels.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => report.skipped_labels.push((label, 1)),
        },
    };
    let pair = is_pair_task(task);
    match ext {
        "tsv" => {
            let mut lines = text.lines().enumerate();
            let Some((_, header)) = lines.next() else {
                return Err(err(Some(1), "empty file: expected a header row".into()));
            };
            let columns: Vec<&str> = header.split('\t').collect();
            let find = |candidates: &[&str], not: Option<usize>| {
                candidates.iter().find_map(|c| {
                    columns
                        .iter()
                        .position(|col| col == c)
                        .filter(|&i| Some(i) != not)
                })
            };
            let missing = |what: &str, candidates: &[&str]| {
                err(
                    Some(1),
                    format!(
                        "no {what} column: expected one of {} in the header, found {}",
                        candidates.join(", "),
                        columns.join(", ")
                    ),
                )
            };
            let a = find(TEXT_A, None).ok_or_else(|| missing("first-text", TEXT_A))?;
            let b = if pair {
                Some(find(TEXT_B, Some(a)).ok_or_else(|| missing("second-text", TEXT_B))?)
            } else {
                None
            };
            let l = find(LABEL, None).ok_or_else(|| missing("label", LABEL))?;
            for (i, line) in lines {
                if line.trim().is_empty() {
                    continue;
                }
                let fields: Vec<&str> = line.split('\t').collect();
                if fields.len() != columns.len() {
                    return Err(err(
                        Some(i + 1),
                        format!(
                            "{} fields where the header has {}",
                            fields.len(),
                            columns.len()
                        ),
                    ));
                }
                let example = label_index(task, fields[l])
                    .map(|label| Example {
                        text_a: fields[a].to_string(),
                        text_b: b.map(|b| fields[b].to_string()),
                        label,
                    })
                    .ok_or_else(|| fields[l].trim().to_string());
                push(example, &mut report);
            }
        }
        "jsonl" | "json" => {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let row: Json = serde_json::from_str(line)
                    .map_err(|e| err(Some(i + 1), format!("not a JSON object: {e}")))?;

                let text_of = |v: &Json, name: &str| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| err(Some(i + 1), format!("`{name}` is not a string")))
                };
                let (a_name, a) = field(&row, TEXT_A, None).ok_or_else(|| {
                    err(
                        Some(i + 1),
                        format!("no text field: expected one of {}", TEXT_A.join(", ")),
                    )
                })?;
                let text_a = text_of(a, a_name)?;
                let text_b = if pair {
                    let (b_name, b) = field(&row, TEXT_B, Some(a_name)).ok_or_else(|| {
                        err(
                            Some(i + 1),
                            format!(
                                "no second text field: expected one of {}",
                                TEXT_B.join(", ")
                            ),
                        )
                    })?;
                    Some(text_of(b, b_name)?)
                } else {
                    None
                };
                let (_, label) = field(&row, LABEL, None).ok_or_else(|| {
                    err(
                        Some(i + 1),
                        format!("no label field: expected one of {}", LABEL.join(", ")),
                    )
                })?;
                let raw = match label {
                    Json::String(s) => s.clone(),
                    Json::Number(n) => n.to_string(),
                    other => {
                        return Err(err(
                            Some(i + 1),
                            format!("label {other} is neither a name nor an index"),
                        ));
                    }
                };
                let example = label_index(task, &raw)
                    .map(|label| Example {
                        text_a,
                        text_b,
                        label,
                    })
                    .ok_or(raw);
                push(example, &mut report);
            }
        }
        _ => {
            return Err(err(
                None,
                "unknown format: use .tsv (GLUE) or .jsonl (JSON Lines)".into(),
            ));
        }
    }
    Ok((examples, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn mnli_tsv_with_glue_columns_and_unbalanced_quotes() {
        let (_d, p) = file(
            "dev.tsv",
            "index\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n\
             0\tfiction\tHe said \"hi.\tHe spoke.\tentailment\tentailment\n\
             1\tfiction\tA cat.\tA dog.\tneutral\t-\n\
             2\tslate\tIt rains.\tIt is dry.\tcontradiction\tcontradiction\n",
        );
        let (ex, report) = read_examples(&p, TextTask::Mnli).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(
            ex[0],
            Example {
                text_a: "He said \"hi.".into(),
                text_b: Some("He spoke.".into()),
                label: 0
            }
        );
        assert_eq!(ex[1].label, 2);
        assert_eq!(report.skipped_labels, vec![("-".to_string(), 1)]);
        assert_eq!(report.per_label, vec![1, 0, 1]);
    }

    #[test]
    fn jsonl_with_names_or_indices() {
        let (_d, p) = file(
            "train.jsonl",
            "{\"premise\": \"a\", \"hypothesis\": \"b\", \"label\": 1}\n\n{\"premise\": \"c\", \"hypothesis\": \"d\", \"label\": \"contradiction\"}\n{\"premise\": \"e\", \"hypothesis\": \"f\", \"label\": -1}\n",
        );
        let (ex, report) = read_examples(&p, TextTask::Mnli).unwrap();
        assert_eq!(ex.iter().map(|e| e.label).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(report.skipped(), 1);
    }

    #[test]
    fn single_sentence_tasks() {
        let (_d, p) = file("sst2.tsv", "sentence\tlabel\ngreat movie\t1\nawful\t0\n");
        let (ex, _) = read_examples(&p, TextTask::Sst2).unwrap();
        assert_eq!(
            ex[0],
            Example {
                text_a: "great movie".into(),
                text_b: None,
                label: 1
            }
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let (_d, p) = file("x.tsv", "sentence1\tsentence2\tgold_label\na\tb\n");
        let e = read_examples(&p, TextTask::Mnli).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.to_string()
                .contains("x.tsv:2: 2 fields where the header has 3"),
            "{e}"
        );
        let (_d, p) = file("x.tsv", "premise\thypothesis\n");
        let e = read_examples(&p, TextTask::Mnli).unwrap_err();
        assert!(
            e.to_string().contains("no label column")
                && e.to_string().contains("premise, hypothesis"),
            "{e}"
        );
        let (_d, p) = file(
            "x.jsonl",
            "{\"premise\": \"a\", \"hypothesis\": \"b\", \"label\": 0}\n{oops\n",
        );
        let e = read_examples(&p, TextTask::Mnli).unwrap_err();
        assert!(
            e.to_string().contains("x.jsonl:2: not a JSON object"),
            "{e}"
        );
        let e = read_examples(Path::new("/nonexistent/x.tsv"), TextTask::Mnli).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/x.tsv: cannot read"),
            "{e}"
        );
    }
}
