//! Problems found while resolving a configuration, and where they come from.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

/// Where a value (or a problem) comes from: one of the five layers, or computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A built-in default of the config types.
    Default,
    /// Computed from other values (`derived:` in `runner show`).
    Derived,
    /// A YAML/TOML file: the experiment or a profile. `pos` is 1-based line and column.
    File {
        role: FileRole,
        path: PathBuf,
        pos: Option<(usize, usize)>,
    },
    /// A `RUNNER_…` environment variable.
    Env { var: String },
    /// A command-line flag (`--set k=v`, `k=v`, `--seed`, `--output-dir`, `--profile`).
    Cli { flag: String },
    /// The values of a sweep's cell (`runner sweep`), named as its run directory is.
    Sweep { cell: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum FileRole {
    Experiment,
    /// A file the experiment builds on (`extends`), reached through `via`: the experiment
    /// first, then each file down to the one that names this base.
    Base {
        via: Vec<PathBuf>,
    },
    Profile(String),
}

impl Origin {
    /// Short form used beside each leaf in `show --explain`.
    pub fn short(&self) -> String {
        match self {
            Origin::Default => "default".into(),
            Origin::Derived => "derived".into(),
            Origin::File { role, path, pos } => {
                let loc = match pos {
                    Some((l, c)) => format!("{}:{l}:{c}", path.display()),
                    None => path.display().to_string(),
                };
                match role {
                    FileRole::Experiment => loc,
                    FileRole::Base { via } => format!(
                        "{loc}, via {}",
                        via.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" → ")
                    ),
                    FileRole::Profile(name) => format!("profile {name} ({loc})"),
                }
            }
            Origin::Env { var } => format!("env {var}"),
            Origin::Cli { flag } => format!("command line {flag}"),
            Origin::Sweep { cell } => format!("sweep cell {cell}"),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::Derived => f.write_str("derived value"),
            Origin::File { .. } => f.write_str(&self.short()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Cli { flag } => write!(f, "command line: {flag}"),
            Origin::Sweep { cell } => write!(f, "sweep cell `{cell}`"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem: which key, set where, what was expected, how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Short class of the problem, e.g. `unknown-key`, `type`, `batch-arithmetic`.
    pub code: &'static str,
    /// Dotted key path (`train.grad_accum_steps`), when the problem is about one key.
    pub key: Option<String>,
    pub origin: Option<Origin>,
    pub message: String,
    pub help: Option<String>,
    /// The offending source line, for file origins.
    pub snippet: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            key: None,
            origin: None,
            message: message.into(),
            help: None,
            snippet: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn origin(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders in the style of rustc/ruff: headline, location, source line, help.
    /// (A hand-written renderer: one location and one line of context is all we show, which
    /// does not justify annotate-snippets' API churn.)
    pub fn render(&self) -> String {
        let mut out = String::new();
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = write!(out, "{level}[{}]: {}", self.code, self.message);
        if let Some(origin) = &self.origin {
            let key = self
                .key
                .as_deref()
                .map(|k| format!(" (key `{k}`)"))
                .unwrap_or_default();
            let _ = write!(out, "\n  --> {origin}{key}");
            if let (
                Some(line),
                Origin::File {
                    pos: Some((l, c)), ..
                },
            ) = (&self.snippet, origin)
            {
                let num = l.to_string();
                let pad = " ".repeat(num.len());
                let caret_pad = " ".repeat(c.saturating_sub(1));
                let _ = write!(out, "\n {pad} |\n {num} | {line}\n {pad} | {caret_pad}^");
            }
        } else if let Some(key) = &self.key {
            let _ = write!(out, "\n  --> key `{key}`");
        }
        if let Some(help) = &self.help {
            let _ = write!(out, "\n   = help: {help}");
        }
        out
    }
}

/// All problems of one resolution, errors and warnings together.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn extend(&mut self, it: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(it);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(Diagnostic::render)
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}
