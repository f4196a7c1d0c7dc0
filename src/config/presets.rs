//! Profiles: named presets (`--profile 8xA100`) or files (`--profile my/cluster.toml`).
//!
//! A name is looked up in `./presets/`, then in each directory of `$RUNNER_PRESETS`
//! (`:`-separated), then among the presets compiled into the binary, so the binary works
//! outside the repository.

use std::path::{Path, PathBuf};

/// The repository's `presets/*.toml`, compiled in. A test checks this list against the folder.
pub const BUILTIN: &[(&str, &str)] = &[
    ("cpu", include_str!("../../presets/cpu.toml")),
    ("1xRTX3090", include_str!("../../presets/1xRTX3090.toml")),
    ("1xA100", include_str!("../../presets/1xA100.toml")),
    ("8xA100", include_str!("../../presets/8xA100.toml")),
    ("2x8xH100", include_str!("../../presets/2x8xH100.toml")),
    ("tpu-v4-8", include_str!("../../presets/tpu-v4-8.toml")),
    ("huge-model", include_str!("../../presets/huge-model.toml")),
];

/// Environment variable naming extra preset directories.
pub const PRESETS_ENV: &str = "RUNNER_PRESETS";

/// Where a profile's text comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PresetSource {
    File(PathBuf),
    Builtin(&'static str),
}

#[derive(Debug, Clone)]
pub struct Preset {
    pub name: String,
    pub source: PresetSource,
}

impl Preset {
    /// Path shown in diagnostics (`<built-in>/cpu.toml` for compiled-in presets).
    pub fn display_path(&self) -> PathBuf {
        match &self.source {
            PresetSource::File(p) => p.clone(),
            PresetSource::Builtin(_) => PathBuf::from(format!("<built-in>/{}.toml", self.name)),
        }
    }

    pub fn read(&self) -> std::io::Result<String> {
        match &self.source {
            PresetSource::File(p) => std::fs::read_to_string(p),
            PresetSource::Builtin(text) => Ok((*text).to_string()),
        }
    }

    /// The one-line `description` of the profile, if it has a readable one.
    pub fn description(&self) -> Option<String> {
        let text = self.read().ok()?;
        let value: toml::Table = toml::from_str(&text).ok()?;
        value.get("description")?.as_str().map(str::to_owned)
    }
}

/// Whether a `--profile` argument names a file rather than a preset.
pub fn is_path(arg: &str) -> bool {
    arg.contains('/')
        || [".toml", ".yaml", ".yml"]
            .iter()
            .any(|ext| arg.ends_with(ext))
}

fn search_dirs(presets_env: Option<&str>) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("presets")];
    if let Some(env) = presets_env {
        dirs.extend(env.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    dirs
}

fn find_in_dir(dir: &Path, name: &str) -> Option<PathBuf> {
    ["toml", "yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

/// Looks a preset up by name.
pub fn find(name: &str, presets_env: Option<&str>) -> Option<Preset> {
    for dir in search_dirs(presets_env) {
        if let Some(path) = find_in_dir(&dir, name) {
            return Some(Preset {
                name: name.into(),
                source: PresetSource::File(path),
            });
        }
    }
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| Preset {
            name: (*n).into(),
            source: PresetSource::Builtin(text),
        })
}

/// Every preset visible from here, first occurrence of each name winning, sorted by name.
pub fn all(presets_env: Option<&str>) -> Vec<Preset> {
    let mut found: Vec<Preset> = Vec::new();
    let mut push = |p: Preset| {
        if !found.iter().any(|f| f.name == p.name) {
            found.push(p);
        }
    };
    for dir in search_dirs(presets_env) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let is_config = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("toml" | "yaml" | "yml")
            );
            if let (true, Some(stem)) = (is_config, path.file_stem().and_then(|s| s.to_str())) {
                push(Preset {
                    name: stem.into(),
                    source: PresetSource::File(path.clone()),
                });
            }
        }
    }
    for (name, text) in BUILTIN {
        push(Preset {
            name: (*name).into(),
            source: PresetSource::Builtin(text),
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_list_matches_presets_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        on_disk.sort();
        let mut builtin: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        builtin.sort();
        assert_eq!(on_disk, builtin, "add new presets to presets::BUILTIN");
    }

    #[test]
    fn every_builtin_has_a_description() {
        for p in all(None) {
            assert!(
                p.description().is_some_and(|d| !d.is_empty()),
                "{} has no description",
                p.name
            );
        }
    }

    #[test]
    fn paths_and_names() {
        assert!(is_path("./x.toml") && is_path("a/b") && is_path("mine.yaml"));
        assert!(!is_path("8xA100") && !is_path("tpu-v4-8"));
    }
}
