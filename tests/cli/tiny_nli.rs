//! The small NLI set under `data/mnli-tiny/` (MNLI's TSV format), made by the generator below
//! with a fixed seed. No MNLI copy can be downloaded here, so `experiments/mnli-tiny.yaml`
//! trains on this: template sentences whose entailment, neutral and contradiction
//! hypotheses a small BERT can learn to tell apart. `dev_mismatched` uses names and objects
//! that never occur in training, as MNLI's mismatched genres do.
//!
//! The committed files must equal the generator's output (this test); to change the set,
//! edit the generator and run `UPDATE_TINY_NLI=1 cargo test --test cli tiny_nli`.

use std::path::PathBuf;

use runner::config::types::TextTask;
use runner::jobs::text::data::read_examples;

/// SplitMix64: written out rather than taken from `rand` so that the bytes of the data set
/// never change with a dependency's choice of algorithm.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn other<'a>(&mut self, items: &[&'a str], not: &str) -> &'a str {
        loop {
            let x = self.pick(items);
            if x != not {
                return x;
            }
        }
    }
}

struct Pools {
    names: &'static [&'static str],
    objects: &'static [&'static str],
}

const MATCHED: Pools = Pools {
    names: &[
        "alice", "bob", "carol", "david", "emma", "frank", "grace", "henry", "irene", "jack",
        "kate", "liam",
    ],
    objects: &[
        "car", "table", "house", "bicycle", "fence", "boat", "piano", "window", "door", "chair",
        "lamp", "box",
    ],
};
const MISMATCHED: Pools = Pools {
    names: &["quinn", "rosa", "sam", "tina", "umar", "vera"],
    objects: &["kettle", "ladder", "guitar", "wagon", "cabinet", "mirror"],
};
/// (past, base) forms.
const VERBS: &[(&str, &str)] = &[
    ("painted", "paint"),
    ("cleaned", "clean"),
    ("bought", "buy"),
    ("sold", "sell"),
    ("fixed", "fix"),
    ("found", "find"),
    ("washed", "wash"),
    ("moved", "move"),
];
const PLACES: &[&str] = &[
    "garden", "kitchen", "garage", "office", "park", "school", "market", "station",
];
const TIMES: &[&str] = &[
    "yesterday",
    "on monday",
    "last week",
    "at night",
    "this morning",
];
const ADJECTIVES: &[&str] = &["red", "old", "small", "new", "blue", "heavy"];
const LABELS: [&str; 3] = ["entailment", "neutral", "contradiction"];

fn example(rng: &mut Rng, pools: &Pools) -> (String, String, &'static str) {
    let name = rng.pick(pools.names);
    let (past, base) = VERBS[(rng.next() % VERBS.len() as u64) as usize];
    let object = rng.pick(pools.objects);
    let adj = rng.pick(ADJECTIVES);
    let place = rng.pick(PLACES);
    let time = rng.pick(TIMES);
    let premise = format!("{name} {past} the {adj} {object} in the {place} {time}.");
    let label = LABELS[(rng.next() % 3) as usize];
    let other_name = rng.other(pools.names, name);
    let other_adj = rng.other(ADJECTIVES, adj);
    let other_place = rng.other(PLACES, place);
    let hypothesis = match (label, rng.next() % 4) {
        ("entailment", 0) => format!("{name} {past} the {object}."),
        ("entailment", 1) => format!("someone {past} the {adj} {object}."),
        ("entailment", 2) => format!("{name} was in the {place}."),
        ("entailment", _) => format!("{name} did something {time}."),
        ("neutral", 0) => format!("{name} {past} the {object} with {other_name}."),
        ("neutral", 1) => format!("{name} {past} the {object} because it was cheap."),
        ("neutral", 2) => format!("{name} was happy in the {place}."),
        ("neutral", _) => format!("{other_name} also wanted the {object}."),
        (_, 0) => format!("{name} did not {base} the {object}."),
        (_, 1) => format!("nobody {past} the {object}."),
        (_, 2) => format!("{name} was never in the {place}."),
        (_, _) => format!("{name} {past} the {other_adj} {object} in the {other_place} {time}."),
    };
    (premise, hypothesis, label)
}

fn tsv(rng: &mut Rng, pools: &Pools, genre: &str, rows: usize) -> String {
    let mut out = String::from("index\tgenre\tsentence1\tsentence2\tgold_label\n");
    for i in 0..rows {
        let (p, h, l) = example(rng, pools);
        out.push_str(&format!("{i}\t{genre}\t{p}\t{h}\t{l}\n"));
    }
    out
}

/// Every word and punctuation mark of the set, plus BERT's special tokens.
fn vocab(files: &[&str]) -> String {
    let mut words: Vec<String> = Vec::new();
    for text in files {
        for line in text.lines().skip(1) {
            for field in line.split('\t').skip(2).take(2) {
                for w in field.replace('.', " . ").split_whitespace() {
                    words.push(w.to_string());
                }
            }
        }
    }
    words.sort();
    words.dedup();
    let mut out = String::from("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
    for w in words {
        out.push_str(&w);
        out.push('\n');
    }
    out
}

fn generate() -> Vec<(&'static str, String)> {
    let mut rng = Rng(20261123);
    let train = tsv(&mut rng, &MATCHED, "templates", 3000);
    let matched = tsv(&mut rng, &MATCHED, "templates", 300);
    let mismatched = tsv(&mut rng, &MISMATCHED, "held-out-names", 300);
    let vocab = vocab(&[&train, &matched, &mismatched]);
    vec![
        ("train.tsv", train),
        ("dev_matched.tsv", matched),
        ("dev_mismatched.tsv", mismatched),
        ("vocab.txt", vocab),
    ]
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnli-tiny")
}

#[test]
fn committed_set_equals_the_generator_output() {
    let update = std::env::var_os("UPDATE_TINY_NLI").is_some();
    if update {
        std::fs::create_dir_all(dir()).unwrap();
    }
    for (name, text) in generate() {
        let path = dir().join(name);
        if update {
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} is stale or missing: run UPDATE_TINY_NLI=1 cargo test --test cli tiny_nli",
            path.display()
        );
    }
}

#[test]
fn the_set_reads_as_mnli_with_balanced_labels() {
    for (name, rows) in [
        ("train.tsv", 3000),
        ("dev_matched.tsv", 300),
        ("dev_mismatched.tsv", 300),
    ] {
        let (examples, report) = read_examples(&dir().join(name), TextTask::Mnli).unwrap();
        assert_eq!(examples.len(), rows);
        assert_eq!(report.skipped(), 0);
        // The majority class stays near a third, so beating it means learning something.
        let majority = *report.per_label.iter().max().unwrap() as f64 / rows as f64;
        assert!(majority < 0.40, "{name}: majority class {majority:.2}");
    }
}

#[test]
fn mismatched_names_and_objects_never_occur_in_training() {
    let train = std::fs::read_to_string(dir().join("train.tsv")).unwrap();
    for word in MISMATCHED.names.iter().chain(MISMATCHED.objects) {
        assert!(
            !train
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == *word),
            "{word}"
        );
    }
}
