//! `runner profiles`: the available hardware profiles with their descriptions.

use std::process::ExitCode;

use anyhow::Result;

use crate::config::presets;

pub fn profiles() -> Result<ExitCode> {
    let env = std::env::var(presets::PRESETS_ENV).ok();
    let all = presets::all(env.as_deref());
    let width = all.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &all {
        let source = match &p.source {
            presets::PresetSource::File(path) => path.display().to_string(),
            presets::PresetSource::Builtin(_) => "built in".to_string(),
        };
        let description = p.description().unwrap_or_else(|| "(no description)".into());
        println!("{:<width$}  {description}  [{source}]", p.name);
    }
    Ok(ExitCode::SUCCESS)
}
