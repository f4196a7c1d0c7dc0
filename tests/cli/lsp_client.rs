//! A language-server client for the editor tests: starts one of the servers editors run
//! (`tests/editors/`, installed by `npm ci --prefix tests/editors`, as `.ci/run` does) and
//! talks LSP to it over stdio, as VS Code, Neovim or Helix would.
//!
//! A reader thread answers the server's own requests (`workspace/configuration` with the
//! settings an editor sends, capability registrations) and keeps the latest diagnostics of
//! each document; the test thread sends requests and waits for their responses.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use lsp_server::{Message, Notification, Request, RequestId, Response};
use serde_json::{Value, json};

use crate::common::repo;

/// How long a server may take to answer: generous, for a loaded two-core CI machine.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// yaml-language-server: VS Code's YAML extension, Neovim's `yamlls`, Helix.
    Yaml,
    /// taplo's server (`@taplo/lsp`): VS Code's Even Better TOML; `taplo lsp stdio` elsewhere.
    Toml,
}

/// What the reader thread shares with the test thread.
#[derive(Default)]
struct Shared {
    /// uri → (how many times published since it was opened, the latest diagnostics).
    diagnostics: HashMap<String, (u64, Vec<Value>)>,
    /// Everything the server printed through `window/logMessage` at error level.
    errors: Vec<String>,
}

pub struct Server {
    language: Language,
    child: Child,
    stdin: Arc<Mutex<ChildStdin>>,
    responses: Receiver<Response>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    next_id: i32,
    /// Each opening gets a new version: yaml-language-server caches parsed documents by uri
    /// and version, so reopening a uri at the same version would be answered from the old text.
    versions: std::cell::Cell<i32>,
    stderr_file: PathBuf,
}

fn editors_dir() -> PathBuf {
    repo().join("tests/editors")
}

/// The editor settings each server asks for (`workspace/configuration`): validation,
/// completion and hover on; nothing fetched from schema stores (the machine is offline, and
/// the files name their own schema).
fn settings(language: Language) -> Value {
    match language {
        Language::Yaml => json!({ "yaml": {
            "validate": true, "hover": true, "completion": true,
            "schemaStore": { "enable": false }, "format": { "enable": false }
        }}),
        Language::Toml => json!({ "evenBetterToml": {
            "schema": { "enabled": true, "catalogs": [], "associations": {} }
        }}),
    }
}

/// `settings` narrowed to a dotted section (`yaml`, `evenBetterToml.schema`, …).
fn section(settings: &Value, section: Option<&str>) -> Value {
    let mut v = settings;
    for part in section.unwrap_or("").split('.').filter(|p| !p.is_empty()) {
        v = &v[part];
    }
    v.clone()
}

fn send(stdin: &Mutex<ChildStdin>, message: Message) {
    let mut stdin = stdin.lock().expect("stdin lock");
    message
        .write(&mut *stdin)
        .expect("the server reads its stdin");
    stdin.flush().expect("flush");
}

impl Server {
    pub fn start(language: Language) -> Server {
        let dir = editors_dir();
        let script = match language {
            Language::Yaml => "node_modules/yaml-language-server/bin/yaml-language-server",
            Language::Toml => "taplo-stdio.js",
        };
        assert!(
            dir.join(script).is_file() && dir.join("node_modules/@taplo/lsp").is_dir(),
            "the language servers are not installed: run `npm ci --prefix tests/editors` \
             (.ci/run does; Node.js 18 or newer)"
        );
        let stderr_file = std::env::temp_dir().join(format!(
            "runner-lsp-{language:?}-{}-{:?}.log",
            std::process::id(),
            std::thread::current().id()
        ));
        // `RUNNER_TEST_TAPLO=/path/to/taplo` runs the TOML tests against a native build
        // (`cargo install taplo-cli`, what Neovim and Helix start) instead of the npm one.
        let native_taplo =
            std::env::var_os("RUNNER_TEST_TAPLO").filter(|_| language == Language::Toml);
        let mut command = match &native_taplo {
            Some(taplo) => {
                let mut c = Command::new(taplo);
                c.args(["lsp", "stdio"]);
                c
            }
            None => {
                let mut c = Command::new("node");
                c.arg(dir.join(script)).arg("--stdio");
                c
            }
        };
        let mut child = command
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_file).expect("a log file"))
            .spawn()
            .expect("node starts (Node.js 18 or newer on PATH)");
        let stdin = Arc::new(Mutex::new(child.stdin.take().expect("piped")));
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let (to_test, responses): (Sender<Response>, _) = channel();
        {
            let stdin = Arc::clone(&stdin);
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || read(language, stdout, &stdin, &shared, &to_test));
        }
        let mut server = Server {
            language,
            child,
            stdin,
            responses,
            shared,
            next_id: 0,
            versions: std::cell::Cell::new(0),
            stderr_file,
        };
        let root = format!("file://{}", repo().display());
        server.request(
            "initialize",
            json!({
                "processId": std::process::id(),
                "rootUri": root,
                "workspaceFolders": [{ "uri": root, "name": "runner" }],
                "capabilities": {
                    "textDocument": {
                        "completion": { "completionItem": {
                            "snippetSupport": true,
                            "documentationFormat": ["markdown", "plaintext"]
                        }},
                        "hover": { "contentFormat": ["markdown", "plaintext"] },
                        "publishDiagnostics": {}
                    },
                    "workspace": { "configuration": true, "workspaceFolders": true }
                },
                "initializationOptions": { "configurationSection": "evenBetterToml" }
            }),
        );
        server.notify("initialized", json!({}));
        server.notify(
            "workspace/didChangeConfiguration",
            json!({ "settings": settings(language) }),
        );
        server
    }

    fn notify(&self, method: &str, params: Value) {
        send(
            &self.stdin,
            Message::Notification(Notification::new(method.into(), params)),
        );
    }

    /// Sends a request and waits for its response's `result`; a server error or crash fails
    /// the test with what the server printed.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = RequestId::from(self.next_id);
        send(
            &self.stdin,
            Message::Request(Request::new(id.clone(), method.into(), params.clone())),
        );
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.responses.recv_timeout(left) {
                Ok(r) if r.id == id => {
                    if let Some(e) = r.error {
                        panic!("{method} {params}: the server answered {e:?}");
                    }
                    return r.result.unwrap_or(Value::Null);
                }
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{method} {params}: no answer in {PATIENCE:?}\n{}",
                        self.log()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{method} {params}: the server died\n{}", self.log())
                }
            }
        }
    }

    /// What the server wrote to stderr and logged as errors.
    pub fn log(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr_file).unwrap_or_default();
        let errors = self
            .shared
            .0
            .lock()
            .map(|s| s.errors.join("\n"))
            .unwrap_or_default();
        format!("--- stderr\n{stderr}\n--- logged errors\n{errors}")
    }

    /// Opens `text` as the document at `path` (which need not exist; the schema it names
    /// must) and returns its uri.
    pub fn open(&self, path: &Path, text: &str) -> String {
        let uri = format!("file://{}", path.display());
        self.shared.0.lock().expect("lock").diagnostics.remove(&uri);
        let version = self.versions.get() + 1;
        self.versions.set(version);
        let language_id = match self.language {
            Language::Yaml => "yaml",
            Language::Toml => "toml",
        };
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": {
                "uri": uri, "languageId": language_id, "version": version, "text": text
            }}),
        );
        uri
    }

    pub fn close(&self, uri: &str) {
        self.notify(
            "textDocument/didClose",
            json!({ "textDocument": { "uri": uri } }),
        );
    }

    /// The diagnostics the server published for `uri` since it was opened, once it has
    /// finished checking it. yaml-language-server publishes once, after the schema's check;
    /// taplo publishes after each of its three stages (syntax, then the document's structure,
    /// then the schema) and stops at the first that finds something (taplo-lsp's
    /// `publish_diagnostics`), so its answer is the first non-empty list or the third.
    pub fn diagnostics(&self, uri: &str) -> Vec<Value> {
        let stages = match self.language {
            Language::Yaml => 1,
            Language::Toml => 3,
        };
        let (lock, ready) = &*self.shared;
        let deadline = Instant::now() + PATIENCE;
        let mut shared = lock.lock().expect("lock");
        loop {
            if let Some((published, list)) = shared.diagnostics.get(uri)
                && (*published >= stages || !list.is_empty())
            {
                return list.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{uri} not checked in {PATIENCE:?}: {:?}\n{}",
                shared.diagnostics.get(uri),
                self.log()
            );
            shared = ready.wait_timeout(shared, left).expect("lock").0;
        }
    }

    /// Completion items at a 0-based line and character.
    pub fn completion(&mut self, uri: &str, line: usize, character: usize) -> Vec<Value> {
        let result = self.request(
            "textDocument/completion",
            json!({ "textDocument": { "uri": uri },
                    "position": { "line": line, "character": character } }),
        );
        match result {
            Value::Array(items) => items,
            Value::Object(mut list) => match list.remove("items") {
                Some(Value::Array(items)) => items,
                _ => vec![],
            },
            _ => vec![],
        }
    }

    /// The hover text at a 0-based line and character (empty when there is none).
    pub fn hover(&mut self, uri: &str, line: usize, character: usize) -> String {
        let result = self.request(
            "textDocument/hover",
            json!({ "textDocument": { "uri": uri },
                    "position": { "line": line, "character": character } }),
        );
        match &result["contents"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o.get("value").and_then(Value::as_str).unwrap_or("").into(),
            Value::Array(parts) => parts
                .iter()
                .map(|p| p.as_str().or_else(|| p["value"].as_str()).unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `shutdown` then `exit`, as an editor closing does; then make sure it is gone.
        self.next_id += 1;
        send(
            &self.stdin,
            Message::Request(Request::new(
                RequestId::from(self.next_id),
                "shutdown".into(),
                Value::Null,
            )),
        );
        let _ = self.responses.recv_timeout(Duration::from_secs(5));
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.stderr_file);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_file);
    }
}

/// The reader thread: routes each message from the server.
fn read(
    language: Language,
    mut stdout: BufReader<std::process::ChildStdout>,
    stdin: &Mutex<ChildStdin>,
    shared: &(Mutex<Shared>, Condvar),
    responses: &Sender<Response>,
) {
    while let Ok(Some(message)) = Message::read(&mut stdout) {
        match message {
            Message::Response(r) => {
                if responses.send(r).is_err() {
                    return;
                }
            }
            Message::Request(r) => {
                let result = match r.method.as_str() {
                    "workspace/configuration" => {
                        let items = r.params["items"].as_array().cloned().unwrap_or_default();
                        Value::Array(
                            items
                                .iter()
                                .map(|i| section(&settings(language), i["section"].as_str()))
                                .collect(),
                        )
                    }
                    _ => Value::Null,
                };
                send(stdin, Message::Response(Response::new_ok(r.id, result)));
            }
            Message::Notification(n) => match n.method.as_str() {
                "textDocument/publishDiagnostics" => {
                    let uri = n.params["uri"].as_str().unwrap_or_default().to_owned();
                    let list = n.params["diagnostics"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let (lock, ready) = shared;
                    let mut shared = lock.lock().expect("lock");
                    let count = shared.diagnostics.get(&uri).map_or(1, |(n, _)| n + 1);
                    shared.diagnostics.insert(uri, (count, list));
                    ready.notify_all();
                }
                "window/logMessage" if n.params["type"] == json!(1) => {
                    let text = n.params["message"].as_str().unwrap_or_default().to_owned();
                    shared.0.lock().expect("lock").errors.push(text);
                }
                _ => {}
            },
        }
    }
}
