// The interop scenarios. Each is an async function of a context (see
// run.mjs, makeContext) that throws on failure; the context tracks every
// session, proxy and page it opens and closes them afterwards.

import { DOMAIN } from './prosody.mjs';
import { displayName } from './fixtures.mjs';
import { bareJid, randomId, sleep, TimeoutError } from './util.mjs';

export class CheckError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CheckError';
  }
}

export function check(cond, message) {
  if (!cond) throw new CheckError(message);
}

const jidOf = (user) => `${user}@${DOMAIN}`;

/** Bodies "<tag> #<n>" for n = 1..count. */
const seqBody = (tag, n) => `${tag} #${n}`;
function seqsOf(inbox, tag) {
  const re = new RegExp(`^${tag} #(\\d+)$`);
  return inbox.items.map((m) => re.exec(m.body ?? '')).filter(Boolean).map((m) => Number(m[1]));
}

/**
 * Waits until `inbox` holds `count` messages of `tag`, then a little more
 * for late duplicates, and checks that they are exactly 1..count in order.
 */
async function expectSequence(inbox, tag, count, ms, who) {
  try {
    await inbox.waitCount((m) => (m.body ?? '').startsWith(`${tag} #`), count, ms, `${who}: ${count} messages ${tag}`);
  } catch (e) {
    const got = seqsOf(inbox, tag);
    throw new CheckError(
      `${who} received ${got.length} of ${count} messages (${e.message}); sequence numbers received: ${summarize(got)}`,
    );
  }
  await sleep(750);
  const got = seqsOf(inbox, tag);
  const want = Array.from({ length: count }, (_, i) => i + 1);
  check(
    got.length === count && got.every((n, i) => n === want[i]),
    `${who}: messages not exactly once and in order: got ${got.length} (${summarize(got)}), want 1..${count}`,
  );
}

function summarize(nums) {
  if (nums.length <= 60) return nums.join(',') || 'none';
  return `${nums.slice(0, 30).join(',')},...,${nums.slice(-10).join(',')}`;
}

/** Sends `count` sequence-numbered messages from `from` to `to`. */
async function sendSequence(from, to, tag, count, first = 1) {
  for (let n = first; n < first + count; n++) {
    await from.sendMessage(to, seqBody(tag, n));
  }
}

/** Both send presence (if they have not), then each sees the other available. */
async function availableEachOther(a, b, ms = 10000) {
  for (const s of [a, b]) {
    if (!s.presenceSent) {
      await s.sendPresence();
      s.presenceSent = true;
    }
  }
  await Promise.all([
    b.presences.waitFor((p) => p.from === a.jid && p.type === 'available', ms, `${b.jid} sees ${a.jid} available`),
    a.presences.waitFor((p) => p.from === b.jid && p.type === 'available', ms, `${a.jid} sees ${b.jid} available`),
  ]);
}

// ---------------------------------------------------------------------------
// Scenarios for the clients driven in Node (Strophe.js, xmpp.js).

async function login(ctx, mechanism) {
  const s = await ctx.connect('alice', { mechanism });
  check(s.mechanism === mechanism, `client used SASL ${s.mechanism}, expected ${mechanism}`);
  check(bareJid(s.jid) === jidOf('alice'), `bound JID ${s.jid} is not alice's`);
  check(s.jid.includes('/'), `bound JID ${s.jid} has no resource`);
  ctx.note(`logged in as ${s.jid} with ${s.mechanism}`);
  await s.disconnect();
}

async function roster(ctx) {
  const s = await ctx.connect('alice');
  const items = await s.roster();
  ctx.note(`roster: ${JSON.stringify(items)}`);
  for (const user of ['bob', 'carol']) {
    const item = items.find((i) => i.jid === jidOf(user));
    check(item, `roster has no ${jidOf(user)}: ${JSON.stringify(items)}`);
    check(item.subscription === 'both', `${user}: subscription ${item.subscription}, expected both`);
    check(item.name === displayName(user), `${user}: name ${item.name}`);
    check(item.groups.includes('Interop'), `${user}: groups ${item.groups}`);
  }
  // A roster set, then the new item is in the next fetch.
  const extra = `${ctx.cell.id}-${randomId('contact')}@${DOMAIN}`;
  await s.rosterSet(extra, 'Interop extra', ['Extra']);
  const after = await s.roster();
  check(after.some((i) => i.jid === extra && i.name === 'Interop extra'), `roster set of ${extra} not in the roster: ${JSON.stringify(after)}`);
  await s.disconnect();
}

async function presence(ctx) {
  const bob = await ctx.fixture('bob');
  const alice = await ctx.connect('alice');
  const token = randomId('status');
  await alice.sendPresence({ status: token });
  const seen = await bob.presences.waitFor((p) => p.from === alice.jid && p.status === token, 10000, `bob sees alice's status ${token}`);
  check(seen.type === 'available', `bob saw type ${seen.type}`);
  // alice's initial presence made the server probe bob: alice sees him.
  await alice.presences.waitFor((p) => p.from === bob.jid && p.type === 'available', 10000, 'alice sees bob available');
  const token2 = randomId('status');
  await bob.sendPresence({ status: token2 });
  await alice.presences.waitFor((p) => p.from === bob.jid && p.status === token2, 10000, `alice sees bob's status ${token2}`);
  await alice.disconnect();
}

/** 50 messages each way at once between the cell's client and a peer on another client/transport. */
async function messages(ctx, count = 50) {
  const peer = ctx.peer();
  ctx.note(`peer: ${peer.label}`);
  const alice = await ctx.connect('alice');
  const bob = await peer.connect('bob');
  await availableEachOther(alice, bob);
  const tagAB = randomId('a2b');
  const tagBA = randomId('b2a');
  const t0 = Date.now();
  await Promise.all([sendSequence(alice, jidOf('bob'), tagAB, count), sendSequence(bob, jidOf('alice'), tagBA, count)]);
  await Promise.all([
    expectSequence(bob.messages, tagAB, count, 45000, `bob (${peer.label})`),
    expectSequence(alice.messages, tagBA, count, 45000, `alice (${ctx.cell.label})`),
  ]);
  ctx.note(`${count} messages each way delivered once and in order in ${Date.now() - t0} ms`);
  await alice.disconnect();
  await bob.disconnect();
}

async function twoResources(ctx) {
  const bob = await ctx.fixture('bob');
  const r1 = await ctx.connect('alice', { resource: ctx.resource('r1') });
  const r2 = await ctx.connect('alice', { resource: ctx.resource('r2') });
  check(r1.jid !== r2.jid, `both sessions bound ${r1.jid}`);
  await r1.sendPresence();
  await r2.sendPresence();
  await r1.presences.waitFor((p) => p.from === r2.jid && p.type === 'available', 10000, 'r1 sees r2 available');
  await r2.presences.waitFor((p) => p.from === r1.jid && p.type === 'available', 10000, 'r2 sees r1 available');
  const tag = randomId('res');
  await bob.sendMessage(r1.jid, `${tag} for r1`);
  await bob.sendMessage(r2.jid, `${tag} for r2`);
  await r1.messages.waitFor((m) => m.body === `${tag} for r1`, 10000, 'r1 gets its message');
  await r2.messages.waitFor((m) => m.body === `${tag} for r2`, 10000, 'r2 gets its message');
  await r2.sendMessage(jidOf('bob'), `${tag} from r2`);
  const got = await bob.messages.waitFor((m) => m.body === `${tag} from r2`, 10000, 'bob gets r2 message');
  check(got.from === r2.jid, `bob saw the message from ${got.from}, expected ${r2.jid}`);
  await sleep(500);
  check(!r1.messages.items.some((m) => m.body === `${tag} for r2`), 'r1 also got the message for r2');
  check(!r2.messages.items.some((m) => m.body === `${tag} for r1`), 'r2 also got the message for r1');
  await r2.disconnect();
  await r1.presences.waitFor((p) => p.from === r2.jid && p.type === 'unavailable', 10000, 'r1 sees r2 leave');
  await r1.disconnect();
}

async function wrongPassword(ctx) {
  const t0 = Date.now();
  let err = null;
  try {
    await ctx.connect('alice', { password: 'not-the-password', timeoutMs: 15000 });
  } catch (e) {
    err = e;
  }
  const ms = Date.now() - t0;
  check(err, 'login with a wrong password succeeded');
  check(!(err instanceof TimeoutError) && err.kind !== 'timeout', `no answer to a wrong password: ${err.message}`);
  check(err.kind === 'auth', `wrong password gave "${err.kind}: ${err.message}", expected an authentication failure`);
  ctx.note(`auth failure reported in ${ms} ms: ${err.message}`);
}

const LOGOUT_LIMIT_MS = 3000;

async function logout(ctx) {
  const bob = await ctx.fixture('bob');
  const alice = await ctx.connect('alice');
  await availableEachOther(alice, bob);
  const t0 = Date.now();
  await alice.disconnect(10000);
  const ms = Date.now() - t0;
  ctx.note(`client reported the logout done in ${ms} ms`);
  await bob.presences.waitFor((p) => p.from === alice.jid && p.type === 'unavailable', 10000, 'bob sees alice unavailable');
  check(!alice.connected, 'client still says it is connected');
  // On loopback the closing handshake (BOSH terminate answered, or the
  // server's <close/> after ours) takes milliseconds; a client that waits
  // seconds for it has a user-visible stall on every logout.
  check(
    ms <= LOGOUT_LIMIT_MS,
    `logout took ${ms} ms (limit ${LOGOUT_LIMIT_MS} ms): the client waited that long for the end of its stream/session (see the client log: time between its close and the server's)`,
  );
}

/** The client's network drops (every connection reset), then is down for 2 s. */
async function reconnect(ctx) {
  const transport = ctx.cell.transport;
  const opts = {};
  if (ctx.cell.client === 'xmppjs') opts.autoReconnect = true;
  if (ctx.cell.client === 'strophe' && transport === 'websocket') opts.streamManagement = true;
  const bob = await ctx.fixture('bob');
  const alice = await ctx.connect('alice', opts);
  await availableEachOther(alice, bob);
  const tag = randomId('drop');
  const proxy = ctx.proxy();

  await sendSequence(bob, alice.jid, tag, 5, 1);
  await alice.messages.waitCount((m) => (m.body ?? '').startsWith(`${tag} #`), 5, 10000, 'messages 1-5');
  const sid = alice.sid ?? null;
  await sleep(500); // a long-poll (BOSH) is now held
  const cutAt = Date.now();
  const before = alice.sent.items.filter((x) => x.t < cutAt).map((x) => ridOf(x.data)).filter(Boolean);
  let statusFrom = alice.statuses.items.length;
  proxy.cut();
  ctx.note(`phase 1: cut ${transport} connections`);
  await afterDrop(ctx, alice, statusFrom);
  await sendSequence(bob, alice.jid, tag, 5, 6);
  await alice.messages.waitCount((m) => (m.body ?? '').startsWith(`${tag} #`), 10, 30000, 'messages 6-10 after the cut');

  if (transport === 'bosh') {
    check(alice.sid === sid, `BOSH sid changed from ${sid} to ${alice.sid}: a new session instead of a recovered one`);
    const lastRid = Math.max(...before);
    const resent = alice.sent.items.filter((x) => x.t >= cutAt && ridOf(x.data) === lastRid);
    check(resent.length > 0, `the client did not resend rid ${lastRid} after the drop`);
    ctx.note(`client resent rid ${lastRid} after the cut; sid unchanged`);
  }

  statusFrom = alice.statuses.items.length;
  proxy.down(2000);
  ctx.note('phase 2: network down for 2 s');
  await afterDrop(ctx, alice, statusFrom);
  await sendSequence(bob, alice.jid, tag, 5, 11);
  await expectSequence(alice.messages, tag, 15, 40000, 'alice after two drops');
  if (transport === 'bosh') check(alice.sid === sid, `BOSH sid changed from ${sid} to ${alice.sid}`);

  const back = randomId('back');
  await alice.sendMessage(jidOf('bob'), back);
  await bob.messages.waitFor((m) => m.body === back, 15000, 'bob gets a message sent after the drops');
  await alice.disconnect(15000);
}

/** What the client does after its connections were cut. */
async function afterDrop(ctx, alice, statusFrom) {
  if (ctx.cell.client === 'strophe' && ctx.cell.transport === 'websocket') {
    // Strophe does not reconnect a WebSocket by itself; the application
    // logs in again on the same Connection, which resumes (XEP-0198).
    await alice.statuses.waitFor(
      (s) => ['CONNFAIL', 'DISCONNECTED'].includes(s.status) && s.index >= statusFrom,
      15000,
      'strophe notices the drop',
    );
    for (let i = 0; ; i++) {
      try {
        const { resumed } = await alice.reconnect();
        ctx.note(`strophe reconnected, resumed=${resumed}`);
        check(resumed, 'stream management did not resume the session');
        return;
      } catch (e) {
        if (i >= 5 || e instanceof CheckError) throw e;
        await sleep(1000);
      }
    }
  }
  if (ctx.cell.client === 'xmppjs') {
    await alice.statuses.waitFor((s) => s.status === 'resumed' && s.index >= statusFrom, 20000, 'xmpp.js resumes its stream');
    ctx.note('xmpp.js reconnected and resumed its stream');
  }
  // BOSH (Strophe): nothing to do, the client retries its requests itself.
}

function ridOf(data) {
  const m = /<body\b[^>]*\brid=["'](\d+)["']/.exec(data ?? '');
  return m ? Number(m[1]) : null;
}

// ---------------------------------------------------------------------------
// Converse.js in headless Chromium: four cells, configured with the BOSH
// URL, with the WebSocket URL, and with only the JID (XEP-0156 discovery,
// answered through a TLS-terminating proxy or by xmpp-edge's own HTTPS).

const contactLink = (page, user, extra = '') => page.page.locator(`a.open-chat${extra}[data-jid="${jidOf(user)}"]`).first();

/**
 * Checks that the page is connected the way its cell says, and returns
 * a one-line description for the notes. Discovery: the page fetched
 * https://localhost/.well-known/host-meta (200) and connected to a
 * discovered endpoint (Converse takes the WebSocket one when both are listed).
 */
async function checkConverseTransport(ctx, page) {
  const c = await page.connection();
  check(c.connected, `Converse is not connected: ${JSON.stringify(c)}`);
  const transport = ctx.cell.transport;
  if (transport === 'discovery' || transport === 'discovery-tls') {
    const hostMeta = page.discovery.find((d) => d.url === 'https://localhost/.well-known/host-meta');
    check(hostMeta, `the page did not fetch https://localhost/.well-known/host-meta (saw: ${JSON.stringify(page.discovery)})`);
    check(hostMeta.status === 200, `host-meta answered HTTP ${hostMeta.status}`);
    check(
      c.bosh_service_url === 'https://localhost/http-bind' && c.websocket_url === 'wss://localhost/xmpp-websocket',
      `discovered endpoints ${c.bosh_service_url} / ${c.websocket_url}, expected https://localhost/http-bind / wss://localhost/xmpp-websocket`,
    );
    check(c.service === c.websocket_url || c.service === c.bosh_service_url, `connected to ${c.service}, not a discovered endpoint`);
    const ws = page.websockets.filter((w) => w.url === c.service).map((w) => w.status);
    const how =
      c.type === 'websocket'
        ? ws.length
          ? `WebSocket handshake ${ws.map((x) => (x === 200 ? '200 (HTTP/2 extended CONNECT)' : x === 101 ? '101 (HTTP/1.1 upgrade)' : x)).join(', ')}`
          : 'WebSocket handshake not seen'
        : `BOSH over ${page.protocols.get(c.service) ?? '?'}`;
    return `host-meta fetched from https://localhost (HTTP ${hostMeta.status} over ${hostMeta.protocol ?? '?'}) listed ${c.bosh_service_url} and ${c.websocket_url}; Converse connected over ${c.type} to ${c.service}, ${how} (SASL ${c.mechanism})`;
  }
  check(c.type === transport, `Converse connected over ${c.type}, configured for ${transport}`);
  check(page.discovery.length === 0, `discovery was off, yet the page fetched ${JSON.stringify(page.discovery)}`);
  return `connected over ${c.type} to ${c.service} (SASL ${c.mechanism})`;
}

async function converseLogin(ctx, mechanism) {
  const page = await ctx.converse('carol', { mechanism });
  ctx.note(await checkConverseTransport(ctx, page));
  const { mechanism: used } = await page.connection();
  check(used === mechanism, `Converse authenticated with ${used}, expected ${mechanism} (the only one it was given)`);
  // The roster came through xmpp-edge: the contacts are listed.
  for (const user of ['alice', 'bob']) await contactLink(page, user).waitFor({ timeout: 15000 });
  const shot = ctx.artifact('roster.png');
  await page.page.screenshot({ path: shot });
  ctx.note(`screenshot ${ctx.rel(shot)}`);
  await page.logout();
}

/** Messages shown in the open chat whose text starts with `tag #`, as sequence numbers. */
async function shownSequence(page, tag) {
  const texts = (await page.messageTexts()).map((t) => t.trim());
  const re = new RegExp(`^${tag} #(\\d+)$`);
  return texts.map((t) => re.exec(t)).filter(Boolean).map((m) => Number(m[1]));
}

/** Waits until the open chat shows `count` messages of `tag`, then checks 1..count once, in order. */
async function expectShown(page, tag, count, ms, what) {
  const deadline = Date.now() + ms;
  let got = [];
  for (;;) {
    got = await shownSequence(page, tag);
    if (got.length >= count) break;
    if (Date.now() > deadline) throw new CheckError(`${what}: the page shows ${got.length} of ${count} messages (${summarize(got)})`);
    await sleep(200);
  }
  await sleep(750); // late duplicates
  got = await shownSequence(page, tag);
  const ok = got.length === count && got.every((n, i) => n === i + 1);
  check(ok, `${what}: the page shows ${summarize(got)}, want 1..${count} once each, in order`);
}

/** Waits for the unread badge on `user`, opens the chat, waits for `text`. */
async function openChatWith(page, user, text) {
  // As a person would: wait for the unread badge, then click. (Clicking
  // while Converse is still storing the message can leave the freshly
  // opened chat empty: a Converse race, not a transport problem.)
  const contact = contactLink(page, user, '.unread-msgs');
  await contact.waitFor({ timeout: 15000 });
  await contact.click();
  await page.page.getByText(text, { exact: true }).first().waitFor({ state: 'visible', timeout: 15000 });
}

async function typeInConverse(page, text) {
  const box = page.page.locator('.chat-textarea, textarea[name="message"]').first();
  await box.fill(text);
  await box.press('Enter');
}

async function converseReceive(ctx) {
  const page = await ctx.converse('carol');
  ctx.note(await checkConverseTransport(ctx, page));
  // The sender is another client under test through xmpp-edge: Strophe.js over BOSH.
  const sender = ctx.senderFor();
  ctx.note(`sender: ${sender.label}`);
  const bob = await sender.connect('bob');
  await bob.sendPresence();
  const text = `Hello Carol from ${sender.label} via xmpp-edge (${randomId('msg')})`;
  await bob.sendMessage(jidOf('carol'), text);
  await openChatWith(page, 'bob', text);
  await page.page.screenshot({ path: ctx.artifact('message.png') });
  ctx.note(`page shows the message; screenshot ${ctx.rel(ctx.artifact('message.png'))}`);
  // A burst into the open chat: each shown once, in order.
  const tag = randomId('burst');
  await sendSequence(bob, jidOf('carol'), tag, 20);
  await expectShown(page, tag, 20, 20000, 'burst of 20');
  ctx.note('a burst of 20 messages is shown once each, in order');
  // And the reply goes back the same way.
  const reply = `Reply from Converse ${randomId('re')}`;
  await typeInConverse(page, reply);
  await bob.messages.waitFor((m) => m.body === reply, 15000, 'bob gets the reply typed in Converse');
  await bob.disconnect();
  await page.logout();
}

async function conversePresence(ctx) {
  const sender = ctx.senderFor();
  ctx.note(`contact: bob on ${sender.label}`);
  const bob = await sender.connect('bob');
  await bob.sendPresence();
  const page = await ctx.converse('carol');
  ctx.note(await checkConverseTransport(ctx, page));
  // Converse's initial presence reaches bob; bob's reaches the roster.
  const carol = jidOf('carol');
  const { jid: pageJid } = await page.connection();
  await bob.presences.waitFor((p) => p.from === pageJid && p.type === 'available', 10000, `bob sees ${pageJid} available`);
  await contactLink(page, 'bob').locator('.contact-name--online').waitFor({ timeout: 10000 });
  // bob goes "do not disturb": the roster shows it.
  await bob.sendPresence({ show: 'dnd', status: randomId('busy') });
  await contactLink(page, 'bob').locator('.contact-name--dnd').waitFor({ timeout: 10000 });
  // carol sets a status in Converse: bob sees the show and the text.
  const token = randomId('meeting');
  await page.page.evaluate((t) => window.interop.api.user.status.set('xa', t), token);
  const seen = await bob.presences.waitFor(
    (p) => bareJid(p.from) === carol && p.status === token,
    10000,
    `bob sees carol's status ${token}`,
  );
  check(seen.show === 'xa', `bob saw show ${seen.show}, expected xa`);
  await page.page.screenshot({ path: ctx.artifact('presence.png') });
  ctx.note(`roster shows bob online, then dnd; bob sees carol's xa + status text; screenshot ${ctx.rel(ctx.artifact('presence.png'))}`);
  await bob.disconnect();
  await page.logout();
}

async function converseWrongPassword(ctx) {
  const t0 = Date.now();
  const page = await ctx.converse('carol', { password: 'not-the-password', waitLogin: false });
  // The login form comes back with an error the user can read.
  const feedback = page.page.locator('#converse-login .conn-feedback.alert-danger .feedback-message');
  await feedback.waitFor({ state: 'visible', timeout: 15000 }).catch(async (e) => {
    const c = await page.connection().catch(() => ({}));
    throw new CheckError(`no visible login error within 15 s (${e.message.split('\n')[0]}); connection: ${JSON.stringify(c)}`);
  });
  const ms = Date.now() - t0;
  const text = (await feedback.textContent()).trim();
  check(/password|not-authorized|credentials/i.test(text), `the login error does not name the credentials: "${text}"`);
  const c = await page.connection();
  check(!c.connected, 'Converse says it is connected after a wrong password');
  await page.page.locator('#converse-login input[name="password"]').waitFor({ state: 'visible', timeout: 5000 });
  await page.page.screenshot({ path: ctx.artifact('auth-failure.png') });
  ctx.note(`"${text}" shown on the login form ${ms} ms after the page was opened; screenshot ${ctx.rel(ctx.artifact('auth-failure.png'))}`);
}

async function converseLogout(ctx) {
  const bob = await ctx.fixture('bob');
  const page = await ctx.converse('carol');
  ctx.note(await checkConverseTransport(ctx, page));
  // This page's own resource (not one a previous scenario may have left).
  const { jid: pageJid } = await page.connection();
  const avail = await bob.presences.waitFor((p) => p.from === pageJid && p.type === 'available', 10000, `bob sees ${pageJid} available`);
  // Through the UI: profile -> "Log out" -> confirm.
  await page.page.locator('a.show-profile').first().click();
  await page.page.getByRole('button', { name: 'Log out' }).click();
  const confirm = page.page.getByRole('button', { name: 'Confirm', exact: true });
  await confirm.waitFor({ state: 'visible', timeout: 10000 });
  const t0 = Date.now();
  await confirm.click();
  await page.page.locator('#converse-login input[name="password"]').waitFor({ state: 'visible', timeout: 10000 });
  await bob.presences.waitFor((p) => p.from === avail.from && p.type === 'unavailable', 10000, `bob sees ${pageJid} unavailable`);
  const ms = Date.now() - t0;
  const c = await page.connection();
  check(!c.connected, `Converse still connected after logout: ${JSON.stringify(c)}`);
  await page.page.screenshot({ path: ctx.artifact('logout.png') });
  ctx.note(`login form back and bob saw carol unavailable ${ms} ms after confirming; screenshot ${ctx.rel(ctx.artifact('logout.png'))}`);
  check(ms <= LOGOUT_LIMIT_MS, `logout took ${ms} ms (limit ${LOGOUT_LIMIT_MS} ms)`);
}

/** Converse's network drops (every connection reset), then is down for 2 s. */
async function converseReconnect(ctx) {
  // The contact talks to the server directly, so the drop hits only Converse.
  const bob = await ctx.fixture('bob');
  const page = await ctx.converse('carol', { autoReconnect: true });
  ctx.note(await checkConverseTransport(ctx, page));
  const before = await page.connection();
  const proxy = ctx.proxy();
  const carol = jidOf('carol');
  const { jid: pageJid } = await page.connection();
  await bob.presences.waitFor((p) => p.from === pageJid && p.type === 'available', 10000, `bob sees ${pageJid} available`);
  const tag = randomId('drop');
  await bob.sendMessage(carol, `${tag} #1`);
  await openChatWith(page, 'bob', `${tag} #1`);
  await sleep(500); // a BOSH long-poll is now held

  const reconnects = async () => (await page.events()).filter((e) => e === 'reconnected').length;
  const phase = async (name, drop, first) => {
    const cutAt = Date.now();
    const seen = await reconnects();
    const presencesBefore = bob.presences.items.length;
    drop();
    if (before.type === 'bosh') {
      // Strophe's BOSH keeps its session and retries the cut requests by
      // itself: these messages are sent while it is cut off.
      await sleep(300);
    } else {
      // A WebSocket client logs in again; send once it is back, as the
      // Node cells do (Converse resumes with XEP-0198 where it can).
      const deadline = Date.now() + 30000;
      while ((await reconnects()) <= seen) {
        if (Date.now() > deadline) throw new CheckError(`${name}: Converse did not reconnect within 30 s`);
        await sleep(200);
      }
    }
    const c = await page.connection();
    if (before.type !== 'bosh' && !c.resumed) {
      // A new session, not a resumed one: messages to the bare JID only
      // reach it once its initial presence is out (before that the server
      // has no available resource for carol and bounces them).
      await bob.presences.waitFor(
        (p) => bob.presences.items.indexOf(p) >= presencesBefore && bareJid(p.from) === carol && p.type === 'available',
        15000,
        `bob sees carol available again after ${name}`,
      );
    }
    ctx.note(`${name}: ${before.type === 'bosh' ? 'Strophe retries its requests' : `reconnected over ${c.type}, XEP-0198 resumed=${c.resumed}`}`);
    await sendSequence(bob, carol, tag, 3, first);
    await expectShown(page, tag, first + 2, 45000, `after ${name}`);
    return cutAt;
  };
  const cutAt = await phase('phase 1: all connections reset', () => proxy.cut(), 2);
  await phase('phase 2: network down for 2 s', () => proxy.down(2000), 5);
  const after = await page.connection();
  check(after.connected, `Converse is not connected after the drops: ${JSON.stringify(after)}`);
  if (before.type === 'bosh' && after.type === 'bosh') {
    // The same BOSH session continued: same sid, and the request cut in
    // flight was sent again with its rid.
    const ridsBefore = proxy.fromClients.filter((x) => x.t < cutAt).map((x) => ridOf(x.data)).filter(Boolean);
    const lastRid = Math.max(...ridsBefore);
    const resent = proxy.fromClients.some((x) => x.t >= cutAt && ridOf(x.data) === lastRid);
    ctx.note(`BOSH sid ${before.sid} -> ${after.sid}; rid ${lastRid} ${resent ? 'resent after the cut' : 'not resent'}`);
    check(after.sid === before.sid, `BOSH sid changed from ${before.sid} to ${after.sid}: a new session instead of a recovered one`);
    check(resent, `Converse did not resend rid ${lastRid} after the cut`);
  }
  const back = `Back from Converse ${randomId('back')}`;
  await typeInConverse(page, back);
  await bob.messages.waitFor((m) => m.body === back, 15000, 'bob gets a message typed after the drops');
  await page.page.screenshot({ path: ctx.artifact('reconnect.png') });
  ctx.note(`messages 1..7 shown once each, in order; screenshot ${ctx.rel(ctx.artifact('reconnect.png'))}`);
}

// ---------------------------------------------------------------------------

/** Scenario id -> { title, fn, timeoutMs }. Order = column order in the table. */
export const SCENARIOS = {
  'login-plain': {
    title: 'login SASL PLAIN',
    doc: 'Only PLAIN is enabled in the client; the <auth/> on the wire names PLAIN; a full JID is bound; clean logout.',
    fn: (ctx) => login(ctx, 'PLAIN'),
  },
  'login-scram': {
    title: 'login SCRAM-SHA-1',
    doc: 'Only SCRAM-SHA-1 is enabled in the client; as above.',
    fn: (ctx) => login(ctx, 'SCRAM-SHA-1'),
  },
  roster: {
    title: 'roster get/set',
    doc: 'The roster lists bob and carol (subscription both, name, group); a roster set adds an item seen by the next get.',
    fn: roster,
  },
  presence: {
    title: 'presence',
    doc: "A helper client (bob) sees the client's presence with its status text, and the client sees bob's presence and status change.",
    fn: presence,
  },
  messages: {
    title: '50 msgs each way, once, in order',
    doc: 'alice on the cell\'s client and bob on another transport through xmpp-edge (another client library too where there is one; the helper client on direct TCP if no other cell runs) send 50 sequence-numbered messages to each other at once; each side gets exactly 1..50 in order, no duplicates.',
    fn: messages,
    timeoutMs: 120000,
  },
  'two-resources': {
    title: 'same user, two resources',
    doc: 'alice logs in twice; each resource sees the other, gets only the message addressed to its full JID, and sees the other leave.',
    fn: twoResources,
  },
  'wrong-password': {
    title: 'wrong password',
    doc: 'A wrong password ends in an authentication failure reported by the client within 15 s (not a hang or a connection error).',
    fn: wrongPassword,
  },
  logout: {
    title: 'clean logout',
    doc: 'The client logs out (within 3 s: the close handshake on loopback takes milliseconds) and the contact sees its unavailable presence.',
    fn: logout,
  },
  reconnect: {
    title: 'network drop + reconnect',
    doc: 'A proxy resets every client connection, later refuses connections for 2 s. BOSH: the client resends its rid and keeps its sid. WebSocket: the client reconnects and resumes (XEP-0198). 15 messages sent around the drops arrive once and in order; the client can still send.',
    fn: reconnect,
    timeoutMs: 120000,
  },
  'converse-login-plain': {
    title: 'login SASL PLAIN + roster',
    doc: "Converse.js in headless Chromium, given only Strophe's PLAIN mechanism, logs in as carol over its cell's transport (checked in the page; discovery: host-meta fetched from https://localhost and a discovered endpoint used) and lists her contacts (screenshot *-converse-login-plain-roster.png).",
    fn: (ctx) => converseLogin(ctx, 'PLAIN'),
    timeoutMs: 90000,
  },
  'converse-login-scram': {
    title: 'login SCRAM-SHA-1 + roster',
    doc: 'As above with only SCRAM-SHA-1 (screenshot *-converse-login-scram-roster.png). The other Converse scenarios leave the choice to Converse (the notes say which it took).',
    fn: (ctx) => converseLogin(ctx, 'SCRAM-SHA-1'),
    timeoutMs: 90000,
  },
  'converse-receive': {
    title: 'received message shown + reply',
    doc: 'Strophe.js over BOSH through xmpp-edge sends carol a message; the page shows it after a click on the contact (screenshot *-message.png); a burst of 20 more is shown once each, in order; a reply typed in Converse reaches the sender.',
    fn: converseReceive,
    timeoutMs: 90000,
  },
  'converse-presence': {
    title: 'presence',
    doc: "bob (Strophe.js over BOSH through xmpp-edge) and Converse see each other available; bob's \"dnd\" shows in Converse's roster; a status set in Converse reaches bob with its text (screenshot *-presence.png).",
    fn: conversePresence,
    timeoutMs: 90000,
  },
  'converse-wrong-password': {
    title: 'wrong password',
    doc: 'A wrong password brings back the login form with a visible error about the credentials within 15 s (screenshot *-auth-failure.png).',
    fn: converseWrongPassword,
    timeoutMs: 60000,
  },
  'converse-logout': {
    title: 'clean logout',
    doc: 'Log out through the UI (profile, "Log out", confirm): within 3 s the login form is back and the contact sees carol unavailable (screenshot *-logout.png).',
    fn: converseLogout,
    timeoutMs: 60000,
  },
  'converse-reconnect': {
    title: 'network drop + reconnect',
    doc: 'With auto_reconnect on, a proxy resets every connection of the page, later refuses connections for 2 s; messages sent around the drops are shown once each and in order, and Converse can still send. BOSH: same sid, the cut request resent with its rid.',
    fn: converseReconnect,
    timeoutMs: 120000,
  },
};

export const NODE_CLIENT_SCENARIOS = [
  'login-plain',
  'login-scram',
  'roster',
  'presence',
  'messages',
  'two-resources',
  'wrong-password',
  'logout',
  'reconnect',
];
export const CONVERSE_SCENARIOS = [
  'converse-login-plain',
  'converse-login-scram',
  'converse-receive',
  'converse-presence',
  'converse-wrong-password',
  'converse-logout',
  'converse-reconnect',
];

