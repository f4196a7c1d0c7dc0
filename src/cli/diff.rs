//! `runner diff A B`: the keys whose resolved values differ, with where each came from.

use std::process::ExitCode;

use anyhow::Result;

use super::{DiffArgs, DiffFormat, report};
use crate::compare::{Comparison, Side, compare};
use crate::config::Request;

pub fn diff(args: &DiffArgs) -> Result<ExitCode> {
    let both: Vec<String> = args.set.iter().chain(&args.overrides).cloned().collect();
    let request = |own: &[String]| {
        Request {
            profiles: args.profiles.clone(),
            overrides: both.iter().chain(own).cloned().collect(),
            ..Request::default()
        }
        .with_process_env()
    };
    let a = match Side::load(&args.a, &request(&args.a_set)) {
        Ok(s) => s,
        Err(d) => return Ok(report(&d, &args.a)),
    };
    let b = match Side::load(&args.b, &request(&args.b_set)) {
        Ok(s) => s,
        Err(d) => return Ok(report(&d, &args.b)),
    };
    let c = compare(&a, &b);
    match args.format {
        DiffFormat::Json => {
            let mut out = serde_json::to_value(&c)?;
            out["same"] = c.same().into();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        DiffFormat::Text => print!("{}", text(&c, &a, &b)),
    }
    // diff's codes: 0 the same, 1 different (configuration trouble exits 2, above).
    Ok(ExitCode::from(u8::from(!c.same())))
}

fn text(c: &Comparison, a: &Side, b: &Side) -> String {
    let kind = |s: &Side| if s.run { " (run directory)" } else { "" };
    let mut out = format!("--- a: {}{}\n+++ b: {}{}\n", c.a, kind(a), c.b, kind(b));
    let show = |v: &Option<crate::compare::Valued>| match v {
        Some(v) => (v.value.to_string(), v.origin.clone()),
        None => ("(absent)".to_string(), String::new()),
    };
    for d in &c.differences {
        let ((va, oa), (vb, ob)) = (show(&d.a), show(&d.b));
        out.push_str(&format!("{}: {va} → {vb}\n", d.key));
        if !oa.is_empty() {
            out.push_str(&format!("    a: {oa}\n"));
        }
        if !ob.is_empty() {
            out.push_str(&format!("    b: {ob}\n"));
        }
    }
    let short = |h: &Option<String>| {
        h.as_deref()
            .map_or("-".to_string(), |h| h[..12.min(h.len())].to_string())
    };
    for f in &c.changed_files {
        out.push_str(&format!(
            "file {} changed: sha256 {} → {}\n",
            f.path,
            short(&f.a),
            short(&f.b)
        ));
    }
    out.push_str(&if c.same() {
        "the same\n".to_string()
    } else {
        format!(
            "{} key{} differ{}{}\n",
            c.differences.len(),
            if c.differences.len() == 1 { "" } else { "s" },
            if c.differences.len() == 1 { "s" } else { "" },
            if c.changed_files.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} file{} changed",
                    c.changed_files.len(),
                    if c.changed_files.len() == 1 { "" } else { "s" }
                )
            }
        )
    });
    out
}
