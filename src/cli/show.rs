//! `runner show`: the resolved configuration and its derived values; what the engine cannot
//! train is a warning here, so any configuration can be looked at.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;

use super::{ConfigArgs, report};
use crate::config::render::{self, Format};

pub fn show(config: &ConfigArgs, format: Format, explain: bool) -> Result<ExitCode> {
    let resolved = match crate::config::resolve_for_show(&config.request()) {
        Ok(r) => r,
        Err(d) => return Ok(report(&d, &config.experiment)),
    };
    crate::config::print_warnings(&resolved);
    let text = render::render(&resolved, format, explain);
    let mut out = std::io::stdout().lock();
    // A closed pipe (`runner show … | head`) is not an error worth a message.
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(ExitCode::SUCCESS)
}
