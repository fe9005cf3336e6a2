// Headless Chromium (Debian package `chromium`) driven by playwright-core
// over CDP, and a tiny static HTTP server for the pages it loads.
//
// Chromium is started by the suite itself (not by Playwright's launcher) so
// that it is one of the suite's tracked processes: its whole process group
// is killed at the end, on failure and on SIGINT. Playwright attaches with
// connectOverCDP. Browser downloads (`npx playwright install`) are never
// needed.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startProcess } from './procs.mjs';
import { deferred, withTimeout } from './util.mjs';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-default-browser-check',
  '--disable-dev-shm-usage',
  '--window-size=1280,800',
];

/**
 * The name-resolution flags. No lookup ever reaches the system resolver:
 * every host name maps to "not found" except `localhost`, which goes to the
 * suite's TLS front (see tls-front.mjs) when there is one, and loopback
 * literals. `tlsFront` also makes Chromium accept that front's one
 * self-signed certificate (by its public key), and no other.
 */
export function resolverArgs(tlsFront) {
  if (!tlsFront) return ['--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1'];
  return [
    `--host-resolver-rules=MAP localhost 127.0.0.1:${tlsFront.port}, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1`,
    `--ignore-certificate-errors-spki-list=${tlsFront.spki}`,
  ];
}

/**
 * Starts Chromium with a fresh profile in `dir`, returns
 * { browser (playwright Browser), version, proc, args, close() }.
 */
export async function launchChromium({ dir, timeoutMs = 30000, tlsFront = null }) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM_BIN)`);
  }
  const profile = path.join(dir, 'chromium-profile');
  const wsUrl = deferred();
  let stderr = '';
  // A fresh, empty profile every run (nothing cached from an earlier one).
  fs.rmSync(profile, { recursive: true, force: true });
  fs.mkdirSync(profile, { recursive: true });
  const args = [...CHROMIUM_ARGS, ...resolverArgs(tlsFront), `--user-data-dir=${profile}`, '--remote-debugging-port=0', 'about:blank'];
  const proc = startProcess(
    'chromium',
    CHROMIUM,
    args,
    {
      logFile: path.join(dir, 'chromium.log'),
      onStderr: (chunk) => {
        stderr += chunk;
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
        if (m) wsUrl.resolve(m[1]);
      },
    },
  );
  proc.exited.then((code) => wsUrl.reject(new Error(`chromium exited (${code}) before DevTools was up:\n${stderr}`)));
  let browser;
  try {
    const url = await withTimeout(wsUrl.promise, timeoutMs, 'chromium DevTools endpoint');
    browser = await withTimeout(chromium.connectOverCDP(url), timeoutMs, 'playwright connectOverCDP');
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return {
    browser,
    version: browser.version(),
    proc,
    args,
    async close() {
      try {
        await withTimeout(browser.close(), 5000, 'browser.close');
      } catch {
        // killed below anyway
      }
      await proc.stop();
    },
  };
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.ttf': 'font/ttf',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.mp3': 'audio/mpeg',
  '.ogg': 'audio/ogg',
};

/**
 * A static server on 127.0.0.1: `routes` maps a URL path prefix to a
 * directory, `pages` maps an exact path to { type, body }.
 */
export async function startStaticServer({ routes = {}, pages = {}, log = () => {} }) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const send = (status, type, body) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    log(`${req.method} ${url.pathname}`);
    if (pages[url.pathname]) {
      const page = pages[url.pathname];
      return send(200, page.type ?? 'text/html; charset=utf-8', page.body);
    }
    for (const [prefix, dir] of Object.entries(routes)) {
      if (!url.pathname.startsWith(prefix)) continue;
      const rel = decodeURIComponent(url.pathname.slice(prefix.length));
      const file = path.resolve(dir, rel);
      if (!file.startsWith(path.resolve(dir) + path.sep)) return send(403, 'text/plain', 'forbidden');
      return fs.readFile(file, (err, data) => {
        if (err) return send(404, 'text/plain', 'not found');
        send(200, TYPES[path.extname(file)] ?? 'application/octet-stream', data);
      });
    }
    send(404, 'text/plain', 'not found');
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
