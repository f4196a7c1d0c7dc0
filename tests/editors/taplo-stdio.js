// `@taplo/lsp` (the TOML language server inside VS Code's Even Better TOML, compiled to
// WebAssembly) speaks LSP through callbacks, not a stream: this wraps it in LSP's stdio framing
// (`Content-Length` headers) so that a test, or any editor, can drive it as `node taplo-stdio.js`.
// The environment mirrors the extension's own `editors/vscode/src/server.ts`; Node 18+ has
// `fetch` built in, so nothing beyond `@taplo/lsp` is needed (and nothing is fetched: runner's
// schemas are local files).
"use strict";
const fs = require("fs");
const fsPromise = require("fs/promises");
const path = require("path");
const { TaploLsp } = require("@taplo/lsp");

const environment = {
  cwd: () => process.cwd(),
  envVar: (name) => process.env[name],
  envVars: () => Object.entries(process.env),
  findConfigFile: (from) => {
    for (const name of [".taplo.toml", "taplo.toml"]) {
      const full = path.join(from, name);
      if (fs.existsSync(full)) return full;
    }
    return undefined;
  },
  glob: () => [],
  isAbsolute: (p) => path.isAbsolute(p),
  now: () => new Date(),
  readFile: (p) => fsPromise.readFile(p),
  writeFile: (p, bytes) => fsPromise.writeFile(p, bytes),
  stderr: process.stderr,
  stdErrAtty: () => false,
  stdin: process.stdin,
  stdout: process.stdout,
  urlToFilePath: (url) => decodeURIComponent(url).slice("file://".length),
  fetch: { fetch, Headers, Request, Response },
};

function write(message) {
  const body = Buffer.from(JSON.stringify(message), "utf8");
  process.stdout.write(`Content-Length: ${body.length}\r\n\r\n`);
  process.stdout.write(body);
}

let server;
let queue = Promise.resolve();
function dispatch(message) {
  queue = queue.then(async () => {
    if (message.method === "exit") process.exit(0);
    if (!server) server = await TaploLsp.initialize(environment, { onMessage: write });
    server.send(message);
  });
}

let buffer = Buffer.alloc(0);
process.stdin.on("data", (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  for (;;) {
    const end = buffer.indexOf("\r\n\r\n");
    if (end < 0) return;
    const header = buffer.subarray(0, end).toString("ascii");
    const match = /Content-Length: *(\d+)/i.exec(header);
    if (!match) throw new Error(`no Content-Length in ${JSON.stringify(header)}`);
    const length = Number(match[1]);
    if (buffer.length < end + 4 + length) return;
    const body = buffer.subarray(end + 4, end + 4 + length).toString("utf8");
    buffer = buffer.subarray(end + 4 + length);
    dispatch(JSON.parse(body));
  }
});
process.stdin.on("end", () => process.exit(0));
// Rust panics inside the server surface as rejections: fail loudly, as the extension does.
process.on("unhandledRejection", (error) => {
  throw error;
});
