//! Configuration: types, layers, validation, derived values. Knows nothing about burn.
//!
//! The path of a configuration: [`loader::resolve`] reads the experiment file and the
//! profiles, environment and command-line overrides into [`layers::Layers`] (figment),
//! validates the merged value against the JSON Schema generated from [`types`]
//! ([`validate`]), deserializes it, and computes and cross-checks [`derived`] values.

pub mod arch;
pub mod capability;
pub mod chain;
pub mod derived;
pub mod devices;
pub mod diagnostic;
pub mod editor_schema;
pub mod edits;
pub mod from_command;
pub mod hub;
pub mod interpolate;
pub mod layers;
pub mod loader;
pub mod machine;
pub mod metric;
pub mod presets;
pub mod reference;
pub mod render;
pub mod schema;
pub mod spans;
pub mod starter;
pub mod suggest;
pub mod sweep;
pub mod types;
pub mod validate;

pub use diagnostic::{Diagnostic, Diagnostics, Origin};
pub use loader::{Request, Resolved, resolve, resolve_for_show, resolve_text};

/// Prints a resolution's warnings to standard error, each followed by a blank line.
pub fn print_warnings(resolved: &Resolved) {
    for w in &resolved.warnings {
        eprintln!("{}\n", w.render());
    }
}
