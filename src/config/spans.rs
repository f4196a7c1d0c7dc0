//! Key path → line:column index of a YAML or TOML file, for diagnostics and `--explain`.
//!
//! serde and figment keep no positions, so the text is read a second time by parsers that
//! do (saphyr-parser's event stream for YAML, `toml::de::DeTable` for TOML). Only keys are
//! indexed (plus sequence items as `key.N`). Both walks are iterative or depth-capped, so
//! hostile nesting cannot overflow the stack.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// 1-based (line, column).
pub type Pos = (usize, usize);

#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    keys: HashMap<String, Pos>,
    lines: Vec<String>,
    /// Keys written twice in one mapping: (key, position of the second, of the first).
    /// serde_yaml keeps the last silently when reading into a map, so we report them.
    pub duplicates: Vec<(String, Pos, Pos)>,
}

impl SpanIndex {
    /// Position of `key`, or of its nearest ancestor that appears in the file.
    pub fn find(&self, key: &str) -> Option<Pos> {
        let mut k = key;
        loop {
            if let Some(p) = self.keys.get(k) {
                return Some(*p);
            }
            k = &k[..k.rfind('.')?];
        }
    }

    /// Position of exactly `key`.
    pub fn exact(&self, key: &str) -> Option<Pos> {
        self.keys.get(key).copied()
    }

    pub fn line(&self, line: usize) -> Option<&str> {
        self.lines.get(line.checked_sub(1)?).map(String::as_str)
    }

    pub fn from_yaml(text: &str) -> SpanIndex {
        enum Frame {
            Map { path: String, key: Option<String> },
            Seq { path: String, index: usize },
        }
        fn child(path: &str, seg: &str) -> String {
            if path.is_empty() {
                seg.to_string()
            } else {
                format!("{path}.{seg}")
            }
        }
        let mut keys = HashMap::new();
        let mut duplicates = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        // Only the first document counts, as for serde_yaml.
        let mut documents = 0;
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let pos = (span.start.line(), span.start.col() + 1);
            // The path of the value this event starts, if it is a value (not a map key).
            let mut value_path = None;
            let ends = matches!(event, Event::MappingEnd | Event::SequenceEnd);
            match stack.last_mut() {
                Some(Frame::Map { path, key }) if !ends => match key.take() {
                    None => {
                        if let Event::Scalar(s, ..) = &event {
                            let k = child(path, s);
                            match keys.get(&k) {
                                Some(first) => duplicates.push((k.clone(), pos, *first)),
                                None => {
                                    keys.insert(k.clone(), pos);
                                }
                            }
                            *key = Some(k);
                            continue;
                        }
                        // Complex keys (maps or sequences as keys) are not indexed.
                        *key = Some(child(path, "?"));
                        if !matches!(event, Event::MappingStart(..) | Event::SequenceStart(..)) {
                            continue;
                        }
                    }
                    Some(k) => value_path = Some(k),
                },
                Some(Frame::Seq { path, index }) if !ends => {
                    let k = child(path, &index.to_string());
                    keys.entry(k.clone()).or_insert(pos);
                    *index += 1;
                    value_path = Some(k);
                }
                _ => {}
            }
            match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        break;
                    }
                }
                Event::MappingStart(..) => stack.push(Frame::Map {
                    path: value_path.unwrap_or_default(),
                    key: None,
                }),
                Event::SequenceStart(..) => stack.push(Frame::Seq {
                    path: value_path.unwrap_or_default(),
                    index: 0,
                }),
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        SpanIndex {
            keys,
            lines: text.lines().map(str::to_owned).collect(),
            duplicates,
        }
    }

    pub fn from_toml(text: &str) -> SpanIndex {
        use toml::de::{DeTable, DeValue};
        const MAX_DEPTH: usize = 64;

        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let to_pos = |offset: usize| -> Pos {
            let line = line_starts.partition_point(|&s| s <= offset);
            let start = line_starts[line - 1];
            let col = text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
            (line, col)
        };

        fn walk_table(
            table: &DeTable<'_>,
            path: &str,
            depth: usize,
            keys: &mut HashMap<String, Pos>,
            to_pos: &dyn Fn(usize) -> Pos,
        ) {
            if depth > MAX_DEPTH {
                return;
            }
            for (k, v) in table.iter() {
                let p = if path.is_empty() {
                    k.get_ref().to_string()
                } else {
                    format!("{path}.{}", k.get_ref())
                };
                keys.entry(p.clone()).or_insert(to_pos(k.span().start));
                walk_value(v.get_ref(), &p, depth + 1, keys, to_pos);
            }
        }
        fn walk_value(
            v: &DeValue<'_>,
            path: &str,
            depth: usize,
            keys: &mut HashMap<String, Pos>,
            to_pos: &dyn Fn(usize) -> Pos,
        ) {
            if depth > MAX_DEPTH {
                return;
            }
            match v {
                DeValue::Table(t) => walk_table(t, path, depth, keys, to_pos),
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let p = format!("{path}.{i}");
                        keys.entry(p.clone()).or_insert(to_pos(item.span().start));
                        walk_value(item.get_ref(), &p, depth + 1, keys, to_pos);
                    }
                }
                _ => {}
            }
        }

        let mut keys = HashMap::new();
        if let Ok(doc) = DeTable::parse(text) {
            walk_table(doc.get_ref(), "", 0, &mut keys, &to_pos);
        }
        // The TOML parser rejects duplicate keys itself.
        SpanIndex {
            keys,
            lines: text.lines().map(str::to_owned).collect(),
            duplicates: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keys_and_items() {
        let idx = SpanIndex::from_yaml(
            "name: a\ntrain:\n  epochs: 3\n  betas: [0.9, 0.95]\nlist:\n  - x\n  - y\n",
        );
        assert_eq!(idx.exact("name"), Some((1, 1)));
        assert_eq!(idx.exact("train"), Some((2, 1)));
        assert_eq!(idx.exact("train.epochs"), Some((3, 3)));
        assert_eq!(idx.exact("train.betas.1"), Some((4, 16)));
        assert_eq!(idx.exact("list.1"), Some((7, 5)));
        assert_eq!(idx.find("train.epochs.nope"), Some((3, 3)));
        assert_eq!(idx.find("other"), None);
    }

    #[test]
    fn yaml_flow_maps_and_nested_sequences() {
        let idx = SpanIndex::from_yaml("a: {b: 1, c: {d: 2}}\ne: [[1, 2], {f: 3}]\n");
        assert_eq!(idx.exact("a.c.d"), Some((1, 15)));
        assert_eq!(idx.exact("e.1.f"), Some((2, 14)));
    }

    #[test]
    fn toml_tables_and_dotted_keys() {
        let idx = SpanIndex::from_toml(
            "name = \"a\"\n[train]\nepochs = 3\n[optimizer]\nbetas = [0.9, 0.95]\n",
        );
        assert_eq!(idx.exact("name"), Some((1, 1)));
        assert_eq!(idx.exact("train.epochs"), Some((3, 1)));
        assert_eq!(idx.exact("optimizer.betas.1"), Some((5, 15)));
    }

    #[test]
    fn yaml_duplicate_keys_are_found() {
        let idx = SpanIndex::from_yaml("a: 1\nb:\n  c: 1\n  c: 2\nl: [{x: 1}, {x: 2}]\n");
        assert_eq!(idx.duplicates, vec![("b.c".to_string(), (4, 3), (3, 3))]);
    }

    #[test]
    fn hostile_nesting_does_not_overflow() {
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let _ = SpanIndex::from_yaml(&deep);
        let deep = format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let _ = SpanIndex::from_toml(&deep);
    }
}
