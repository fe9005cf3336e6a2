// Headless-Chromium check of xmpp-edge's status page (the admin listener's `/`).
//
// Starts a private Prosody (tests/prosody/prosody.cfg.lua, filled in the way
// tests/common/prosody.rs does) and the release xmpp-edge binary on free
// loopback ports, opens real sessions through xmpp-edge (two BOSH sessions
// over plain HTTP POSTs, one WebSocket session, all logged in with SASL
// PLAIN and bound), then drives Debian's Chromium (playwright-core over CDP,
// never a downloaded browser) against the page and checks what it shows.
//
//   node tests/browser/status-page.mjs        (after `npm ci` in tests/browser)
//
// Environment: XMPP_EDGE_BIN (default target/release/xmpp-edge), CHROMIUM_BIN
// (default /usr/bin/chromium), STATUS_PAGE_UPDATE_DOCS=1 to refresh
// docs/status-page.png even when it exists, KEEP_TMP=1 to keep the temp dir.
// Exit status: 0 all checks passed, 1 a check failed or the run could not
// start, 130/143 interrupted. Everything started here runs on 127.0.0.1, in
// its own process group, and is killed by PID at the end, on failure, on
// SIGINT/SIGTERM, and by a shell watchdog if this process is killed outright.

import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const ARTIFACTS = path.join(HERE, 'artifacts');
const DOCS_SHOT = path.join(ROOT, 'docs/status-page.png');
const BIN = path.resolve(process.env.XMPP_EDGE_BIN || path.join(ROOT, 'target/release/xmpp-edge'));
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const TEMPLATE = path.join(ROOT, 'tests/prosody/prosody.cfg.lua');
const RUN_LIMIT_MS = 110_000;
const DOMAIN = 'localhost';
const USERS = { alice: 'alice-secret', bob: 'bob-secret', carol: 'carol-secret' };
const run = promisify(execFile);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const started = Date.now();

function log(msg) {
  const line = `[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${msg}`;
  console.log(line);
  fs.appendFileSync(path.join(ARTIFACTS, 'run.log'), line + '\n');
}

// ---------------------------------------------------------------- processes

const children = new Set();

function startProcess(name, cmd, args, { logFile, env, onStderr } = {}) {
  const out = fs.openSync(logFile, 'a');
  const child = spawn(cmd, args, {
    env: env ?? process.env,
    detached: true, // own process group: killing it takes helpers too (chromium)
    stdio: ['ignore', out, onStderr ? 'pipe' : out],
  });
  fs.closeSync(out);
  const p = { name, pid: child.pid, exitCode: null };
  p.exited = new Promise((resolve) => {
    child.once('exit', (code, sig) => resolve((p.exitCode = code ?? sig)));
    child.once('error', (e) => resolve((p.exitCode = String(e))));
  });
  if (onStderr) {
    const sink = fs.createWriteStream(logFile, { flags: 'a' });
    child.stderr.on('data', (c) => {
      sink.write(c);
      onStderr(c.toString());
    });
    child.once('exit', () => sink.end());
  }
  if (!child.pid) throw new Error(`cannot start ${name} (${cmd})`);
  children.add(p);
  // If this Node process dies without cleaning up, the child's group goes too.
  spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${child.pid} 2>/dev/null; do sleep 1; done; kill -9 -${child.pid} 2>/dev/null`], {
    detached: true,
    stdio: 'ignore',
  }).unref();
  return p;
}

function signalGroup(pid, sig) {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

async function stopProcess(p, graceMs = 2000) {
  if (p.exitCode === null) {
    signalGroup(p.pid, 'SIGTERM');
    if (!(await Promise.race([p.exited.then(() => true), sleep(graceMs).then(() => false)]))) {
      signalGroup(p.pid, 'SIGKILL');
      await Promise.race([p.exited, sleep(2000)]);
    }
  }
  signalGroup(p.pid, 'SIGKILL'); // leftovers in the group
  children.delete(p);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitListening(port, ms, what, proc) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (proc?.exitCode != null) throw new Error(`${what} exited (${proc.exitCode}) before listening on 127.0.0.1:${port}`);
    if (Date.now() > deadline) throw new Error(`${what} is not listening on 127.0.0.1:${port} after ${ms} ms`);
    await sleep(50);
  }
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    Promise.resolve(promise),
    new Promise((_, reject) => (t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms))),
  ]).finally(() => clearTimeout(t));
}

/** Polls `fn` until it returns a truthy value; returns it, or throws `what`. */
async function until(fn, ms, what, every = 100) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what} (within ${ms} ms; last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(every);
  }
}

// ------------------------------------------------------------------ servers

async function startProsody(dir) {
  const prosody = ['/usr/bin/prosody', '/usr/local/bin/prosody', '/usr/sbin/prosody'].find((p) => fs.existsSync(p));
  if (!prosody) throw new Error('Prosody is not installed: apt-get install -y prosody');
  const port = await freePort();
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'certs'), { recursive: true });
  // The values tests/common/prosody.rs uses for a plain loopback server.
  const values = { DIR: dir, C2S_PORT: String(port), DIRECT_TLS_PORT: '', REQUIRE_ENCRYPTION: 'false', VHOST_OPTIONS: '', LOGLEVEL: 'info' };
  const config = fs
    .readFileSync(TEMPLATE, 'utf8')
    .split('\n')
    .map((line) =>
      line.trimStart().startsWith('--')
        ? line
        : line.replace(/@([A-Z][A-Z0-9_]*)@/g, (all, name) => {
            if (!(name in values)) throw new Error(`${TEMPLATE}: unknown placeholder ${all}; see tests/common/prosody.rs`);
            return values[name];
          }),
    )
    .join('\n');
  const configPath = path.join(dir, 'prosody.cfg.lua');
  fs.writeFileSync(configPath, config);
  for (const [user, password] of Object.entries(USERS)) {
    await withTimeout(run('prosodyctl', ['--config', configPath, 'register', user, DOMAIN, password]), 20000, `prosodyctl register ${user}`);
  }
  const proc = startProcess('prosody', prosody, ['-F', '--config', configPath], { logFile: path.join(dir, 'prosody.stdout.log') });
  await waitListening(port, 15000, 'prosody', proc);
  return { proc, addr: `127.0.0.1:${port}`, logFile: path.join(dir, 'prosody.log') };
}

async function startEdge(dir, upstream, token) {
  if (!fs.existsSync(BIN)) throw new Error(`xmpp-edge binary not found at ${BIN}: cargo build --release, or set XMPP_EDGE_BIN`);
  const [http, metrics, admin] = [await freePort(), await freePort(), await freePort()];
  const configPath = path.join(dir, 'xmpp-edge.toml');
  fs.writeFileSync(
    configPath,
    [
      '# generated by tests/browser/status-page.mjs',
      '[server]',
      `listen = "127.0.0.1:${http}"`,
      '[metrics]',
      `listen = "127.0.0.1:${metrics}"`,
      '[admin]',
      `listen = "127.0.0.1:${admin}"`,
      `token = "${token}"`,
      '[log]',
      'level = "info"',
      `[hosts.${DOMAIN}]`,
      `upstreams = ["${upstream}"]`,
      '',
    ].join('\n'),
  );
  try {
    await withTimeout(run(BIN, ['check-config', configPath]), 20000, 'xmpp-edge check-config');
  } catch (e) {
    throw new Error(`xmpp-edge check-config failed: ${e.stderr || e.message}`);
  }
  const logFile = path.join(dir, 'xmpp-edge.log');
  const proc = startProcess('xmpp-edge', BIN, ['run', '--config', configPath], {
    logFile,
    env: { ...process.env, RUST_LOG: 'xmpp_edge=info', NO_COLOR: '1' },
  });
  await waitListening(http, 15000, 'xmpp-edge', proc);
  await waitListening(admin, 15000, 'xmpp-edge admin listener', proc);
  return { proc, logFile, http, admin, adminUrl: `http://127.0.0.1:${admin}` };
}

async function startChromium(dir) {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM_BIN)`);
  const profile = path.join(dir, 'chromium-profile');
  fs.rmSync(profile, { recursive: true, force: true });
  fs.mkdirSync(profile, { recursive: true });
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-default-browser-check',
    '--disable-dev-shm-usage',
    // No name lookup leaves the machine: everything but loopback is "not found".
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    `--user-data-dir=${profile}`,
    '--remote-debugging-port=0',
    'about:blank',
  ];
  let stderr = '';
  let found;
  const endpoint = new Promise((resolve) => (found = resolve));
  const proc = startProcess('chromium', CHROMIUM, args, {
    logFile: path.join(dir, 'chromium.log'),
    onStderr: (chunk) => {
      stderr += chunk;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
      if (m) found(m[1]);
    },
  });
  const url = await withTimeout(
    Promise.race([endpoint, proc.exited.then((c) => Promise.reject(new Error(`chromium exited (${c}):\n${stderr}`)))]),
    30000,
    'chromium DevTools endpoint',
  );
  const browser = await withTimeout(chromium.connectOverCDP(url), 30000, 'connectOverCDP');
  return { proc, browser };
}

// ------------------------------------------------------------------ clients

const xmlEscape = (s) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]);
const xmlUnescape = (s) =>
  s.replace(/&(amp|lt|gt|quot|apos|#x[0-9a-f]+|#[0-9]+);/gi, (all, e) =>
    ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" })[e] ?? String.fromCodePoint(e[1].toLowerCase() === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)),
  );
const plain = (user) => Buffer.from(`\0${user}\0${USERS[user]}`).toString('base64');
const attr = (tag, name) => {
  const m = new RegExp(`\\s${name}=(?:'([^']*)'|"([^"]*)")`).exec(tag);
  return m ? xmlUnescape(m[1] ?? m[2]) : null;
};

/** A BOSH client over plain HTTP POSTs (Node's fetch), Strophe-like: at most two requests in flight. */
class BoshClient {
  constructor(url, user, resource) {
    Object.assign(this, { url, user, resource, rid: 1_000_000 + Math.floor(Math.random() * 1e6), sid: null, jid: null });
    this.received = ''; // every child of every <body/>, concatenated
    this.terminated = null; // the condition of a terminating <body/>
    this.abort = new AbortController();
    Object.assign(this, { live: false, inflight: 0, pending: '' });
  }

  async post(inner, attrs = '') {
    const rid = this.rid++;
    const sid = this.sid ? ` sid='${this.sid}'` : '';
    const body = `<body xmlns='http://jabber.org/protocol/httpbind' rid='${rid}'${sid}${attrs}>${inner}</body>`;
    const res = await fetch(this.url, { method: 'POST', body, headers: { 'Content-Type': 'text/xml; charset=utf-8' }, signal: this.abort.signal });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${this.user}: BOSH HTTP ${res.status}: ${text}`);
    const open = /<body\b[^>]*>/.exec(text)?.[0] ?? '';
    if (!this.sid) this.sid = attr(open, 'sid');
    if (attr(open, 'type') === 'terminate') this.terminated = attr(open, 'condition') ?? '(none)';
    const inner_ = text.replace(/^[\s\S]*?<body\b[^>]*?(\/>|>)/, '').replace(/<\/body>\s*$/, '');
    this.received += inner_;
    return text;
  }

  /** Sends empty polls until `re` matches what arrived since `from`. */
  async expect(re, from, what) {
    const deadline = Date.now() + 15000;
    for (;;) {
      const m = re.exec(this.received.slice(from));
      if (m) return m;
      if (this.terminated) throw new Error(`${this.user}: session terminated (${this.terminated}) while waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`${this.user}: no ${what} within 15 s; got: ${this.received.slice(from)}`);
      await this.post('');
    }
  }

  async login() {
    let mark = this.received.length;
    await this.post('', ` to='${DOMAIN}' xml:lang='en' wait='10' hold='1' content='text/xml; charset=utf-8' ver='1.6' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'`);
    if (!this.sid) throw new Error(`${this.user}: no sid in the session creation response`);
    await this.expect(/<mechanism>PLAIN<\/mechanism>/, mark, 'PLAIN in the stream features');
    mark = this.received.length;
    await this.post(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain(this.user)}</auth>`);
    await this.expect(/<success\b/, mark, 'SASL success');
    mark = this.received.length;
    await this.post('', ` to='${DOMAIN}' xml:lang='en' xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh'`);
    await this.expect(/<bind\b/, mark, 'bind feature');
    mark = this.received.length;
    await this.post(`<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${xmlEscape(this.resource)}</resource></bind></iq>`);
    this.jid = xmlUnescape((await this.expect(/<jid>([^<]+)<\/jid>/, mark, 'bound JID'))[1]);
    await this.post(`<presence xmlns='jabber:client'/>`);
    this.live = true;
    this.pump();
  }

  // Like Strophe.js: an empty poll only when nothing is in flight, data as
  // soon as fewer than two requests are (hold=1 allows two). Anything more
  // is overactivity (XEP-0124 §11) and xmpp-edge ends the session for it.
  pump() {
    if (!this.live || this.terminated || this.abort.signal.aborted) return;
    if (this.pending && this.inflight < 2) {
      const batch = this.pending;
      this.pending = '';
      this.fire(batch);
    } else if (!this.pending && this.inflight === 0) {
      this.fire('');
    }
  }

  fire(xml) {
    this.inflight++;
    this.post(xml)
      .catch((e) => {
        if (!this.abort.signal.aborted && !this.terminated) this.error = e;
      })
      .finally(() => {
        this.inflight--;
        if (!this.error) this.pump();
      });
  }

  send(xml) {
    this.pending += xml;
    this.pump();
  }

  close() {
    this.abort.abort();
  }
}

/** An RFC 7395 client on the `ws` package. */
class WsClient {
  constructor(url, user, resource) {
    Object.assign(this, { url, user, resource, jid: null, received: '', closed: null });
  }

  async expect(re, from, what) {
    return until(() => re.exec(this.received.slice(from)), 15000, `${this.user}: ${what}`, 20);
  }

  async login() {
    this.ws = new WebSocket(this.url, 'xmpp');
    this.ws.on('message', (data) => (this.received += data.toString()));
    this.ws.on('close', (code) => (this.closed = code));
    this.ws.on('error', (e) => (this.error = e));
    await withTimeout(new Promise((resolve, reject) => (this.ws.once('open', resolve), this.ws.once('error', reject))), 10000, 'WebSocket open');
    const open = `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='${DOMAIN}' version='1.0'/>`;
    let mark = this.received.length;
    this.ws.send(open);
    this.streamId = attr((await this.expect(/<open\b[^>]*>/, mark, '<open/>'))[0], 'id');
    await this.expect(/<mechanism>PLAIN<\/mechanism>/, mark, 'PLAIN in the stream features');
    mark = this.received.length;
    this.ws.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain(this.user)}</auth>`);
    await this.expect(/<success\b/, mark, 'SASL success');
    mark = this.received.length;
    this.ws.send(open);
    // The restarted stream's id: the one the session keeps from now on.
    this.streamId = attr((await this.expect(/<open\b[^>]*>/, mark, 'the restarted <open/>'))[0], 'id');
    await this.expect(/<bind\b/, mark, 'bind feature');
    mark = this.received.length;
    this.ws.send(`<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${xmlEscape(this.resource)}</resource></bind></iq>`);
    this.jid = xmlUnescape((await this.expect(/<jid>([^<]+)<\/jid>/, mark, 'bound JID'))[1]);
    this.ws.send(`<presence xmlns='jabber:client'/>`);
  }

  close() {
    try {
      this.ws?.terminate();
    } catch {
      // gone
    }
  }
}

// -------------------------------------------------------------------- checks

let passed = 0;
const failures = [];
function ok(what) {
  passed++;
  log(`ok   ${what}`);
}
function fail(what, detail = '') {
  if (state.stopping && state.stopping !== 'timeout') return; // fallout of the interruption
  failures.push(what);
  log(`FAIL ${what}${detail ? `\n     ${String(detail).replace(/\n/g, '\n     ')}` : ''}`);
}
/** Runs one check; a failure is recorded and the run goes on unless `fatal`. */
async function check(what, fn, { fatal = false } = {}) {
  try {
    const detail = await fn();
    ok(detail ? `${what} (${detail})` : what);
    return true;
  } catch (e) {
    fail(what, e.message);
    if (fatal) throw new Error(`cannot go on after: ${what}`);
    return false;
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// --------------------------------------------------------------------- main

const state = { tmp: null, prosody: null, edge: null, chrome: null, clients: [], traffic: null, cleaning: null, stopping: null };

async function adminApi(pathname, token, method = 'GET') {
  const res = await fetch(state.edge.adminUrl + pathname, { method, headers: token ? { Authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function main() {
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  state.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xmpp-edge-status-page-'));
  log(`binary ${BIN}; temp dir ${state.tmp}`);
  const token = randomBytes(18).toString('base64url');

  state.prosody = await startProsody(path.join(state.tmp, 'prosody'));
  log(`prosody on ${state.prosody.addr} (pid ${state.prosody.proc.pid})`);
  state.edge = await startEdge(state.tmp, state.prosody.addr, token);
  log(`xmpp-edge on 127.0.0.1:${state.edge.http}, admin ${state.edge.adminUrl} (pid ${state.edge.proc.pid})`);

  await check('the admin API refuses calls without the token (401)', async () => {
    const r = await adminApi('/admin/sessions', null);
    assert(r.status === 401, `got ${r.status}`);
  });

  // Real sessions through xmpp-edge.
  const boshUrl = `http://127.0.0.1:${state.edge.http}/http-bind`;
  const alice = new BoshClient(boshUrl, 'alice', 'status-page-bosh');
  const bob = new BoshClient(boshUrl, 'bob', 'status-page-bosh');
  const carol = new WsClient(`ws://127.0.0.1:${state.edge.http}/xmpp-websocket`, 'carol', 'status-page-ws');
  state.clients.push(alice, bob, carol);
  await check('two BOSH and one WebSocket session log in through xmpp-edge', async () => {
    await withTimeout(Promise.all([alice.login(), bob.login(), carol.login()]), 30000, 'logins');
    return [alice.jid, bob.jid, carol.jid].join(', ');
  }, { fatal: true });

  // Some traffic, so that the stanza-rate lines move.
  let tick = 0;
  state.traffic = setInterval(() => {
    tick++;
    const n = 1 + ((tick * 7) % 5);
    const to = (j) => xmlEscape(j.split('/')[0]);
    let xml = '';
    for (let i = 0; i < n; i++) {
      xml += `<message xmlns='jabber:client' type='chat' to='${to(i % 2 ? bob.jid : carol.jid)}' id='m${tick}-${i}'><body>tick ${tick}.${i}</body></message>`;
    }
    if (!alice.terminated) alice.send(xml);
    if (tick % 3 === 0 && carol.ws?.readyState === WebSocket.OPEN) carol.ws.send(`<message xmlns='jabber:client' type='chat' to='${to(alice.jid)}'><body>hi ${tick}</body></message>`);
  }, 600);

  // The API's view: sids and JIDs of what the test opened.
  let expected = [];
  await check('the admin API lists exactly the three sessions with their JIDs', async () => {
    const list = await until(async () => {
      const r = await adminApi('/admin/sessions', token);
      return r.status === 200 && r.body.length === 3 && r.body.every((s) => s.jid) ? r.body : null;
    }, 10000, 'three sessions with bound JIDs');
    const ws = list.find((s) => s.transport === 'websocket');
    assert(ws && ws.jid === carol.jid, `no WebSocket session for ${carol.jid}: ${JSON.stringify(list)}`);
    carol.sid = ws.sid;
    const byJid = Object.fromEntries(list.map((s) => [s.jid, s]));
    for (const c of [alice, bob]) assert(byJid[c.jid]?.sid === c.sid && byJid[c.jid].transport === 'bosh', `${c.jid}: API has ${JSON.stringify(byJid[c.jid])}, client sid ${c.sid}`);
    expected = [alice, bob, carol].map((c) => ({ sid: c.sid, jid: c.jid })).sort((a, b) => a.sid.localeCompare(b.sid));
    assert(carol.streamId && ws.stream_id === carol.streamId, `the API's stream id ${ws.stream_id} is not the one carol saw, ${carol.streamId}`);
  }, { fatal: true });

  state.chrome = await startChromium(state.tmp);
  log(`chromium ${state.chrome.browser.version()} (pid ${state.chrome.proc.pid})`);
  const context = await state.chrome.browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const consoleErrors = [];
  const foreign = [];
  page.on('console', (m) => ['error', 'warning'].includes(m.type()) && consoleErrors.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
  page.on('request', (r) => !r.url().startsWith(state.edge.adminUrl + '/') && !r.url().startsWith('data:') && foreign.push(r.url()));

  const rows = () => page.$$eval('#sessions tbody tr[data-sid]', (trs) => trs.map((tr) => ({ sid: tr.dataset.sid, cells: [...tr.cells].map((c) => c.textContent) })));
  const refreshes = () => page.evaluate(() => Number(document.body.dataset.refreshes || 0));
  const waitRefresh = async (n = 1) => {
    const start = await refreshes();
    await page.waitForFunction((want) => Number(document.body.dataset.refreshes || 0) >= want, start + n, { timeout: 4000 * n + 2000 });
  };
  const sidsShown = async () => (await rows()).map((r) => r.sid);

  await check('the page loads with the token from #token=, its CSP, and without it in the URL', async () => {
    const res = await page.goto(`${state.edge.adminUrl}/#token=${encodeURIComponent(token)}`);
    assert(res.status() === 200, `HTTP ${res.status()}`);
    const csp = res.headers()['content-security-policy'] ?? '';
    assert(csp.includes("default-src 'none'") && csp.includes("connect-src 'self'"), `CSP: ${csp}`);
    await page.waitForFunction(() => Number(document.body.dataset.refreshes || 0) >= 1);
    assert(!page.url().includes('token'), `URL still has the token: ${page.url()}`);
    assert(await page.locator('#auth').isHidden(), 'token form shown although the token was given');
    const size = (await res.body()).length;
    assert(size < 25000, `page is ${size} bytes`);
    return `${size} bytes`;
  });

  await check('the session table shows exactly the sessions the test opened, with their JIDs', async () => {
    const shown = await until(async () => {
      const r = await rows();
      const got = r.map((x) => ({ sid: x.sid, jid: x.cells[3] })).sort((a, b) => a.sid.localeCompare(b.sid));
      return same(got, expected) ? r : null;
    }, 8000, `table = ${JSON.stringify(expected)}; shows ${JSON.stringify(await rows().catch(() => []))}`);
    for (const r of shown) assert(r.cells[0] === r.sid, `sid cell ${r.cells[0]}`);
    const transports = Object.fromEntries(shown.map((r) => [r.sid, r.cells[1]]));
    assert(transports[carol.sid] === 'websocket' && transports[alice.sid] === 'bosh', JSON.stringify(transports));
  });

  await check('totals and state: 2 BOSH, 1 WebSocket, ready', async () => {
    const t = await page.evaluate(() => ['c-bosh', 'c-ws', 'state'].map((id) => document.getElementById(id).textContent));
    assert(same(t, ['2', '1', 'ready']), JSON.stringify(t));
  });

  await check('the upstream is listed as healthy', async () => {
    const row = page.locator(`#upstreams tr[data-address="${state.prosody.addr}"]`);
    const cells = await row.locator('td').allTextContents();
    assert(cells[0] === DOMAIN && cells[2] === 'healthy', JSON.stringify(cells));
    assert(Number(cells[3]) === 3, `sessions on it: ${cells[3]}`);
    assert((await row.locator('td.up').count()) === 1, 'health cell not marked up');
  });

  await check('filtering narrows the table', async () => {
    const cases = [
      ['bob@', [bob.sid]],
      ['WEBSOCKET', [carol.sid]],
      [carol.streamId, [carol.sid]],
      [alice.sid.slice(0, 10), [alice.sid]],
      ['bosh status-page', [alice.sid, bob.sid].sort()],
      ['127.0.0.1', expected.map((e) => e.sid)],
      [state.prosody.addr, expected.map((e) => e.sid)],
      ['no-such-session', []],
    ];
    for (const [text, want] of cases) {
      await page.fill('#filter', text);
      const got = (await sidsShown()).sort();
      assert(same(got, want), `filter "${text}": shows ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
    }
    assert((await page.textContent('#sessions tbody')).includes('No session matches'), 'no empty-filter message');
    await page.fill('#filter', 'bob');
    await waitRefresh();
    assert(same(await sidsShown(), [bob.sid]), 'the filter does not survive a refresh');
    await page.fill('#filter', '');
    assert((await sidsShown()).length === 3, 'clearing the filter does not bring all rows back');
  });

  await check('sorting by a header reorders, both ways, and survives refreshes', async () => {
    const jids = async () => (await rows()).map((r) => r.cells[3]);
    const asc = [alice.jid, bob.jid, carol.jid];
    await page.click('#sessions th[data-key="jid"] button');
    assert(same(await jids(), asc), `ascending: ${await jids()}`);
    assert((await page.getAttribute('#sessions th[data-key="jid"]', 'aria-sort')) === 'ascending', 'aria-sort');
    await page.click('#sessions th[data-key="jid"] button');
    assert(same(await jids(), [...asc].reverse()), `descending: ${await jids()}`);
    await waitRefresh();
    assert(same(await jids(), [...asc].reverse()), `after a refresh: ${await jids()}`);
    await page.click('#sessions th[data-key="transport"] button');
    const t = (await rows()).map((r) => r.cells[1]);
    assert(same(t, ['bosh', 'bosh', 'websocket']), `by transport: ${t}`);
    await page.click('#sessions th[data-key="age_secs"] button'); // oldest first
  });

  await check('the chart has data after a few refreshes (sessions and stanza rates)', async () => {
    await page.waitForFunction(() => Number(document.getElementById('chart').dataset.samples) >= 6, null, { timeout: 20000 });
    const pts = await page.$$eval('#chart path', (ps) => Object.fromEntries(ps.map((p) => [p.getAttribute('class'), Number(p.dataset.points)])));
    assert(pts['s-bosh'] >= 6 && pts['s-ws'] >= 6 && pts['s-sin'] >= 5 && pts['s-sout'] >= 5, JSON.stringify(pts));
    const rate = await page.textContent('#c-sout');
    assert(Number(rate) > 0, `stanzas/s to servers shows ${rate} while alice sends every 0.6 s`);
    return `points ${JSON.stringify(pts)}, ${rate} stanzas/s to servers`;
  });

  // Let the chart fill a little more for the screenshot.
  await page.waitForFunction(() => Number(document.getElementById('chart').dataset.samples) >= 12, null, { timeout: 30000 }).catch(() => {});
  const shot = path.join(ARTIFACTS, 'status-page.png');
  await page.screenshot({ path: shot, fullPage: true });
  log(`screenshot ${path.relative(ROOT, shot)}`);
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.screenshot({ path: path.join(ARTIFACTS, 'status-page-dark.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'light' });

  await check('values are put into the DOM as text (a JID with markup in its resource)', async () => {
    const probe = new BoshClient(boshUrl, 'alice', `<img src=x onerror="window.__xss=1">&amp;"'`);
    state.clients.push(probe);
    await withTimeout(probe.login(), 15000, 'probe login');
    assert(probe.jid.includes('<img'), `Prosody changed the resource: ${probe.jid}`);
    const api = await adminApi(`/admin/sessions/${probe.sid}`, token);
    const apiJid = api.body?.jid;
    if (apiJid !== probe.jid) {
      // Known: the API reports the JID as it appeared in the XML (entities not decoded).
      assert(apiJid === xmlEscape(probe.jid), `API jid ${JSON.stringify(apiJid)} is neither ${JSON.stringify(probe.jid)} nor its XML escape`);
      log(`note: GET /admin/sessions/{sid} gives the JID XML-escaped: ${JSON.stringify(apiJid)} for the bound ${JSON.stringify(probe.jid)}`);
    }
    await page.fill('#filter', probe.sid);
    const row = await until(async () => (await rows()).find((r) => r.sid === probe.sid), 6000, 'probe row');
    assert(row.cells[3] === apiJid, `JID cell ${JSON.stringify(row.cells[3])}, API ${JSON.stringify(apiJid)}`);
    assert((await page.locator('#sessions img').count()) === 0, 'an <img> element was created from a JID');
    assert((await page.evaluate(() => window.__xss)) === undefined, 'script from a JID ran');
    await page.fill('#filter', '');
    probe.close();
    assert((await adminApi(`/admin/sessions/${probe.sid}`, token, 'DELETE')).status === 202, 'cannot kick the probe by API');
    await until(async () => !(await sidsShown()).includes(probe.sid), 8000, 'probe row gone');
  });

  await check('kicking from the page: cancel keeps the session, confirm ends it with policy-violation', async () => {
    const button = `#sessions tr[data-sid="${bob.sid}"] button.kick`;
    let asked = '';
    page.once('dialog', (d) => ((asked = d.message()), d.dismiss()));
    await page.click(button);
    assert(asked.includes(bob.sid), `confirm text: ${asked}`);
    await waitRefresh();
    assert((await sidsShown()).includes(bob.sid), 'row gone after cancelling');
    assert((await adminApi(`/admin/sessions/${bob.sid}`, token)).status === 200, 'session gone after cancelling');
    assert(!bob.terminated, `bob terminated: ${bob.terminated}`);
    page.once('dialog', (d) => d.accept());
    await page.click(button);
    await until(async () => !(await sidsShown()).includes(bob.sid), 6000, 'kicked row gone from the table');
    assert((await adminApi(`/admin/sessions/${bob.sid}`, token)).status === 404, 'the API still lists the kicked session');
    await until(() => bob.terminated, 10000, 'BOSH client sees the terminate');
    assert(bob.terminated === 'policy-violation', `condition ${bob.terminated}`);
    return `BOSH client got condition='${bob.terminated}'`;
  });

  await check('kicking the WebSocket session: the client gets a policy-violation stream error', async () => {
    page.once('dialog', (d) => d.accept());
    await page.click(`#sessions tr[data-sid="${carol.sid}"] button.kick`);
    await until(async () => !(await sidsShown()).includes(carol.sid), 6000, 'kicked row gone');
    await until(() => /<policy-violation\b/.test(carol.received), 10000, `stream error; got ${carol.received.slice(-300)}`);
    await until(() => carol.closed !== null, 10000, 'WebSocket closed');
    const left = (await rows()).map((r) => r.sid);
    assert(same(left, [alice.sid]), `table after the kicks: ${JSON.stringify(left)}`);
    const t = await page.evaluate(() => ['c-bosh', 'c-ws'].map((id) => document.getElementById(id).textContent));
    assert(same(t, ['1', '0']), `totals after the kicks: ${t}`);
  });
  await page.screenshot({ path: path.join(ARTIFACTS, 'status-page-after-kick.png'), fullPage: true });

  await check('no console errors or warnings, no request leaves the admin origin', async () => {
    assert(consoleErrors.length === 0, consoleErrors.join('\n'));
    assert(foreign.length === 0, `requests elsewhere: ${foreign.join(', ')}`);
  });

  await check('without a token the page asks for one, and a wrong one is refused', async () => {
    const ctx = await state.chrome.browser.newContext({ viewport: { width: 1360, height: 900 } });
    const p = await ctx.newPage();
    const uncaught = [];
    p.on('pageerror', (e) => uncaught.push(e.message));
    await p.goto(`${state.edge.adminUrl}/`);
    await p.locator('#auth').waitFor({ state: 'visible', timeout: 5000 });
    assert((await p.locator('#sessions tbody tr[data-sid]').count()) === 0, 'rows without a token');
    await p.fill('#token', 'wrong-token');
    await p.press('#token', 'Enter');
    await p.waitForFunction(() => document.getElementById('authmsg').textContent.includes('refused'), null, { timeout: 5000 });
    await p.fill('#token', token);
    await p.press('#token', 'Enter');
    await p.locator(`#sessions tr[data-sid="${alice.sid}"]`).waitFor({ timeout: 5000 });
    assert(await p.locator('#auth').isHidden(), 'token form still shown');
    assert((await p.evaluate(() => sessionStorage.getItem('xmpp-edge-admin-token'))) === token, 'token not kept in sessionStorage');
    await p.reload();
    await p.locator(`#sessions tr[data-sid="${alice.sid}"]`).waitFor({ timeout: 5000 });
    assert(uncaught.length === 0, uncaught.join('\n'));
    await ctx.close();
  });

  await check('the session never kicked is still alive and saw no error', async () => {
    assert(!alice.terminated && !alice.error, `alice: terminated ${alice.terminated}, error ${alice.error?.message}`);
    assert((await adminApi(`/admin/sessions/${alice.sid}`, token)).status === 200, 'alice is gone from the API');
  });

  if (failures.length === 0) {
    if (!fs.existsSync(DOCS_SHOT) || process.env.STATUS_PAGE_UPDATE_DOCS === '1') {
      fs.copyFileSync(shot, DOCS_SHOT);
      log(`copied the screenshot to ${path.relative(ROOT, DOCS_SHOT)}`);
    } else {
      log(`${path.relative(ROOT, DOCS_SHOT)} exists; STATUS_PAGE_UPDATE_DOCS=1 replaces it`);
    }
  }
}

async function cleanup() {
  if (state.cleaning) return state.cleaning;
  state.cleaning = (async () => {
    clearInterval(state.traffic);
    for (const c of state.clients) c.close();
    if (state.chrome) await withTimeout(state.chrome.browser.close(), 5000, 'browser.close').catch(() => {});
    await Promise.all([...children].map((p) => stopProcess(p)));
    for (const [from, name] of [
      [state.edge?.logFile, 'xmpp-edge.log'],
      [state.prosody?.logFile, 'prosody.log'],
      [state.tmp && path.join(state.tmp, 'chromium.log'), 'chromium.log'],
    ]) {
      if (from && fs.existsSync(from)) fs.copyFileSync(from, path.join(ARTIFACTS, name));
    }
    if (state.tmp && process.env.KEEP_TMP !== '1') fs.rmSync(state.tmp, { recursive: true, force: true });
  })();
  return state.cleaning;
}

process.on('exit', () => {
  for (const p of children) signalGroup(p.pid, 'SIGKILL');
});
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.on(sig, async () => {
    state.stopping = sig;
    log(`${sig}: stopping everything`);
    await withTimeout(cleanup(), 10000, 'cleanup').catch(() => {});
    log(`status page: interrupted by ${sig} after ${passed} passed check(s); everything stopped`);
    process.exit(code);
  });
}
const limit = setTimeout(async () => {
  state.stopping = 'timeout';
  fail(`the run did not finish within ${RUN_LIMIT_MS / 1000} s`);
  await withTimeout(cleanup(), 8000, 'cleanup').catch(() => {});
  process.exit(1);
}, RUN_LIMIT_MS);

let code = 1;
try {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await main();
  code = failures.length ? 1 : 0;
} catch (e) {
  fail('the run stopped', e.stack || e.message);
}
await withTimeout(cleanup(), 15000, 'cleanup').catch((e) => log(`cleanup: ${e.message}`));
if (state.stopping) await new Promise(() => {}); // the signal or time-limit handler exits
clearTimeout(limit);
log(`status page: ${passed} passed, ${failures.length} failed${failures.length ? ': ' + failures.join('; ') : ''} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
process.exit(failures.length ? 1 : code);
