// Converse.js (npm `converse.js`, the ESM build in dist/) in headless
// Chromium. The page www/converse.html is served on loopback by the suite
// together with converse's dist/ files; the browser can reach nothing but
// loopback (every other request is aborted and listed in the page log), and
// `localhost` is the suite's TLS front (lib/tlsfront.mjs), which the
// discovery cell reaches as https://localhost and wss://localhost.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStaticServer } from '../browser.mjs';
import { withTimeout } from '../util.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
// converse.js's package.json has no "exports" entry for itself: find it on disk.
const PKG = path.join(here, '..', '..', 'node_modules', 'converse.js');
export const DIST = path.join(PKG, 'dist');
export const VERSION = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8')).version;
const TEMPLATE = path.join(here, '..', '..', 'www', 'converse.html');

export const name = 'converse';
export const label = 'Converse.js';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Opens Converse in a fresh browser context and logs in.
 * Options:
 *  - browser (playwright Browser)
 *  - transport: 'bosh' | 'websocket' (service is then its URL), or
 *    'discovery': Converse gets only the JID and must find the endpoints
 *    itself (XEP-0156, https://<domain>/.well-known/host-meta)
 *  - jid (full JID), password, log(line), timeoutMs
 *  - autoReconnect (default false: a drop is then visible as a failure)
 *  - mechanism: 'PLAIN' | 'SCRAM-SHA-1' to offer Strophe only that SASL
 *    mechanism (default: Converse's own choice, the strongest offered)
 *  - waitLogin (default true): resolve once connected, reject (kind auth |
 *    connfail | timeout) otherwise; with false, resolve as soon as the page
 *    is loaded (for scenarios that expect the login to fail)
 * Resolves with a page handle (see below).
 */
export async function open({
  browser,
  transport,
  service,
  jid,
  password,
  log = () => {},
  timeoutMs = 30000,
  autoReconnect = false,
  waitLogin = true,
  mechanism = null,
}) {
  const endpoint =
    transport === 'bosh'
      ? { bosh_service_url: service, discover_connection_methods: false }
      : transport === 'websocket'
        ? { websocket_url: service, discover_connection_methods: false }
        : { discover_connection_methods: true };
  const settings = {
    ...endpoint,
    jid,
    password,
    auto_login: true,
    auto_reconnect: autoReconnect,
    view_mode: 'fullscreen',
    assets_path: '/dist/',
    i18n: 'en',
    loglevel: 'debug',
    play_sounds: false,
    show_desktop_notifications: false,
    // OMEMO loads a WebAssembly module and does PEP work that is beside the point.
    blacklisted_plugins: ['converse-omemo'],
  };
  const html = fs
    .readFileSync(TEMPLATE, 'utf8')
    .replace('/*SETTINGS*/{}', JSON.stringify(settings))
    .replace('/*OPTIONS*/{}', JSON.stringify({ mechanism }));
  const web = await startStaticServer({
    routes: { '/dist/': DIST },
    pages: { '/': { body: html } },
    log: (l) => log(`[http] ${l}`),
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const cleanup = async () => {
    await withTimeout(context.close(), 10000, 'browser context close').catch(() => {});
    await web.close();
  };
  /** host-meta responses the page got: { url, status, protocol }. */
  const discovery = [];
  /** WebSocket handshakes: { url, status } (101: HTTP/1.1 upgrade; 200: HTTP/2 extended CONNECT). */
  const websockets = [];
  /** HTTP protocol of each response by URL path (from DevTools: "http/1.1", "h2"). */
  const protocols = new Map();
  try {
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.protocol === 'data:' || url.protocol === 'blob:' || LOOPBACK.has(url.hostname)) return route.continue();
      log(`[blocked] ${url.href}`);
      return route.abort('blockedbyclient');
    });
    const page = await context.newPage();
    // What Playwright does not report: the HTTP version of each response and
    // the status of WebSocket handshakes (DevTools Network events).
    const cdp = await context.newCDPSession(page);
    const wsUrls = new Map();
    cdp.on('Network.responseReceived', ({ response }) => {
      const u = new URL(response.url);
      if (u.protocol === 'https:' || u.protocol === 'http:') protocols.set(`${u.origin}${u.pathname}`, response.protocol);
      if (u.pathname.includes('/.well-known/host-meta')) {
        const d = discovery.find((x) => x.url === response.url && !x.protocol);
        if (d) d.protocol = response.protocol;
      }
    });
    cdp.on('Network.webSocketCreated', ({ requestId, url }) => wsUrls.set(requestId, url));
    cdp.on('Network.webSocketHandshakeResponseReceived', ({ requestId, response }) => {
      websockets.push({ url: wsUrls.get(requestId), status: response.status });
      log(`[websocket] handshake ${wsUrls.get(requestId)} -> ${response.status}`);
    });
    await cdp.send('Network.enable');
    page.on('console', (m) => log(`[console.${m.type()}] ${m.text()}`));
    page.on('pageerror', (err) => log(`[pageerror] ${err.stack || err}`));
    page.on('requestfailed', (r) => log(`[requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', (r) => {
      if (r.url().includes('/.well-known/host-meta')) {
        discovery.push({ url: r.url(), status: r.status(), protocol: protocols.get(r.url().split('?')[0]) ?? null });
        log(`[discovery] ${r.request().method()} ${r.url()} -> ${r.status()}`);
      }
    });
    page.on('websocket', (ws) => log(`[websocket] ${ws.url()}`));
    await page.goto(`${web.url}/`, { timeout: timeoutMs });

    const handle = {
      page,
      context,
      web,
      discovery,
      websockets,
      protocols,
      events: () => page.evaluate(() => window.interop.events.map((e) => e.what)),
      /** Waits for the login to finish; rejects with kind auth | connfail | timeout. */
      async waitLogin(ms = timeoutMs) {
        const outcome = await page.waitForFunction(
          () => {
            const ev = window.interop.events.map((e) => e.what);
            if (ev.includes('connected')) return 'connected';
            if (window.interop.errors.length) return `error: ${window.interop.errors.join('; ')}`;
            const fail = document.querySelector('.conn-feedback.error, converse-login-form .error, .alert-danger');
            if (fail && fail.textContent.trim()) return `feedback: ${fail.textContent.trim()}`;
            if (ev.includes('disconnected')) return 'disconnected';
            return false;
          },
          null,
          { timeout: ms, polling: 200 },
        );
        const result = await outcome.jsonValue();
        if (result !== 'connected') {
          const err = new Error(`Converse did not log in: ${result}`);
          err.kind = /auth|credential|password/i.test(result) ? 'auth' : 'connfail';
          throw err;
        }
      },
      /**
       * What the page's connection is: { type (bosh | websocket), service,
       * sid (BOSH), mechanism (SASL), resumed (XEP-0198), connected }.
       */
      connection: () =>
        page.evaluate(() => {
          const { api } = window.interop;
          const c = api.connection.get();
          if (!c) return { connected: false };
          return {
            jid: c.jid ?? null,
            type: api.connection.isType('websocket') ? 'websocket' : 'bosh',
            service: c.service,
            sid: c._proto?.sid ?? null,
            mechanism: c._sasl_mechanism?.mechname ?? null,
            resumed: c.hasResumed?.() ?? false,
            connected: Boolean(c.connected && c.authenticated),
            bosh_service_url: api.settings.get('bosh_service_url') ?? null,
            websocket_url: api.settings.get('websocket_url') ?? null,
          };
        }),
      /** The texts of the messages shown in the open chat, top to bottom. */
      messageTexts: () => page.locator('.chat-msg__text').allTextContents(),
      /** Logs out from the page through the API (cleanup). */
      async logout() {
        await withTimeout(
          page.evaluate(() => window.interop.api.user.logout()),
          10000,
          'Converse logout',
        );
      },
      async close() {
        await cleanup();
      },
    };
    if (waitLogin) await handle.waitLogin();
    return handle;
  } catch (e) {
    if (e.name === 'TimeoutError' && !e.kind) e.kind = 'timeout';
    await cleanup();
    throw e;
  }
}
