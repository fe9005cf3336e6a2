// Strophe.js (npm `strophe.js`) driven in Node, over BOSH or WebSocket.
//
// Strophe's Node build (dist/strophe.node.esm.js) installs its own DOM
// shims from its peer dependencies: `@xmldom/xmldom` for DOMParser,
// XMLSerializer and `document`, and `ws` as the global WebSocket; `saxes` is
// only for its XEP-0114 component transport. It does NOT provide
// XMLHttpRequest, which its BOSH transport needs: `xhr2` supplies it, with
// `responseXML` added below (see StropheXHR).

import XHR from 'xhr2';
import { $iq, $msg, $pres, Strophe } from 'strophe.js';
import { bareJid, deferred, Inbox, mechanismOnWire, withTimeout } from '../util.mjs';

/**
 * xhr2's XMLHttpRequest has no `responseXML`. Strophe 5.0.0 reads
 * `xhr.responseXML.documentElement` first and falls back to parsing
 * `responseText` when it is missing, but that fallback is broken (it parses
 * the text, then returns the still-null `responseXML` node, so every BOSH
 * response is silently dropped and the login hangs). Browsers always set
 * responseXML for text/xml, so this shim gives xhr2 the browser behaviour,
 * parsing with the DOMParser that Strophe's Node build installs.
 */
class StropheXHR extends XHR {
  get responseXML() {
    if (this.readyState !== 4 || !this.responseText) return null;
    if (this._xmlText !== this.responseText) {
      this._xmlText = this.responseText;
      this._xmlDoc = new globalThis.DOMParser().parseFromString(this.responseText, 'text/xml');
    }
    return this._xmlDoc;
  }
}

if (typeof globalThis.XMLHttpRequest === 'undefined') globalThis.XMLHttpRequest = StropheXHR;
// Library log lines go to console.*, which run.mjs routes into the
// current scenario's log file.
Strophe.setLogLevel(Strophe.LogLevel.INFO);

const S = Strophe.Status;
const STATUS_NAMES = Object.fromEntries(Object.entries(S).map(([k, v]) => [v, k]));

export const name = 'strophe';
export const label = 'Strophe.js';

const MECHANISMS = {
  PLAIN: Strophe.SASLPlain,
  'SCRAM-SHA-1': Strophe.SASLSHA1,
};

function text(el, tag) {
  const found = el.getElementsByTagName(tag)[0];
  return found ? found.textContent : null;
}

/** An error from a login attempt, with `kind` = auth | connfail | timeout. */
class ConnectError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/**
 * Logs in. Options: service (BOSH http:// or WebSocket ws:// URL), domain,
 * username, password, resource, mechanism (PLAIN | SCRAM-SHA-1: the only
 * one registered), log(line), timeoutMs.
 * Resolves with a session handle; rejects with ConnectError.
 */
export async function connect(opts) {
  const { service, domain, username, password, resource, mechanism = 'SCRAM-SHA-1', log = () => {} } = opts;
  const timeoutMs = opts.timeoutMs ?? 20000;
  const mech = MECHANISMS[mechanism];
  if (!mech) throw new Error(`strophe adapter: unsupported mechanism ${mechanism}`);
  const conn = new Strophe.Connection(service, {
    mechanisms: [mech],
    // XEP-0198 (Strophe supports it on WebSocket only); off unless asked.
    ...(opts.streamManagement ? { enableStreamManagement: true } : {}),
  });
  const sent = new Inbox(`${username}/${resource} sent`);
  conn.rawInput = (data) => log(`<< ${data}`);
  conn.rawOutput = (data) => {
    sent.push({ t: Date.now(), data });
    log(`>> ${data}`);
  };

  const messages = new Inbox(`${username}/${resource} messages`);
  const presences = new Inbox(`${username}/${resource} presences`);
  const statuses = new Inbox(`${username}/${resource} statuses`);
  const disconnected = deferred();

  // Strophe drops every handler when a connection ends (Connection.reset),
  // so an application adds them again before it logs in again.
  const addHandlers = () => {
    conn.addHandler(
      (el) => {
        messages.push({
          from: el.getAttribute('from'),
          to: el.getAttribute('to'),
          type: el.getAttribute('type') || 'normal',
          id: el.getAttribute('id'),
          body: text(el, 'body'),
        });
        return true;
      },
      null,
      'message',
    );
    conn.addHandler(
      (el) => {
        presences.push({
          from: el.getAttribute('from'),
          type: el.getAttribute('type') || 'available',
          status: text(el, 'status'),
          show: text(el, 'show'),
        });
        return true;
      },
      null,
      'presence',
    );
  };
  addHandlers();

  const jid = `${username}@${domain}/${resource}`;
  const onStatus = (status, condition) => {
    const name = STATUS_NAMES[status] ?? String(status);
    log(`-- status ${name}${condition ? ` (${condition})` : ''}`);
    statuses.push({ status: name, condition, index: statuses.items.length });
    if (status === S.DISCONNECTED) disconnected.resolve();
  };

  /** Waits for the outcome of a login started after status number `from`. */
  const loginOutcome = async (from, what) => {
    const st = await statuses.waitFor(
      (s) => s.index >= from && ['CONNECTED', 'AUTHFAIL', 'CONNFAIL', 'CONNTIMEOUT', 'ERROR', 'DISCONNECTED'].includes(s.status),
      timeoutMs,
      what,
    );
    if (st.status === 'CONNECTED') return;
    if (st.status === 'AUTHFAIL') {
      throw new ConnectError('auth', `authentication failed${st.condition ? `: ${st.condition}` : ''}`);
    }
    throw new ConnectError('connfail', `${st.status}${st.condition ? `: ${st.condition}` : ''}`);
  };

  const abort = () => {
    try {
      conn.reset();
      conn._proto?._abortAllRequests?.();
      conn._proto?._closeSocket?.();
    } catch {
      // best effort
    }
  };

  conn.connect(jid, password, onStatus);
  try {
    await loginOutcome(0, `strophe login ${jid} via ${service}`);
  } catch (e) {
    abort();
    throw e;
  }

  const session = {
    client: name,
    jid: conn.jid,
    bare: bareJid(conn.jid),
    /** The SASL mechanism the client actually put on the wire. */
    get mechanism() {
      return mechanismOnWire(sent.items);
    },
    messages,
    sent,
    presences,
    statuses,
    conn,
    sendMessage(to, body, { type = 'chat', id } = {}) {
      conn.send($msg({ to, type, ...(id ? { id } : {}) }).c('body').t(body));
    },
    sendPresence({ type, to, show, status, priority } = {}) {
      const p = $pres({ ...(type ? { type } : {}), ...(to ? { to } : {}) });
      if (show) p.c('show').t(show).up();
      if (status) p.c('status').t(status).up();
      if (priority !== undefined) p.c('priority').t(String(priority)).up();
      conn.send(p);
    },
    iq(builder, ms = 10000) {
      return withTimeout(
        new Promise((resolve, reject) => conn.sendIQ(builder, resolve, (el) => reject(new Error(`iq error: ${el ? Strophe.serialize(el) : 'timeout'}`)), ms)),
        ms + 1000,
        'strophe iq',
      );
    },
    async roster() {
      const res = await session.iq($iq({ type: 'get' }).c('query', { xmlns: Strophe.NS.ROSTER }));
      return Array.from(res.getElementsByTagName('item')).map((item) => ({
        jid: item.getAttribute('jid'),
        name: item.getAttribute('name'),
        subscription: item.getAttribute('subscription'),
        groups: Array.from(item.getElementsByTagName('group')).map((g) => g.textContent),
      }));
    },
    async rosterSet(jid, name, groups = []) {
      const b = $iq({ type: 'set' }).c('query', { xmlns: Strophe.NS.ROSTER }).c('item', { jid, name });
      for (const g of groups) b.c('group').t(g).up();
      await session.iq(b);
    },
    get connected() {
      return conn.connected && !conn.disconnecting;
    },
    /** Clean logout: unavailable presence + BOSH terminate / WebSocket <close/>. */
    async disconnect(ms = 10000) {
      if (!conn.connected) return;
      const from = statuses.items.length;
      conn.disconnect('interop logout');
      await statuses.waitFor((s) => s.index >= from && s.status === 'DISCONNECTED', ms, 'strophe disconnect');
    },
    /** Drops the session without a goodbye (cleanup after a failure). */
    kill: abort,
    /** The BOSH session id (null over WebSocket). */
    get sid() {
      return conn._proto?.sid ?? null;
    },
    /**
     * Logs in again on the same Connection after it was lost, as an
     * application does from its status callback; with stream management
     * enabled Strophe resumes the XEP-0198 session. Resolves with
     * { resumed }.
     */
    async reconnect() {
      const from = statuses.items.length;
      addHandlers();
      conn.connect(jid, password, onStatus);
      await loginOutcome(from, `strophe reconnect ${jid}`);
      session.jid = conn.jid;
      return { resumed: conn.hasResumed?.() ?? false };
    },
    /** Resolves at the first DISCONNECTED status. */
    disconnected: disconnected.promise,
  };
  return session;
}
