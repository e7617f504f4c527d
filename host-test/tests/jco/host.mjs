// A minimal platform in Node.js for the component transpiled by jco (`jco transpile
// --instantiation async`): it lends the component `zenqms:entra-sync/http` (every request
// refused with `denied`: these calls must send nothing), `zenqms:entra-sync/log` (lines
// collected) and WASI from @bytecodealliance/preview2-shim (no environment, no arguments),
// makes three calls and prints what they returned as one JSON line after `JCO-RESULT `.
// The checks are the Rust test's (host-test/tests/jco.rs).
//
// Usage: node host.mjs <directory of the transpiled component> <its name>

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as shim from '@bytecodealliance/preview2-shim';

const [dir, name] = process.argv.slice(2);
const { instantiate } = await import(pathToFileURL(join(dir, `${name}.js`)).href);

const logs = [];
const requests = [];
const refused = (req) => {
  requests.push(`${req.method} ${req.url}`);
  return { tag: 'denied', val: 'the jco test host sends nothing' };
};

const http = {
  // An import returning `result` throws for `err`; jco lowers the error's `payload`.
  send(req) {
    const e = new Error('denied');
    e.payload = refused(req);
    throw e;
  },
  sendAll(reqs) {
    return reqs.map((req) => ({ tag: 'err', val: refused(req) }));
  },
  concurrency() {
    return 4;
  },
  // Nothing is sent, so nothing waits.
  wait(_ms) {},
};

const log = {
  write(level, message, fields) {
    logs.push({ level, message, fields: Object.fromEntries(fields) });
  },
};

// A hermetic environment: not the test process's.
const environment = {
  getEnvironment: () => [],
  getArguments: () => [],
  initialCwd: () => undefined,
};

const own = {
  'zenqms:entra-sync/http': http,
  'zenqms:entra-sync/log': log,
  'zenqms:entra-sync/types': {},
  'wasi:cli/environment': environment,
};

const camel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());

// jco asks for each interface by name, with or without its version: `wasi:<package>/<name>`
// is preview2-shim's `<package>.<camelName>`.
const imports = new Proxy(
  {},
  {
    get(_, key) {
      if (typeof key !== 'string') return undefined;
      const bare = key.split('@')[0];
      if (bare in own) return own[bare];
      const m = /^wasi:([a-z]+)\/([a-z-]+)$/.exec(bare);
      const iface = m && shim[m[1]] && shim[m[1]][camel(m[2])];
      if (iface) return iface;
      throw new Error(`the jco test host does not provide ${key}`);
    },
    has(_, key) {
      return typeof key === 'string';
    },
  },
);

const getCoreModule = async (file) => WebAssembly.compile(await readFile(join(dir, file)));

const instance = (config) => ({
  id: 'jco-test',
  webhookUrl: 'https://hooks.example/jco-test',
  config,
  state: undefined,
  budgetMs: 10000,
  inbox: [],
});

const text = (bytes) => new TextDecoder().decode(bytes);

// A call's result: `{ok}`, `{err}` (the export's `failure`) or `{trap}`.
const call = (f) => {
  try {
    return { ok: f() };
  } catch (e) {
    if (e && typeof e === 'object' && 'payload' in e) return { err: e.payload };
    return { trap: String(e && e.stack ? e.stack : e) };
  }
};

const outcome = (o) =>
  o && {
    ...o,
    response: o.response && {
      status: o.response.status,
      headers: o.response.headers,
      body: text(o.response.body),
    },
  };

const report = {};
try {
  const root = await instantiate(getCoreModule, imports);
  const exports = root;
  for (const f of ['onDeploy', 'onEvent', 'describe']) {
    if (typeof exports[f] !== 'function') throw new Error(`no export ${f}: ${Object.keys(root)}`);
  }

  report.deploy = call(() => exports.onDeploy(instance([])));
  report.deploy_logs = logs.splice(0);

  const webhook = {
    tag: 'webhook',
    val: {
      method: 'post',
      url: 'https://hooks.example/jco-test?validationToken=abc',
      headers: [['content-type', 'text/plain']],
      body: new Uint8Array(),
    },
  };
  const handshake = call(() => exports.onEvent(instance([]), webhook));
  report.webhook = handshake.ok ? { ok: outcome(handshake.ok) } : handshake;
  report.webhook_logs = logs.splice(0);

  report.describe = call(() => exports.describe());
} catch (e) {
  report.instantiate = String(e && e.stack ? e.stack : e);
}
report.requests = requests;

const json = JSON.stringify(report, (_, v) => {
  if (typeof v === 'bigint') return v.toString();
  if (ArrayBuffer.isView(v)) return Array.from(v, (x) => (typeof x === 'bigint' ? x.toString() : x));
  return v;
});
process.stdout.write(`JCO-RESULT ${json}\n`, () => process.exit(0));
