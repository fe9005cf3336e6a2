#!/usr/bin/env node
// xmpp-edge interoperability suite: drives real third-party XMPP clients
// through the xmpp-edge binary to a real server and writes the results
// table to docs/interop.md. See README.md beside this file.
//
//   node tests/interop/run.mjs [--only SUBSTRING]... [--direct] [--websocket] [--no-docs] [--strict]
//
// Exit status: 0 when nothing failed (pending cells do not count, except
// with --strict), 1 when a scenario failed, 2 when the suite could not
// start, 130 on SIGINT.

// ---------------------------------------------------------------------------
// ONE-LINE SWITCH: set to true once xmpp-edge serves XMPP over WebSocket
// (RFC 7395) on /xmpp-websocket; the WebSocket cells then run instead of
// being reported as pending. (--websocket or INTEROP_WEBSOCKET=1 turns them
// on for one run.)
const WEBSOCKET_READY = true;
// ---------------------------------------------------------------------------

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import util from 'node:util';
import WebSocket from 'ws';

import { launchChromium } from './lib/browser.mjs';
import * as converse from './lib/clients/converse.mjs';
import * as strophe from './lib/clients/strophe.mjs';
import * as xmppjs from './lib/clients/xmppjs.mjs';
import { startEdge } from './lib/edge.mjs';
import { findEjabberd, startEjabberd } from './lib/ejabberd.mjs';
import { befriend, connectFixture } from './lib/fixtures.mjs';
import { killAllSync, runningChildren, stopAll } from './lib/procs.mjs';
import { DOMAIN, password, startProsody } from './lib/prosody.mjs';
import { startProxy } from './lib/proxy.mjs';
import { startTlsFront } from './lib/tlsfront.mjs';
import { renderMarkdown, renderResults, updateDocs } from './lib/report.mjs';
import { CONVERSE_SCENARIOS, NODE_CLIENT_SCENARIOS, SCENARIOS } from './lib/scenarios.mjs';
import { freePort, secs, withTimeout } from './lib/util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const ARTIFACTS = path.join(HERE, 'artifacts');
const DOCS_FILE = path.join(REPO, 'docs', 'interop.md');
const PROSODY_TEMPLATE = path.join(REPO, 'tests', 'prosody', 'prosody.cfg.lua');
const EJABBERD_TEMPLATE = path.join(REPO, 'tests', 'ejabberd', 'ejabberd.yml');
/** The servers behind xmpp-edge, in table order. */
const SERVERS = (process.env.INTEROP_SERVERS || 'prosody,ejabberd').split(',').map((x) => x.trim()).filter(Boolean);
const EDGE_BIN = process.env.XMPP_EDGE_BIN || path.join(REPO, 'target', 'release', 'xmpp-edge');
/** The whole run is bounded: after this the remaining scenarios are not started. */
const DEADLINE_MS = Number(process.env.INTEROP_DEADLINE_SECS || 900) * 1000;
/** ... and this much later the process tears everything down and exits regardless. */
const HARD_KILL_GRACE_MS = 150 * 1000;
const DEFAULT_SCENARIO_TIMEOUT_MS = 60000;

// ---------------------------------------------------------------------------
// Command line.

const args = process.argv.slice(2);
const opt = { only: [], direct: false, websocket: false, docs: true, strict: process.env.INTEROP_STRICT === '1' };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--only') opt.only.push(args[++i]);
  else if (a === '--direct') opt.direct = true;
  else if (a === '--websocket') opt.websocket = true;
  else if (a === '--no-docs') opt.docs = false;
  else if (a === '--strict') opt.strict = true;
  else if (a === '-h' || a === '--help') {
    process.stdout.write(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 10).join('\n') + '\n');
    process.exit(0);
  } else {
    process.stderr.write(`unknown argument ${a} (see --help)\n`);
    process.exit(2);
  }
}
const websocketEnabled = WEBSOCKET_READY || opt.websocket || process.env.INTEROP_WEBSOCKET === '1' || opt.direct;

// ---------------------------------------------------------------------------
// Output: the suite prints with say(); everything libraries print with
// console.* (Strophe's logger, for one) goes to the current scenario's log.

const t0 = Date.now();
const say = (line) => process.stdout.write(`${line}\n`);
fs.rmSync(ARTIFACTS, { recursive: true, force: true });
fs.mkdirSync(path.join(ARTIFACTS, 'logs'), { recursive: true });
const runLog = fs.createWriteStream(path.join(ARTIFACTS, 'run.log'));
let sink = (line) => runLog.write(`${line}\n`);
for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
  console[level] = (...parts) => sink(`[console.${level}] ${util.format(...parts)}`);
}
const stray = [];
process.on('uncaughtException', (err) => {
  stray.push(String(err?.stack || err));
  sink(`[uncaughtException] ${err?.stack || err}`);
});
process.on('unhandledRejection', (err) => {
  stray.push(String(err?.stack || err));
  sink(`[unhandledRejection] ${err?.stack || err}`);
});

// ---------------------------------------------------------------------------
// Cleanup on every path.

let browserPromise = null;
let cleaning = null;
let tmp = null;
let tlsFront = null;
async function cleanup() {
  cleaning ??= (async () => {
    if (browserPromise) {
      const b = await browserPromise.catch(() => null);
      await b?.close();
    }
    await tlsFront?.close().catch(() => {});
    await stopAll();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  })();
  return cleaning;
}
process.on('exit', () => killAllSync());
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    say(`\n${sig}: stopping everything the suite started...`);
    withTimeout(cleanup(), 15000, 'cleanup')
      .catch(() => killAllSync())
      .finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}
const hardKill = setTimeout(() => {
  say(`suite exceeded its deadline (${secs(DEADLINE_MS + HARD_KILL_GRACE_MS)}): killing everything`);
  killAllSync();
  process.exit(1);
}, DEADLINE_MS + HARD_KILL_GRACE_MS);
hardKill.unref();

// ---------------------------------------------------------------------------
// The matrix.

const ADAPTERS = { strophe, xmppjs };
const TRANSPORT_LABEL = {
  bosh: 'BOSH',
  websocket: 'WebSocket',
  discovery: 'XEP-0156 discovery (TLS proxy)',
  'discovery-tls': "XEP-0156 discovery (xmpp-edge's HTTPS)",
};
const isDiscovery = (transport) => transport === 'discovery' || transport === 'discovery-tls';
const CELLS = [
  { id: 'strophe-bosh', client: 'strophe', transport: 'bosh', scenarios: NODE_CLIENT_SCENARIOS },
  { id: 'strophe-websocket', client: 'strophe', transport: 'websocket', scenarios: NODE_CLIENT_SCENARIOS },
  { id: 'xmppjs-websocket', client: 'xmppjs', transport: 'websocket', scenarios: NODE_CLIENT_SCENARIOS },
  { id: 'converse-bosh', client: 'converse', transport: 'bosh', scenarios: CONVERSE_SCENARIOS },
  { id: 'converse-websocket', client: 'converse', transport: 'websocket', scenarios: CONVERSE_SCENARIOS },
  // Only the JID: Converse finds the endpoints at https://localhost/.well-known/host-meta,
  // served through a TLS-terminating proxy in front of xmpp-edge's plain listener ...
  { id: 'converse-discovery', client: 'converse', transport: 'discovery', scenarios: CONVERSE_SCENARIOS },
  // ... or by xmpp-edge's own HTTPS listener ([tls]: HTTP/2, WebSocket over extended CONNECT).
  { id: 'converse-discovery-tls', client: 'converse', transport: 'discovery-tls', scenarios: CONVERSE_SCENARIOS },
];

function pkgVersion(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(HERE, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}
const CLIENT_LABEL = {
  strophe: `Strophe.js ${pkgVersion('strophe.js')}`,
  xmppjs: `xmpp.js ${pkgVersion('@xmpp/client')}`,
  converse: `Converse.js ${pkgVersion('converse.js')}`,
};
for (const cell of CELLS) cell.label = `${CLIENT_LABEL[cell.client]} / ${TRANSPORT_LABEL[cell.transport]}`;

const selected = (kind, cell, scenario) =>
  !opt.only.length || opt.only.some((s) => `${kind}/${cell.id}/${scenario}`.includes(s));

/** Does anything answer a WebSocket upgrade with subprotocol xmpp there? */
async function probeWebSocket(url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, 'xmpp', { handshakeTimeout: 3000 });
    ws.on('open', () => {
      ws.terminate();
      resolve('accepts WebSocket upgrades');
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(`answers HTTP ${res.statusCode}`);
      ws.terminate();
    });
    ws.on('error', (e) => resolve(`error: ${e.message}`));
  });
}

// ---------------------------------------------------------------------------
// Scenario context.

async function makeContext({ cell, scenario, env }) {
  const dir = path.join(ARTIFACTS, 'logs', env.kind, cell.id);
  fs.mkdirSync(dir, { recursive: true });
  const started = Date.now();
  const logFile = path.join(dir, `${scenario}.log`);
  const logStream = fs.createWriteStream(logFile);
  const log = (line) => logStream.write(`${String(Date.now() - started).padStart(6)} ${line}\n`);
  const wireFile = path.join(dir, `${scenario}.wire.log`);
  const proxy = await startProxy({ targetPort: env.target.port, transcript: wireFile });
  // The discovery-tls cell's browser talks TLS to xmpp-edge's HTTPS
  // listener through a proxy of its own (its transcript is ciphertext);
  // the scenario's Node clients keep using the plain listener.
  const tlsProxy =
    cell.transport === 'discovery-tls'
      ? await startProxy({ targetPort: env.target.tlsPort, transcript: path.join(dir, `${scenario}.tls-wire.log`) })
      : null;
  const sessions = [];
  const pages = [];
  const notes = [];
  let counter = 0;

  const serviceUrl = (transport) =>
    transport === 'bosh'
      ? `http://127.0.0.1:${proxy.port}${env.target.boshPath}`
      : `ws://127.0.0.1:${proxy.port}${env.target.wsPath}`;

  const connectCell = async (c, user, o = {}) => {
    const adapter = ADAPTERS[c.client];
    const resource = o.resource ?? `${c.id}-${scenario}-${++counter}`;
    const service = serviceUrl(c.transport);
    log(`connect ${user}/${resource} with ${c.label} to ${service}${o.mechanism ? ` (${o.mechanism})` : ''}`);
    const session = await adapter.connect({
      service,
      domain: DOMAIN,
      username: user,
      password: o.password ?? password(user),
      resource,
      mechanism: o.mechanism ?? 'SCRAM-SHA-1',
      timeoutMs: o.timeoutMs ?? 20000,
      autoReconnect: o.autoReconnect,
      streamManagement: o.streamManagement,
      log: (line) => log(`[${c.id} ${user}/${resource}] ${line}`),
    });
    session.label = c.label;
    sessions.push(session);
    return session;
  };

  const fixtureLabel = `${CLIENT_LABEL.xmppjs} / TCP direct to the server (helper)`;
  const fixture = async (user, o = {}) => {
    const resource = o.resource ?? `fixture-${scenario}-${++counter}`;
    const s = await connectFixture(env.server, user, { resource, log: (line) => log(`[fixture ${user}/${resource}] ${line}`) });
    sessions.push(s);
    return s;
  };

  const ctx = {
    cell,
    scenario,
    notes,
    log,
    note(text) {
      notes.push(text);
      log(`NOTE ${text}`);
    },
    resource: (suffix) => `${cell.id}-${scenario}-${suffix}`,
    /** The proxy that the cell's client goes through (cut() / down() drop its network). */
    proxy: () => tlsProxy ?? proxy,
    connect: (user, o) => connectCell(cell, user, o),
    fixture,
    /** The other side of a conversation: another client and transport if one runs, else the helper. */
    peer() {
      const others = env.nodeCells.filter((c) => c.id !== cell.id);
      // Another transport first (the issue asks for two users on different
      // transports), and another client library too where there is one.
      const pick =
        others.find((c) => c.client !== cell.client && c.transport !== cell.transport) ??
        others.find((c) => c.transport !== cell.transport) ??
        others.find((c) => c.client !== cell.client);
      if (pick) return { label: pick.label, connect: (user, o) => connectCell(pick, user, o) };
      return { label: fixtureLabel, connect: (user, o) => fixture(user, o) };
    },
    /** A client under test that sends to Converse: Strophe.js over BOSH. */
    senderFor() {
      const c = CELLS.find((x) => x.id === 'strophe-bosh');
      return { label: c.label, connect: (user, o) => connectCell(c, user, o) };
    },
    /**
     * Converse in a fresh browser context, logged in as `user` through this
     * scenario's proxy. Options: password, autoReconnect, mechanism, waitLogin (see
     * lib/clients/converse.mjs).
     */
    async converse(user, o = {}) {
      const browser = await env.browser();
      if (cell.transport === 'discovery') {
        // https://localhost (the TLS front) leads to this scenario's proxy.
        env.tlsFront.setTarget(proxy.port, 'terminate');
        log(`discovery: https://localhost/ -> TLS front 127.0.0.1:${env.tlsFront.port} (TLS ends here) -> proxy 127.0.0.1:${proxy.port} -> xmpp-edge 127.0.0.1:${env.target.port}`);
      } else if (cell.transport === 'discovery-tls') {
        env.tlsFront.setTarget(tlsProxy.port, 'passthrough');
        log(`discovery: https://localhost/ -> TLS front 127.0.0.1:${env.tlsFront.port} (bytes passed on) -> proxy 127.0.0.1:${tlsProxy.port} -> xmpp-edge HTTPS 127.0.0.1:${env.target.tlsPort}`);
      }
      const page = await converse.open({
        browser: browser.browser,
        transport: cell.transport,
        service: isDiscovery(cell.transport) ? null : serviceUrl(cell.transport),
        jid: `${user}@${DOMAIN}/${cell.id}-${scenario}-${++counter}`,
        password: o.password ?? password(user),
        autoReconnect: o.autoReconnect ?? false,
        mechanism: o.mechanism ?? null,
        waitLogin: false,
        log: (line) => log(`[converse ${user}] ${line}`),
      });
      // Tracked before the login finishes, so a failed login still gets its
      // screenshot and is closed.
      pages.push(page);
      if (o.waitLogin ?? true) await page.waitLogin();
      return page;
    },
    artifact: (name) => path.join(ARTIFACTS, `${env.kind}-${cell.id}-${scenario}-${name}`),
    /** A path for notes and reports: relative to the artifacts directory. */
    rel: (p) => path.relative(ARTIFACTS, p),
    logFile,
    wireFile,
    async cleanup(failed) {
      if (failed) {
        for (const [i, p] of pages.entries()) {
          const shot = ctx.artifact(`failure-${i}.png`);
          await withTimeout(p.page.screenshot({ path: shot }), 10000, 'failure screenshot').catch(() => {});
        }
      }
      for (const p of pages) {
        const connected = await withTimeout(p.connection(), 5000, 'converse state').then((c) => c.connected, () => false);
        if (connected) await withTimeout(p.logout(), 5000, 'converse logout').catch(() => {});
      }
      // Converse does not wait for the server's <close/> after its own: let
      // the closing exchange finish before the page (and its sockets) go,
      // so the next scenario does not meet this one's session.
      if (pages.length) {
        await proxy.quiet(300, 3000);
        if (tlsProxy) await tlsProxy.quiet(300, 3000);
      }
      for (const p of pages) await p.close().catch(() => {});
      for (const s of sessions) {
        if (s.connected) await withTimeout(s.disconnect(3000), 4000, 'disconnect').catch(() => s.kill());
        else s.kill();
      }
      await proxy.quiet();
      if (isDiscovery(cell.transport)) env.tlsFront.setTarget(null);
      await proxy.close();
      if (tlsProxy) await tlsProxy.close();
      await new Promise((resolve) => logStream.end(resolve));
    },
  };
  return ctx;
}

// ---------------------------------------------------------------------------
// Main.

/** Starts one XMPP server: { server } or { missing: reason }. */
async function startServer(kind, dir, httpPort) {
  if (kind === 'prosody') {
    return { server: await withTimeout(startProsody({ dir, template: PROSODY_TEMPLATE, httpPort }), 60000, 'start Prosody') };
  }
  if (kind === 'ejabberd') {
    if (!findEjabberd()) return { missing: 'ejabberd is not installed (apt-get install -y ejabberd)' };
    return { server: await withTimeout(startEjabberd({ dir, template: EJABBERD_TEMPLATE }), 90000, 'start ejabberd') };
  }
  throw new Error(`unknown server ${kind} in INTEROP_SERVERS (known: prosody, ejabberd)`);
}

async function main() {
  tmp = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'xmpp-edge-interop-'));
  say(`xmpp-edge interop suite${opt.direct ? ' (--direct: self-check against Prosody itself, no xmpp-edge)' : ''}`);
  say(`artifacts: ${path.relative(process.cwd(), ARTIFACTS) || ARTIFACTS}`);
  const kinds = opt.direct ? ['prosody'] : SERVERS;
  // The https://localhost that Converse's XEP-0156 lookup goes to (see
  // lib/tlsfront.mjs); xmpp-edge's discovery links name it as its public URL.
  if (!opt.direct) {
    tlsFront = await withTimeout(startTlsFront({ dir: path.join(tmp, 'tls-front'), log: (l) => sink(l) }), 30000, 'start TLS front');
    say(`TLS front for https://localhost (discovery): 127.0.0.1:${tlsFront.port}`);
  }
  const rows = [];
  const results = [];
  const versions = {};
  let edgeVersion = null;
  let wsPendingReason = null;
  const enabledCell = (c) => c.transport !== 'websocket' || websocketEnabled;

  for (const kind of kinds) {
    const sdir = path.join(tmp, kind);
    const httpPort = opt.direct ? await freePort() : null;
    const started = await startServer(kind, sdir, httpPort);
    const server = started.server;
    const serverColumn = server ? (opt.direct ? `${server.label} (direct, no xmpp-edge)` : server.label) : kind;
    if (server) {
      versions[server.label.split(' ')[0]] = server.version;
      say(`server: ${server.label} on ${server.addr}`);
    } else {
      say(`server: ${kind}: ${started.missing}`);
    }
    let edge = null;
    let target = null;
    try {
      if (server) {
        await withTimeout(befriend(server, ['alice', 'bob', 'carol'], (l) => sink(`[${kind} setup] ${l}`)), 30000, 'roster setup');
        // xmpp-edge (or, with --direct, Prosody's own BOSH/WebSocket endpoints).
        if (opt.direct) {
          target = { port: httpPort, boshPath: '/http-bind', wsPath: '/xmpp-websocket' };
        } else {
          edge = await withTimeout(
            startEdge({
              bin: EDGE_BIN,
              dir: path.join(sdir, 'edge'),
              upstream: server.addr,
              rustLog: process.env.RUST_LOG || 'xmpp_edge=debug',
              publicBaseUrl: 'https://localhost',
              // Its own HTTPS listener, with the TLS front's certificate.
              tls: tlsFront ? { certFile: tlsFront.certFile, keyFile: tlsFront.keyFile } : null,
            }),
            60000,
            'start xmpp-edge',
          );
          edgeVersion = edge.version;
          target = { port: edge.port, tlsPort: edge.tlsPort, boshPath: '/http-bind', wsPath: '/xmpp-websocket' };
          say(`xmpp-edge ${edge.version}: ${edge.boshUrl} in front of ${server.label} (binary ${EDGE_BIN})`);
        }
        if (!websocketEnabled && wsPendingReason === null) {
          const probe = edge ? await probeWebSocket(edge.wsUrl) : 'n/a';
          wsPendingReason =
            probe === 'accepts WebSocket upgrades'
              ? `xmpp-edge now accepts WebSocket upgrades on ${target.wsPath}: set WEBSOCKET_READY = true in tests/interop/run.mjs.`
              : `xmpp-edge does not serve XMPP over WebSocket (RFC 7395) yet; GET ${target.wsPath} with subprotocol xmpp ${probe}. ` +
                'Enable with WEBSOCKET_READY = true in tests/interop/run.mjs once it lands.';
          say(`WebSocket cells pending: ${wsPendingReason}`);
        }
      }
      const env = {
        kind,
        server,
        target,
        nodeCells: CELLS.filter((c) => c.client !== 'converse' && enabledCell(c)),
        tlsFront,
        browser: () => {
          browserPromise ??= withTimeout(launchChromium({ dir: path.join(tmp, 'chromium'), tlsFront }), 45000, 'launch chromium');
          return browserPromise;
        },
      };
      for (const cell of CELLS) {
        const pendingReason = !server
          ? started.missing
          : !enabledCell(cell)
            ? wsPendingReason
            : isDiscovery(cell.transport) && opt.direct
              ? "--direct: Prosody's own HTTP server does not serve host-meta"
              : cell.transport === 'discovery-tls' && !target?.tlsPort
                ? 'this xmpp-edge binary has no HTTPS listener ([tls])'
                : null;
        const row = {
          key: `${kind}/${cell.id}`,
          client: CLIENT_LABEL[cell.client],
          transport: TRANSPORT_LABEL[cell.transport],
          server: serverColumn,
          group: cell.client === 'converse' ? 'browser' : 'node',
          pendingReason,
        };
        rows.push(row);
        for (const scenario of cell.scenarios) {
          if (!selected(kind, cell, scenario)) continue;
          const base = { rowKey: row.key, client: row.client, transport: row.transport, server: row.server, scenario, cell: cell.id };
          const id = `${kind}/${cell.id}/${scenario}`;
          if (pendingReason) {
            results.push({ ...base, status: 'pending', ms: 0, reason: pendingReason });
            say(`  pending  ${id}`);
          } else if (Date.now() - t0 > DEADLINE_MS) {
            results.push({ ...base, status: 'fail', ms: 0, reason: `not run: the suite passed its ${secs(DEADLINE_MS)} deadline` });
            say(`  FAIL     ${id}: not run (suite deadline)`);
          } else {
            results.push(await runScenario({ cell, scenario, env, edge, server, base }));
          }
        }
      }
    } finally {
      // Keep the server logs with the artifacts.
      if (edge) {
        fs.copyFileSync(edge.logFile, path.join(ARTIFACTS, `xmpp-edge.${kind}.log`));
        await edge.stop();
      }
      if (server) {
        fs.writeFileSync(path.join(ARTIFACTS, `${kind}.log`), server.log());
        await server.stop();
      }
    }
  }

  const browser = browserPromise ? await browserPromise.catch(() => null) : null;
  Object.assign(versions, {
    'xmpp-edge': opt.direct
      ? 'not used (--direct)'
      : `${edgeVersion ?? '?'} (binary built ${fs.statSync(EDGE_BIN).mtime.toISOString().replace(/\.\d+Z$/, 'Z')})`,
    'Strophe.js': pkgVersion('strophe.js'),
    'xmpp.js (@xmpp/client)': pkgVersion('@xmpp/client'),
    'Converse.js': pkgVersion('converse.js'),
    Chromium: browser ? browser.version : 'not started',
    'playwright-core': pkgVersion('playwright-core'),
    Node: process.versions.node,
  });
  await cleanup();
  return { rows, results, versions };
}

async function runScenario({ cell, scenario, env, edge, server, base }) {
  const def = SCENARIOS[scenario];
  const ctx = await makeContext({ cell, scenario, env });
  const edgeOffset = edge ? edge.logSize() : 0;
  const serverOffset = server.log().length;
  sink = (line) => ctx.log(line);
  const started = Date.now();
  let status = 'pass';
  let reason = null;
  try {
    await withTimeout(def.fn(ctx), def.timeoutMs ?? DEFAULT_SCENARIO_TIMEOUT_MS, `scenario ${env.kind}/${cell.id}/${scenario}`);
  } catch (e) {
    status = 'fail';
    reason = e.message;
    ctx.log(`FAIL ${e.stack || e}`);
  }
  const ms = Date.now() - started;
  await withTimeout(ctx.cleanup(status === 'fail'), 30000, 'scenario cleanup').catch((e) => ctx.log(`cleanup: ${e.message}`));
  sink = (line) => runLog.write(`${line}\n`);
  const evidence = [];
  const rel = (p) => path.relative(ARTIFACTS, p);
  if (status === 'fail') {
    const dir = path.dirname(ctx.logFile);
    if (edge) {
      const f = path.join(dir, `${scenario}.xmpp-edge.log`);
      fs.writeFileSync(f, edge.logSince(edgeOffset));
      evidence.push(rel(f));
    }
    const pf = path.join(dir, `${scenario}.${env.kind}.log`);
    fs.writeFileSync(pf, server.log().slice(serverOffset));
    evidence.push(rel(ctx.logFile), rel(ctx.wireFile), rel(pf));
    for (const f of fs.readdirSync(ARTIFACTS)) if (f.startsWith(`${env.kind}-${cell.id}-${scenario}-`)) evidence.push(f);
  }
  const line = `  ${status === 'pass' ? 'pass    ' : 'FAIL    '} ${env.kind}/${cell.id}/${scenario} (${secs(ms)})`;
  say(status === 'pass' ? line : `${line}\n           ${reason}\n           evidence: ${evidence.join(', ')}`);
  return { ...base, status, ms, reason, notes: ctx.notes, evidence };
}

let exitCode = 0;
try {
  const { rows, results, versions } = await main();
  const count = (s) => results.filter((r) => r.status === s).length;
  const counts = `${count('pass')} passed, ${count('fail')} failed, ${count('pending')} pending`;
  const meta = {
    started: new Date(t0).toISOString().replace(/\.\d+Z$/, 'Z'),
    durationMs: Date.now() - t0,
    versions,
    counts,
    command: `node tests/interop/run.mjs${args.length ? ` ${args.join(' ')}` : ''}`,
  };
  const md = renderMarkdown({ rows, results, meta });
  fs.writeFileSync(path.join(ARTIFACTS, 'interop.md'), md);
  fs.writeFileSync(path.join(ARTIFACTS, 'results.json'), JSON.stringify({ meta, rows, results }, null, 2));
  const partial = opt.only.length > 0;
  if (opt.docs && !opt.direct && !partial) {
    fs.mkdirSync(path.dirname(DOCS_FILE), { recursive: true });
    updateDocs(DOCS_FILE, renderResults({ rows, results, meta }));
    say(`results table: ${path.relative(process.cwd(), DOCS_FILE)} (the generated block)`);
  } else {
    say(`results table: ${path.relative(process.cwd(), path.join(ARTIFACTS, 'interop.md'))} (docs/interop.md is only written by a full run without --direct)`);
  }
  if (stray.length) say(`note: ${stray.length} uncaught error(s) from client libraries, logged in the scenario logs / artifacts/run.log`);
  say(`duration ${secs(Date.now() - t0)}; "skipped" below = pending cells`);
  say(`interop: ${count('pass')} passed, ${count('fail')} failed, ${count('pending')} skipped`);
  exitCode = count('fail') ? 1 : 0;
  if (opt.strict && count('pending')) {
    say(`--strict: ${count('pending')} pending scenario(s) count as failures`);
    exitCode = 1;
  }
  if (opt.strict && !results.length) {
    say('--strict: no scenario ran');
    exitCode = 1;
  }
} catch (e) {
  say(`interop suite could not run: ${e.stack || e}`);
  exitCode = 2;
} finally {
  await withTimeout(cleanup(), 20000, 'cleanup').catch(() => killAllSync());
  const left = runningChildren();
  if (left.length) say(`warning: still running after cleanup, killing: ${left.join(', ')}`);
  killAllSync();
  runLog.end();
}
process.exit(exitCode);
