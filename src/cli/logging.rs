//! Log lines: `tracing` events as text or JSON, through the rank-aware sink of
//! `dist::rank_log` (standard error; a rank's own file on the data-parallel ranks other than 0).
//! `RUNNER_LOG` sets the level (`info` by default).

use std::io::IsTerminal as _;

use super::args::LogFormat;
use crate::dist::{contract, rank_log};

pub fn init(format: LogFormat) {
    let level = std::env::var("RUNNER_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let rank = contract::rank_from_env();
    rank_log::set_rank(rank);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(rank_log::Sink)
        // Ranks other than 0 end up writing to a file.
        .with_ansi(std::io::stderr().is_terminal() && rank.unwrap_or(0) == 0)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.without_time().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
