// The suite's own helper client: xmpp.js over plain TCP straight to the
// XMPP server (not through xmpp-edge). It prepares state (rosters) and
// plays the other side of a conversation when no second client under test
// is available, so a scenario's result depends only on the client under
// test and xmpp-edge.

import * as xmppjs from './clients/xmppjs.mjs';
import { DOMAIN, password } from './prosody.mjs';
import { sleep, withTimeout } from './util.mjs';

/** Connects `user` directly to the server's c2s port. */
export function connectFixture(server, user, { resource = 'fixture', log = () => {}, available = true } = {}) {
  return xmppjs
    .connect({
      service: `xmpp://127.0.0.1:${server.port}`,
      domain: DOMAIN,
      username: user,
      password: password(user),
      resource,
      mechanism: 'PLAIN',
      streamManagement: false,
      starttls: false,
      log,
      timeoutMs: 15000,
    })
    .then(async (s) => {
      s.label = `fixture ${user}`;
      if (available) {
        await s.sendPresence();
        s.presenceSent = true;
      }
      return s;
    });
}

export const displayName = (user) => user[0].toUpperCase() + user.slice(1);

/**
 * Makes every pair of `users` mutual contacts (subscription "both"), with
 * the display name "Alice"/"Bob"/... in the group "Interop".
 */
export async function befriend(server, users, log = () => {}) {
  const sessions = {};
  try {
    for (const u of users) {
      sessions[u] = await connectFixture(server, u, { resource: 'setup', log: (l) => log(`[setup ${u}] ${l}`) });
    }
    // Approve every incoming subscription request.
    for (const u of users) {
      sessions[u].xmpp.on('stanza', (el) => {
        if (el.is('presence') && el.attrs.type === 'subscribe') {
          sessions[u].sendPresence({ type: 'subscribed', to: el.attrs.from.split('/')[0] });
        }
      });
    }
    for (const a of users) {
      for (const b of users) {
        if (a === b) continue;
        await sessions[a].rosterSet(`${b}@${DOMAIN}`, displayName(b), ['Interop']);
        await sessions[a].sendPresence({ type: 'subscribe', to: `${b}@${DOMAIN}` });
      }
    }
    const want = users.length - 1;
    const deadline = Date.now() + 15000;
    for (const u of users) {
      for (;;) {
        const roster = await sessions[u].roster();
        const both = roster.filter((i) => i.subscription === 'both').length;
        if (both >= want) break;
        if (Date.now() > deadline) {
          throw new Error(`roster setup: ${u} has ${JSON.stringify(roster)}`);
        }
        await sleep(100);
      }
    }
  } finally {
    await Promise.all(
      Object.values(sessions).map((s) => withTimeout(s.disconnect(), 5000, 'fixture disconnect').catch(() => s.kill())),
    );
  }
}
