// Small helpers shared by the interop suite: timeouts, ports, waiting.

import net from 'node:net';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Error raised when a step runs past its deadline. */
export class TimeoutError extends Error {
  constructor(what, ms) {
    super(`timed out after ${ms} ms: ${what}`);
    this.name = 'TimeoutError';
    this.kind = 'timeout';
  }
}

/**
 * Resolves like `promise`, or rejects with a TimeoutError after `ms`.
 * Every awaited step of the suite goes through this, so nothing can hang.
 */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
    timer.unref?.();
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitListening(port, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new TimeoutError(`${what} listening on 127.0.0.1:${port}`, ms);
    await sleep(50);
  }
}

/** A promise with its resolve/reject exposed. */
export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * A list of received events that can be waited on: `push` adds, `waitFor`
 * resolves with the first event (old or new) matching a predicate.
 */
export class Inbox {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }

  push(item) {
    this.items.push(item);
    this.waiters = this.waiters.filter((w) => {
      if (w.predicate(item)) {
        w.resolve(item);
        return false;
      }
      return true;
    });
  }

  waitFor(predicate, ms, what) {
    const found = this.items.find(predicate);
    if (found) return Promise.resolve(found);
    const d = deferred();
    const waiter = { predicate, resolve: d.resolve };
    this.waiters.push(waiter);
    return withTimeout(d.promise, ms, `${this.name}: ${what}`).finally(() => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
    });
  }

  /** Resolves when `count` events match `predicate`; returns them. */
  async waitCount(predicate, count, ms, what) {
    const deadline = Date.now() + ms;
    for (;;) {
      const matched = this.items.filter(predicate);
      if (matched.length >= count) return matched;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new TimeoutError(`${this.name}: ${what} (got ${matched.length} of ${count})`, ms);
      }
      const d = deferred();
      const waiter = { predicate, resolve: d.resolve };
      this.waiters.push(waiter);
      await Promise.race([d.promise, sleep(Math.min(left, 250))]);
      this.waiters = this.waiters.filter((w) => w !== waiter);
    }
  }
}

export function bareJid(jid) {
  return String(jid).split('/')[0];
}

export function resourceOf(jid) {
  const i = String(jid).indexOf('/');
  return i < 0 ? '' : String(jid).slice(i + 1);
}

export function randomId(prefix = 'x') {
  return `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
}

/** Seconds with one decimal, for humans. */
export function secs(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** The SASL mechanism named in the first <auth/> a client sent. */
export function mechanismOnWire(sentItems) {
  for (const { data } of sentItems) {
    const m = /<auth\b[^>]*\bmechanism=["']([^"']+)["']/.exec(data);
    if (m) return m[1];
  }
  return null;
}
