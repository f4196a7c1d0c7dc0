//! Runtime errors with their fix kept apart, printed as cargo prints its errors:
//!
//! ```text
//! error: training failed (run directory runs/mnli-tiny)
//!
//! Caused by:
//!   the loss is NaN at step 3 (epoch 0); training stopped before applying that update
//! help: lower optimizer.lr, set train.clip_grad_norm, or check the data
//! ```
//!
//! An error that knows its fix is a [`Help`] (made with [`fail`], or attached to any error
//! with [`WithHelp::help`]); everything else is an `anyhow` chain, whose links become the
//! `Caused by:` lines. Configuration diagnostics (`config::Diagnostic`) have their own form.

use std::fmt;

/// A message and how to fix it. An empty message only attaches the fix to the error below it.
#[derive(Debug, Clone, PartialEq)]
pub struct Help {
    pub message: String,
    pub help: String,
}

impl fmt::Display for Help {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Help {}

/// An error saying what went wrong and, separately, how to fix it.
pub fn fail(message: impl Into<String>, help: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Help {
        message: message.into(),
        help: help.into(),
    })
}

/// Attaches a fix to an error.
pub trait WithHelp<T> {
    fn help(self, help: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E> WithHelp<T> for Result<T, E>
where
    E: Into<anyhow::Error>,
{
    fn help(self, help: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| {
            e.into().context(Help {
                message: String::new(),
                help: help.into(),
            })
        })
    }
}

/// The error as cargo prints one: `error: …`, the causes under `Caused by:`, then `help: …`.
/// `tag` prefixes the first line (`[rank 1] ` on the ranks other than 0).
pub fn render(error: &anyhow::Error, tag: &str) -> String {
    let mut lines = error
        .chain()
        .map(ToString::to_string)
        .filter(|line| !line.is_empty());
    let mut out = format!("{tag}error: {}", lines.next().unwrap_or_default());
    let causes: Vec<String> = lines.collect();
    if !causes.is_empty() {
        out.push_str("\n\nCaused by:");
        for cause in causes {
            // A cause that spans lines stays under its indentation.
            out.push_str(&format!("\n  {}", cause.replace('\n', "\n  ")));
        }
    }
    if let Some(help) = error.downcast_ref::<Help>() {
        out.push_str(&format!("\nhelp: {}", help.help));
    }
    out
}

/// The error on one line (for `meta.json` and rank logs): its chain joined by ": ", then the fix.
pub fn one_line(error: &anyhow::Error) -> String {
    let chain: Vec<String> = error
        .chain()
        .map(ToString::to_string)
        .filter(|line| !line.is_empty())
        .collect();
    let mut out = chain.join(": ");
    if let Some(help) = error.downcast_ref::<Help>() {
        out.push_str(&format!(" (help: {})", help.help));
    }
    out
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn causes_and_the_fix_each_get_their_own_line() {
        let e = Err::<(), _>(fail("the loss is NaN at step 3", "lower optimizer.lr"))
            .context("training failed (run directory runs/x)")
            .unwrap_err();
        assert_eq!(
            render(&e, ""),
            "error: training failed (run directory runs/x)\n\nCaused by:\n  the loss is NaN at \
             step 3\nhelp: lower optimizer.lr"
        );
        assert_eq!(
            one_line(&e),
            "training failed (run directory runs/x): the loss is NaN at step 3 (help: lower \
             optimizer.lr)"
        );
    }

    #[test]
    fn a_fix_attached_to_any_error_adds_no_cause_line() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let e = Err::<(), _>(io)
            .help("free some space, then resume with `--set resume=auto`")
            .context("cannot write checkpoint `runs/x/checkpoints/step-00000004`")
            .unwrap_err();
        assert_eq!(
            render(&e, "[rank 1] "),
            "[rank 1] error: cannot write checkpoint `runs/x/checkpoints/step-00000004`\n\n\
             Caused by:\n  No space left on device\nhelp: free some space, then resume with \
             `--set resume=auto`"
        );
    }

    #[test]
    fn an_error_without_causes_or_fix_is_one_line() {
        assert_eq!(
            render(&anyhow::anyhow!("no such file"), ""),
            "error: no such file"
        );
    }
}
