// A loopback TCP proxy between a client and xmpp-edge. It records the bytes
// of every connection (the BOSH HTTP requests and responses, as evidence)
// and can simulate a network drop: cut() resets every open connection, and
// down(ms) also refuses new connections for a while.

import fs from 'node:fs';
import net from 'node:net';

export async function startProxy({ targetPort, transcript = null, name = 'proxy' }) {
  const conns = new Set();
  let downUntil = 0;
  let nextId = 1;
  const out = transcript ? fs.createWriteStream(transcript, { flags: 'a' }) : null;
  const t0 = Date.now();
  let lastActivity = Date.now();
  /** What clients sent, in memory: [{ t, id, data }] (the first 4 KiB of each chunk). */
  const fromClients = [];
  const record = (id, dir, chunk) => {
    lastActivity = Date.now();
    if (dir === 'client->server') fromClients.push({ t: Date.now(), id, data: chunk.subarray(0, 4096).toString('utf8') });
    if (!out) return;
    const ms = String(Date.now() - t0).padStart(7);
    out.write(`--- ${ms} ms conn ${id} ${dir} ${chunk.length} bytes\n`);
    out.write(chunk.toString('utf8'));
    out.write('\n');
  };
  const note = (text) => {
    if (!out) return;
    out.write(`=== ${String(Date.now() - t0).padStart(7)} ms ${text}\n`);
  };

  const server = net.createServer((client) => {
    const id = nextId++;
    if (Date.now() < downUntil) {
      note(`conn ${id} refused (network down)`);
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    const pair = { id, client, upstream };
    conns.add(pair);
    const close = () => {
      conns.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (d) => {
      record(id, 'client->server', d);
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      record(id, 'server->client', d);
      client.write(d);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    name,
    port,
    fromClients,
    /** Connections currently open. */
    get open() {
      return conns.size;
    },
    note,
    /** Resets every open connection (both legs), like a network drop. */
    cut() {
      note(`CUT: resetting ${conns.size} open connection(s)`);
      for (const { client, upstream } of conns) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      conns.clear();
    },
    /** Network down for `ms`: open connections are reset, new ones refused. */
    down(ms) {
      downUntil = Date.now() + ms;
      note(`DOWN for ${ms} ms`);
      this.cut();
    },
    /**
     * Waits until no byte has passed for `idleMs` (at most `maxMs`), so that
     * closing handshakes still under way finish before close().
     */
    async quiet(idleMs = 200, maxMs = 1500) {
      const deadline = Date.now() + maxMs;
      while (conns.size && Date.now() - lastActivity < idleMs && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async close() {
      for (const { client, upstream } of conns) {
        client.destroy();
        upstream.destroy();
      }
      conns.clear();
      await new Promise((resolve) => server.close(() => resolve()));
      await new Promise((resolve) => (out ? out.end(resolve) : resolve()));
    },
  };
}
