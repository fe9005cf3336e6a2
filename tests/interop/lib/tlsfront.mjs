// The "https://localhost" of the XEP-0156 discovery cells.
//
// Converse.js looks for connection methods at
// https://<XMPP domain>/.well-known/host-meta (hard-coded scheme, port 443)
// and keeps only https:// and wss:// links. A deployment answers there
// either with a TLS-terminating reverse proxy in front of xmpp-edge
// (`public_base_url` names it) or with xmpp-edge's own HTTPS listener
// ([tls]). This module plays both, on loopback: a listener on a free port of
// 127.0.0.1 that, per scenario, either
//  - 'terminate': does TLS itself with a throw-away self-signed certificate
//    for `localhost` and pipes the decrypted bytes on (to the scenario's
//    recording proxy in front of xmpp-edge's plain listener), or
//  - 'passthrough': pipes the raw TLS bytes on (to a recording proxy in
//    front of xmpp-edge's HTTPS listener, which uses the same certificate).
//
// Chromium is pointed at it with
//   --host-resolver-rules=MAP localhost 127.0.0.1:<port>
//   --ignore-certificate-errors-spki-list=<sha256 of this key>
// so "https://localhost/..." and "wss://localhost/..." reach this listener
// without a DNS query, and only this one certificate is accepted.

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { withTimeout } from './util.mjs';

const run = promisify(execFile);

/** Creates a self-signed P-256 certificate for localhost in `dir`. */
async function makeCertificate(dir) {
  const key = path.join(dir, 'tls-front.key.pem');
  const cert = path.join(dir, 'tls-front.cert.pem');
  try {
    await withTimeout(
      run('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ]),
      20000,
      'openssl req',
    );
  } catch (e) {
    const hint = e.code === 'ENOENT' ? ' (openssl is not installed: apt-get install -y openssl)' : '';
    throw new Error(`could not create the test certificate${hint}: ${e.stderr || e.message}`);
  }
  return { key: fs.readFileSync(key), cert: fs.readFileSync(cert), keyFile: key, certFile: cert };
}

/**
 * Starts the TLS front. Returns { port, spki, certFile, keyFile,
 * setTarget(port | null, mode), connections, close() }. With no target,
 * connections are refused (reset).
 */
export async function startTlsFront({ dir, log = () => {} }) {
  fs.mkdirSync(dir, { recursive: true });
  const { key, cert, keyFile, certFile } = await makeCertificate(dir);
  const spki = crypto
    .createHash('sha256')
    .update(crypto.createPublicKey(cert).export({ type: 'spki', format: 'der' }))
    .digest('base64');
  const context = tls.createSecureContext({ key, cert });
  let target = null;
  let mode = 'terminate';
  let connections = 0;
  const open = new Set();

  // A plain TCP server that wraps each socket in TLS itself, so that a
  // network drop can be passed on as a TCP reset of the raw socket.
  const server = net.createServer((raw) => {
    connections++;
    if (!target) {
      log(`tls-front: connection refused (no target)`);
      raw.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host: '127.0.0.1', port: target });
    if (mode === 'passthrough') {
      // TLS is xmpp-edge's; only pass the bytes, and a reset behind us on.
      const pair = { raw, upstream };
      open.add(pair);
      const done = () => open.delete(pair);
      raw.pipe(upstream);
      upstream.pipe(raw);
      raw.on('error', () => upstream.destroy());
      raw.on('close', () => {
        done();
        upstream.destroy();
      });
      upstream.on('error', () => raw.resetAndDestroy());
      upstream.on('close', () => {
        done();
        raw.destroy();
      });
      return;
    }
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context, ALPNProtocols: ['http/1.1'] });
    const pair = { raw, secure, upstream };
    open.add(pair);
    let closed = false;
    const close = (reset) => {
      if (closed) return;
      closed = true;
      open.delete(pair);
      if (reset) raw.resetAndDestroy();
      else secure.destroy();
      upstream.destroy();
    };
    secure.pipe(upstream);
    upstream.pipe(secure);
    secure.on('error', () => close(false));
    secure.on('close', () => close(false));
    // The hop behind us was reset (the scenario's proxy "dropped the
    // network"): reset the browser's connection too.
    upstream.on('error', () => close(true));
    upstream.on('close', () => close(false));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    spki,
    certFile,
    keyFile,
    get connections() {
      return connections;
    },
    /** Where new connections go from now on (null: refuse), and how: 'terminate' | 'passthrough'. */
    setTarget(p, how = 'terminate') {
      target = p;
      mode = how;
    },
    async close() {
      for (const { raw, upstream } of open) {
        raw.destroy();
        upstream.destroy();
      }
      open.clear();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
