//! `${…}` in string values, resolved once every layer is merged (so a command-line override
//! of `a.b` changes every value that refers to it) and before the schema stage:
//!
//! - `${a.b}`: the resolved value of key `a.b` (its default when no layer set it);
//!   `${derived.global_batch_size}`: a derived value.
//! - `${env:NAME}`, `${env:NAME,default}`: the environment.
//! - Arithmetic on numbers: `${model.hidden_size * 4}`, `${train.per_device_batch_size // 2}`,
//!   `+ - * / // %`, parentheses, unary minus, with Python's meaning (`/` divides exactly,
//!   `//` and `%` floor).
//! - A value that is exactly one `${…}` takes the type of what it gives (`${train.epochs}` is
//!   an integer, `${env:STEPS}` is read as a YAML scalar); inside a longer string it is
//!   formatted. `$${` writes a literal `${`.
//!
//! The expressions are evaluated by a small parser of our own rather than an expression
//! crate: evalexpr, the maintained one, reads `//` as the start of a comment (so
//! `${a // 2}` would silently be `${a}`) and makes `/` truncating integer division, where
//! the OmegaConf and Python users these files come from expect `/` to divide exactly and
//! `//` to floor. The grammar is five operators, numbers, keys and parentheses.
//!
//! A variable whose name looks secret (`*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*API_KEY*`,
//! `*CREDENTIAL*`) is read for training, but printed and recorded configurations keep the
//! unresolved `${env:NAME}` ([`Interpolated::secrets`]).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::diagnostic::Diagnostic;

/// What interpolation did, for `--explain`, the recorded files and the run record.
#[derive(Debug, Clone, Default)]
pub struct Interpolated {
    /// Leaf key (a list is one leaf) → the text written there and the inputs it read.
    pub exprs: BTreeMap<String, Expression>,
    /// Values read from secret-looking variables: recorded unresolved.
    pub secrets: Vec<Secret>,
    /// Keys whose value refers to `derived`, left as written (the caller computes the
    /// derived values and resolves again).
    pub pending: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    pub written: String,
    pub inputs: Vec<Input>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Key(String),
    Env { var: String, set: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    /// Where the value is: the dotted path down to the string (list items by index).
    pub path: String,
    /// The text written there (what the recorded files keep).
    pub written: String,
    pub var: String,
    /// Whether the variable was set, and the sha256 of its value when it was.
    pub set: bool,
    pub sha256: Option<String>,
}

/// Whether `var` names a secret that recorded files must not hold.
pub fn is_secret(var: &str) -> bool {
    let v = var.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "API_KEY",
        "APIKEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|s| v.contains(s))
}

/// Whether a string needs resolving: a `${…}` to interpolate or a `$${` to unescape.
pub fn needs_resolving(s: &str) -> bool {
    has_template(s) || s.contains("$${")
}

/// Whether a string has anything to interpolate.
pub fn has_template(s: &str) -> bool {
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if i == 0 || !rest[..i].ends_with('$') {
            return true;
        }
        rest = &rest[i + 2..];
    }
    false
}

/// Where values come from while resolving.
pub struct Context<'a> {
    /// The environment (`${env:…}`).
    pub env: &'a [(String, String)],
    /// The default of a key no layer set, given the job.
    pub default: &'a dyn Fn(&str) -> Option<Json>,
    /// Every key there is, for did-you-mean.
    pub known: &'a [String],
    /// The derived values, once known.
    pub derived: Option<&'a Json>,
}

/// Resolves every `${…}` in `value` in place; problems come with the key they are about.
pub fn run(value: &mut Json, ctx: &Context) -> (Interpolated, Vec<(String, Diagnostic)>) {
    let mut templates = BTreeMap::new();
    collect(value, "", &mut templates);
    let mut r = Resolver {
        value: value.clone(),
        ctx,
        templates: &templates,
        done: BTreeMap::new(),
        stack: Vec::new(),
        out: Interpolated::default(),
        problems: Vec::new(),
    };
    let keys: Vec<String> = templates.keys().cloned().collect();
    for key in &keys {
        let _ = r.resolve_path(key);
    }
    let Resolver {
        done,
        mut out,
        problems,
        ..
    } = r;
    for (path, result) in done {
        if let Resolution::Value(v) = result {
            set(value, &path, v);
        }
    }
    out.pending.sort();
    out.pending.dedup();
    (out, problems)
}

/// Every string holding a template, by its dotted path (list items by index).
fn collect(v: &Json, path: &str, out: &mut BTreeMap<String, String>) {
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Json::String(s) if needs_resolving(s) => {
            out.insert(path.to_string(), s.clone());
        }
        Json::Object(map) => map.iter().for_each(|(k, c)| collect(c, &child(k), out)),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, c)| collect(c, &child(&i.to_string()), out)),
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Resolution {
    Value(Json),
    /// Waits for the derived values.
    Pending,
    /// Failed (reported once, at its own key).
    Failed,
}

struct Resolver<'a> {
    value: Json,
    ctx: &'a Context<'a>,
    templates: &'a BTreeMap<String, String>,
    done: BTreeMap<String, Resolution>,
    stack: Vec<String>,
    out: Interpolated,
    problems: Vec<(String, Diagnostic)>,
}

/// Why an expression has no value.
enum Stop {
    Pending,
    /// Already reported elsewhere (a referenced key that failed).
    Quiet,
    Error(String, String),
}

impl Resolver<'_> {
    /// The value of the template at `path` (resolving it first if needed).
    fn resolve_path(&mut self, path: &str) -> Resolution {
        if let Some(r) = self.done.get(path) {
            return r.clone();
        }
        let Some(text) = self.templates.get(path).cloned() else {
            return Resolution::Failed;
        };
        self.stack.push(path.to_string());
        let mut inputs = Vec::new();
        let result = self.template(path, &text, &mut inputs);
        self.stack.pop();
        let resolution = match result {
            Ok(v) => {
                self.out.exprs.insert(
                    leaf_key(path, &self.value),
                    Expression {
                        written: text.clone(),
                        inputs,
                    },
                );
                Resolution::Value(v)
            }
            Err(Stop::Pending) => {
                self.out.pending.push(path.to_string());
                Resolution::Pending
            }
            Err(Stop::Quiet) => Resolution::Failed,
            Err(Stop::Error(message, help)) => {
                self.problems.push((
                    leaf_key(path, &self.value),
                    Diagnostic::error("interpolation", message).help(help),
                ));
                Resolution::Failed
            }
        };
        self.done.insert(path.to_string(), resolution.clone());
        resolution
    }

    /// A whole string: literal text and `${…}` parts.
    fn template(&mut self, path: &str, text: &str, inputs: &mut Vec<Input>) -> Result<Json, Stop> {
        let parts = split_template(text).map_err(|e| {
            Stop::Error(
                format!("`{text}`: {e}"),
                "write `${key}`, `${env:NAME}`, `${a * 2}`; `$${` for a literal `${`".into(),
            )
        })?;
        if let [Part::Expr(expr)] = parts.as_slice() {
            return self.expr(path, expr, true, inputs);
        }
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Text(t) => out.push_str(&t),
                Part::Expr(e) => out.push_str(&format_value(&self.expr(path, &e, false, inputs)?)),
            }
        }
        Ok(Json::String(out))
    }

    /// One `${…}`; `whole`: the string is only this (the result keeps its type).
    fn expr(
        &mut self,
        path: &str,
        expr: &str,
        whole: bool,
        inputs: &mut Vec<Input>,
    ) -> Result<Json, Stop> {
        let expr = expr.trim();
        if let Some(rest) = expr.strip_prefix("env:") {
            let (var, default) = match rest.split_once(',') {
                Some((v, d)) => (v.trim(), Some(d)),
                None => (rest.trim(), None),
            };
            let value = self
                .ctx
                .env
                .iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone());
            inputs.push(Input::Env {
                var: var.to_string(),
                set: value.is_some(),
            });
            if is_secret(var) {
                use sha2::Digest as _;
                self.out.secrets.push(Secret {
                    path: path.to_string(),
                    written: self.templates.get(path).cloned().unwrap_or_default(),
                    var: var.to_string(),
                    set: value.is_some(),
                    sha256: value
                        .as_ref()
                        .map(|v| format!("{:x}", sha2::Sha256::digest(v.as_bytes()))),
                });
            }
            let text = match (value, default) {
                (Some(v), _) => v,
                (None, Some(d)) => d.to_string(),
                (None, None) => {
                    return Err(Stop::Error(
                        format!("the environment variable `{var}` is not set"),
                        format!("set it, or give a default: `${{env:{var},default}}`"),
                    ));
                }
            };
            // A whole value is read as a YAML scalar, as `RUNNER_…` variables are.
            return Ok(if whole {
                serde_yaml::from_str::<Json>(&text).unwrap_or(Json::String(text))
            } else {
                Json::String(text)
            });
        }
        let malformed = |e: String| {
            Stop::Error(
                format!("`${{{expr}}}`: {e}"),
                "expressions take keys, numbers, `+ - * / // %` and parentheses".into(),
            )
        };
        let tokens = tokenize(expr).map_err(malformed)?;
        if let [Token::Key(key)] = tokens.as_slice() {
            return self.reference(key, expr, inputs);
        }
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
        };
        let tree = parser
            .expression()
            .and_then(|t| match tokens.get(parser.at) {
                None => Ok(t),
                Some(extra) => Err(format!("unexpected `{extra}`")),
            })
            .map_err(malformed)?;
        Ok(self.eval(&tree, expr, inputs)?.to_json())
    }

    /// The value of `key` (a key of the configuration, or `derived.…`).
    fn reference(&mut self, key: &str, expr: &str, inputs: &mut Vec<Input>) -> Result<Json, Stop> {
        inputs.push(Input::Key(key.to_string()));
        if let Some(rest) = key.strip_prefix("derived.") {
            let Some(derived) = self.ctx.derived else {
                return Err(Stop::Pending);
            };
            return lookup(derived, rest).cloned().ok_or_else(|| {
                let mut names = Vec::new();
                super::render::leaves(derived, "", &mut |k, _| names.push(k.to_string()));
                let hint = super::suggest::closest_value(rest, &names)
                    .map(|c| format!("did you mean `derived.{c}`? "))
                    .unwrap_or_default();
                Stop::Error(
                    format!("`${{{expr}}}`: there is no derived value `{rest}`"),
                    format!("{hint}see `runner show` for the values under `derived:`"),
                )
            });
        }
        if let Some(i) = self.stack.iter().position(|k| k == key) {
            let cycle: Vec<&str> = self.stack[i..].iter().map(String::as_str).collect();
            return Err(Stop::Error(
                format!(
                    "`${{{expr}}}` refers to itself: {} → {key}",
                    cycle.join(" → ")
                ),
                "break the cycle: one of these values must be written out".into(),
            ));
        }
        if self.templates.contains_key(key) {
            let resolved = match self.resolve_path(key) {
                Resolution::Value(v) => v,
                Resolution::Pending => return Err(Stop::Pending),
                Resolution::Failed => return Err(Stop::Quiet),
            };
            // A value made from a secret is a secret too.
            let inherited: Vec<Secret> = self
                .out
                .secrets
                .iter()
                .filter(|s| s.path == key)
                .cloned()
                .collect();
            if let Some(current) = self.stack.last().cloned() {
                for secret in inherited {
                    self.out.secrets.push(Secret {
                        path: current.clone(),
                        written: self.templates.get(&current).cloned().unwrap_or_default(),
                        ..secret
                    });
                }
            }
            return Ok(resolved);
        }
        if let Some(v) = lookup(&self.value, key) {
            return Ok(v.clone());
        }
        if let Some(v) = (self.ctx.default)(key) {
            return Ok(v);
        }
        let hint = super::suggest::closest_value(key, self.ctx.known)
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        Err(Stop::Error(
            format!("`${{{expr}}}` refers to an unknown key `{key}`"),
            format!(
                "{hint}a reference names a key as it is written in the file, e.g. `${{train.per_device_batch_size}}`"
            ),
        ))
    }

    fn eval(&mut self, tree: &Tree, expr: &str, inputs: &mut Vec<Input>) -> Result<Num, Stop> {
        let type_error = |what: String| {
            Stop::Error(
                format!("`${{{expr}}}`: {what}"),
                "arithmetic works on numbers only".into(),
            )
        };
        Ok(match tree {
            Tree::Num(n) => *n,
            Tree::Key(k) => {
                let v = self.reference(k, expr, inputs)?;
                Num::of(&v)
                    .ok_or_else(|| type_error(format!("`{k}` is {}, not a number", describe(&v))))?
            }
            Tree::Neg(a) => self.eval(a, expr, inputs)?.neg(),
            Tree::Bin(op, a, b) => {
                let (x, y) = (self.eval(a, expr, inputs)?, self.eval(b, expr, inputs)?);
                x.apply(*op, y).map_err(|e| {
                    Stop::Error(format!("`${{{expr}}}`: {e}"), "check the divisor".into())
                })?
            }
        })
    }
}

/// The dotted key of the leaf `path` belongs to (a list is one leaf).
fn leaf_key(path: &str, value: &Json) -> String {
    let mut cur = value;
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('.') {
        match cur {
            Json::Object(map) => {
                out.push(seg);
                match map.get(seg) {
                    Some(next) => cur = next,
                    None => break,
                }
            }
            _ => break,
        }
    }
    out.join(".")
}

/// The value at a dotted path (list items by index).
pub fn lookup<'v>(value: &'v Json, key: &str) -> Option<&'v Json> {
    key.split('.').try_fold(value, |cur, seg| match cur {
        Json::Object(map) => map.get(seg),
        Json::Array(items) => items.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Replaces the value at a dotted path.
pub fn set(value: &mut Json, path: &str, new: Json) {
    let mut cur = value;
    for seg in path.split('.') {
        cur = match cur {
            Json::Object(map) => match map.get_mut(seg) {
                Some(next) => next,
                None => return,
            },
            Json::Array(items) => match seg.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(next) => next,
                None => return,
            },
            _ => return,
        };
    }
    *cur = new;
}

fn describe(v: &Json) -> String {
    match v {
        Json::String(s) => format!("the string {s:?}"),
        Json::Bool(b) => format!("the boolean {b}"),
        Json::Null => "null".into(),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "a section".into(),
        Json::Number(n) => format!("the number {n}"),
    }
}

/// How a value reads inside a longer string.
fn format_value(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expr(String),
}

/// Literal text and `${…}` parts; `$${` is a literal `${`.
fn split_template(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        literal.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$${") {
            literal.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or("a `${` without its closing `}`")?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            let inner = &after[..end];
            if inner.trim().is_empty() {
                return Err("an empty `${}`".into());
            }
            parts.push(Part::Expr(inner.to_string()));
            rest = &after[end + 1..];
        } else {
            literal.push('$');
            rest = &rest[1..];
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

/// A number in an expression: integers stay integers unless divided exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn of(v: &Json) -> Option<Num> {
        match v {
            Json::Number(n) => n
                .as_i64()
                .map(Num::Int)
                .or_else(|| n.as_f64().map(Num::Float)),
            _ => None,
        }
    }
    fn float(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
    fn neg(self) -> Num {
        match self {
            Num::Int(i) => i.checked_neg().map_or(Num::Float(-(i as f64)), Num::Int),
            Num::Float(f) => Num::Float(-f),
        }
    }
    fn to_json(self) -> Json {
        match self {
            Num::Int(i) => Json::from(i),
            Num::Float(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        }
    }
    fn apply(self, op: Op, other: Num) -> Result<Num, String> {
        use Num::{Float, Int};
        let zero = matches!(other, Int(0)) || matches!(other, Float(f) if f == 0.0);
        if zero && matches!(op, Op::Div | Op::FloorDiv | Op::Mod) {
            return Err("division by zero".into());
        }
        let float = |f: f64| {
            if f.is_finite() {
                Ok(Float(f))
            } else {
                Err("the result is not a finite number".to_string())
            }
        };
        match (self, other) {
            (Int(a), Int(b)) => {
                let exact = match op {
                    Op::Add => a.checked_add(b),
                    Op::Sub => a.checked_sub(b),
                    Op::Mul => a.checked_mul(b),
                    Op::Div => return float(a as f64 / b as f64),
                    Op::FloorDiv => a.checked_div_euclid(b).map(|q| {
                        // Python floors; Euclid's quotient differs for negative divisors.
                        if b < 0 && a.rem_euclid(b) != 0 {
                            q + 1
                        } else {
                            q
                        }
                    }),
                    Op::Mod => a
                        .checked_rem_euclid(b)
                        .map(|r| if b < 0 && r != 0 { r + b } else { r }),
                };
                exact
                    .map(Int)
                    .ok_or_else(|| "the result overflows a 64-bit integer".into())
            }
            (a, b) => {
                let (x, y) = (a.float(), b.float());
                float(match op {
                    Op::Add => x + y,
                    Op::Sub => x - y,
                    Op::Mul => x * y,
                    Op::Div => x / y,
                    Op::FloorDiv => (x / y).floor(),
                    Op::Mod => x - y * (x / y).floor(),
                })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(Num),
    Key(String),
    Op(Op),
    Open,
    Close,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Num(Num::Int(i)) => write!(f, "{i}"),
            Token::Num(Num::Float(x)) => write!(f, "{x}"),
            Token::Key(k) => f.write_str(k),
            Token::Op(op) => f.write_str(match op {
                Op::Add => "+",
                Op::Sub => "-",
                Op::Mul => "*",
                Op::Div => "/",
                Op::FloorDiv => "//",
                Op::Mod => "%",
            }),
            Token::Open => f.write_str("("),
            Token::Close => f.write_str(")"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '+' | '-' | '*' | '%' => {
                out.push(Token::Op(match c {
                    '+' => Op::Add,
                    '-' => Op::Sub,
                    '*' => Op::Mul,
                    _ => Op::Mod,
                }));
                i += 1;
            }
            '/' => {
                if chars.get(i + 1) == Some(&'/') {
                    out.push(Token::Op(Op::FloorDiv));
                    i += 2;
                } else {
                    out.push(Token::Op(Op::Div));
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit) =>
            {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let n = s
                    .parse::<i64>()
                    .map(Num::Int)
                    .or_else(|_| s.parse::<f64>().map(Num::Float))
                    .map_err(|_| format!("`{s}` is not a number"))?;
                out.push(Token::Num(n));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                // Keys are dotted snake_case (`train.per_device_batch_size`).
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.'))
                {
                    i += 1;
                }
                let key: String = chars[start..i].iter().collect();
                out.push(Token::Key(key.trim_end_matches('.').to_string()));
            }
            other => return Err(format!("unexpected `{other}`")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Tree {
    Num(Num),
    Key(String),
    Neg(Box<Tree>),
    Bin(Op, Box<Tree>, Box<Tree>),
}

/// Precedence climbing: `+ -` below `* / // %`, below unary minus, below parentheses.
struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
}

impl Parser<'_> {
    fn expression(&mut self) -> Result<Tree, String> {
        let mut left = self.term()?;
        while let Some(Token::Op(op @ (Op::Add | Op::Sub))) = self.tokens.get(self.at) {
            self.at += 1;
            left = Tree::Bin(*op, Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Tree, String> {
        let mut left = self.unary()?;
        while let Some(Token::Op(op @ (Op::Mul | Op::Div | Op::FloorDiv | Op::Mod))) =
            self.tokens.get(self.at)
        {
            self.at += 1;
            left = Tree::Bin(*op, Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Tree, String> {
        match self.tokens.get(self.at) {
            Some(Token::Op(Op::Sub)) => {
                self.at += 1;
                Ok(Tree::Neg(Box::new(self.unary()?)))
            }
            Some(Token::Op(Op::Add)) => {
                self.at += 1;
                self.unary()
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Tree, String> {
        let token = self
            .tokens
            .get(self.at)
            .ok_or("the expression ends too early")?;
        self.at += 1;
        match token {
            Token::Num(n) => Ok(Tree::Num(*n)),
            Token::Key(k) => Ok(Tree::Key(k.clone())),
            Token::Open => {
                let inner = self.expression()?;
                match self.tokens.get(self.at) {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    _ => Err("a `(` without its `)`".into()),
                }
            }
            other => Err(format!("unexpected `{other}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve(value: Json, env: &[(&str, &str)]) -> (Json, Interpolated, Vec<String>) {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let default = |k: &str| (k == "train.epochs").then(|| json!(3));
        let known = vec!["train.epochs".to_string(), "model.hidden_size".to_string()];
        let derived = json!({"global_batch_size": 64});
        let ctx = Context {
            env: &env,
            default: &default,
            known: &known,
            derived: Some(&derived),
        };
        let mut value = value;
        let (out, problems) = run(&mut value, &ctx);
        let problems = problems
            .into_iter()
            .map(|(k, d)| format!("{k}: {}", d.message))
            .collect();
        (value, out, problems)
    }

    #[test]
    fn references_keep_their_type_and_arithmetic_follows_python() {
        let (v, out, problems) = resolve(
            json!({
                "model": {"hidden_size": 256, "intermediate_size": "${model.hidden_size * 4}"},
                "train": {"half": "${model.hidden_size // 3}", "ratio": "${model.hidden_size / 512}",
                          "neg": "${-7 // 2}", "modulo": "${-7 % 3}", "epochs_again": "${train.epochs}",
                          "name": "bert-${model.hidden_size}d", "literal": "$${not.this}",
                          "nested": "${(model.hidden_size + 4) * 2 - 1}", "global": "${derived.global_batch_size}"}
            }),
            &[],
        );
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(v["model"]["intermediate_size"], json!(1024));
        assert_eq!(v["train"]["half"], json!(85));
        assert_eq!(v["train"]["ratio"], json!(0.5));
        assert_eq!(v["train"]["neg"], json!(-4));
        assert_eq!(v["train"]["modulo"], json!(2));
        assert_eq!(v["train"]["epochs_again"], json!(3), "a default");
        assert_eq!(v["train"]["name"], json!("bert-256d"));
        assert_eq!(v["train"]["literal"], json!("${not.this}"));
        assert_eq!(v["train"]["nested"], json!(519));
        assert_eq!(v["train"]["global"], json!(64));
        assert_eq!(
            out.exprs["model.intermediate_size"].inputs,
            [Input::Key("model.hidden_size".into())]
        );
    }

    #[test]
    fn the_environment_is_read_and_secrets_are_noted() {
        let (v, out, problems) = resolve(
            json!({"a": "${env:STEPS}", "b": "${env:MISSING,fallback}", "c": "x-${env:STEPS}",
                   "d": "${env:HF_TOKEN}"}),
            &[("STEPS", "12"), ("HF_TOKEN", "hunter2")],
        );
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(
            (v["a"].clone(), v["b"].clone(), v["c"].clone()),
            (json!(12), json!("fallback"), json!("x-12"))
        );
        assert_eq!(v["d"], json!("hunter2"), "training reads it");
        assert_eq!(out.secrets.len(), 1);
        assert_eq!(out.secrets[0].written, "${env:HF_TOKEN}");
        assert!(out.secrets[0].set && out.secrets[0].sha256.as_ref().unwrap().len() == 64);
    }

    #[test]
    fn mistakes_are_named() {
        let (_, _, problems) = resolve(
            json!({"a": "${b}", "b": "${a}", "c": "${train.epoch}", "d": "${1 // 0}",
                   "e": "${env:NOPE}", "f": "${model.name * 2}", "g": "${1 +}", "h": "${x"}),
            &[],
        );
        let all = problems.join("\n");
        assert!(
            all.contains("`${a}` refers to itself: a → b → a")
                || all.contains("`${b}` refers to itself"),
            "{all}"
        );
        assert!(
            all.contains("c: `${train.epoch}` refers to an unknown key"),
            "{all}"
        );
        assert!(all.contains("d: `${1 // 0}`: division by zero"), "{all}");
        assert!(
            all.contains("e: the environment variable `NOPE` is not set"),
            "{all}"
        );
        assert!(
            all.contains("f: `${model.name * 2}` refers to an unknown key"),
            "{all}"
        );
        assert!(
            all.contains("g: `${1 +}`: the expression ends too early"),
            "{all}"
        );
        assert!(
            all.contains("h: `${x`: a `${` without its closing `}`"),
            "{all}"
        );
    }

    #[test]
    fn derived_references_wait_for_the_derived_values() {
        let env = vec![];
        let default = |_: &str| None;
        let ctx = Context {
            env: &env,
            default: &default,
            known: &[],
            derived: None,
        };
        let mut v = json!({"train": {"x": "${derived.global_batch_size // 2}"}});
        let (out, problems) = run(&mut v, &ctx);
        assert!(problems.is_empty());
        assert_eq!(out.pending, ["train.x"]);
        assert_eq!(
            v["train"]["x"],
            json!("${derived.global_batch_size // 2}"),
            "left as written"
        );
    }
}
