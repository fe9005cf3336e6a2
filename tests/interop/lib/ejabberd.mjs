// A private ejabberd (Debian package `ejabberd`) on a free loopback port,
// configured from the Rust integration tests' template
// tests/ejabberd/ejabberd.yml and started the way tests/common/ejabberd.rs
// does: its own Erlang VM run directly with `erl` (not ejabberdctl), its own
// spool, logs and HOME in a temp directory, a unique node name on 127.0.0.1
// with its own cookie, no epmd, no resolver lookups (inetrc answers
// `localhost` from a file), and the test users registered by the node itself.

import fs from 'node:fs';
import path from 'node:path';
import { startProcess } from './procs.mjs';
import { DOMAIN, password, USERS } from './prosody.mjs';
import { freePort, sleep, TimeoutError, waitListening } from './util.mjs';

const ERL = '/usr/bin/erl';
const CTL = '/usr/sbin/ejabberdctl';
const START_TIMEOUT_MS = 60000;

/** The directory holding ejabberd's OTP application (ERL_LIBS), as Debian's ejabberdctl sets it; null if not installed. */
export function findEjabberd() {
  let ctl;
  try {
    ctl = fs.readFileSync(CTL, 'utf8');
  } catch {
    return null;
  }
  const line = ctl.split('\n').find((l) => l.trim().startsWith('ERL_LIBS='));
  const erlLibs = line ? line.trim().slice('ERL_LIBS='.length).replace(/^['"]|['"]$/g, '') : '/usr/lib/x86_64-linux-gnu';
  let hasApp = false;
  try {
    hasApp = fs
      .readdirSync(erlLibs)
      .some((e) => e.startsWith('ejabberd-') && fs.existsSync(path.join(erlLibs, e, 'ebin', 'ejabberd.app')));
  } catch {
    hasApp = false;
  }
  if (!hasApp || !fs.existsSync(ERL)) return null;
  const version = fs
    .readdirSync(erlLibs)
    .find((e) => e.startsWith('ejabberd-'))
    ?.slice('ejabberd-'.length);
  return { erlLibs, version: version ?? 'unknown' };
}

const erlString = (s) => `"${s.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;

export async function startEjabberd({ dir, template, logLevel = 'info' }) {
  const found = findEjabberd();
  if (!found) throw new Error('ejabberd is not installed: apt-get install -y ejabberd');
  const port = await freePort();
  let distPort = await freePort();
  while (distPort === port) distPort = await freePort();
  const values = { C2S_PORT: String(port), PROXY_PROTOCOL: 'false', LOGLEVEL: logLevel };
  const unknown = new Set();
  const config = fs
    .readFileSync(template, 'utf8')
    .split('\n')
    .map((line) =>
      line.trimStart().startsWith('#')
        ? line
        : line.replace(/@([A-Z][A-Z0-9_]*)@/g, (all, name) => {
            if (name in values) return values[name];
            unknown.add(name);
            return all;
          }),
    )
    .join('\n');
  if (unknown.size) {
    throw new Error(
      `${template} has placeholder(s) the interop suite does not fill: ${[...unknown].map((n) => `@${n}@`).join(', ')}; ` +
        'add a default to tests/interop/lib/ejabberd.mjs (see tests/common/ejabberd.rs)',
    );
  }
  for (const sub of ['spool', 'logs', 'modules', 'etc']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
  fs.writeFileSync(path.join(dir, 'ejabberd.yml'), config);
  // Host names come from these files only: no resolver, no DNS query.
  fs.writeFileSync(path.join(dir, 'etc', 'resolv.conf'), 'domain invalid\n');
  fs.writeFileSync(path.join(dir, 'etc', 'hosts'), '127.0.0.1 localhost\n');
  fs.writeFileSync(path.join(dir, 'inetrc'), '{lookup, [file]}.\n{host, {127,0,0,1}, ["localhost"]}.\n');

  const node = `xmpp-edge-interop-${process.pid}-${port}@127.0.0.1`;
  const cookie = `c${Date.now().toString(16)}${process.pid.toString(16)}${port}`;
  const ready = path.join(dir, 'registered');
  const users = USERS.map((u) => `{<<${erlString(u)}>>, <<${erlString(password(u))}>>}`).join(', ');
  const register =
    `Rs = [ejabberd_auth:try_register(U, <<${erlString(DOMAIN)}>>, P) || {U, P} <- [${users}]], ` +
    `ok = file:write_file(${erlString(ready)}, io_lib:format("~p.~n", [Rs])).`;
  const env = { ...process.env };
  for (const k of ['ERL_FLAGS', 'ERL_AFLAGS', 'ERL_ZFLAGS']) delete env[k];
  Object.assign(env, {
    HOME: dir,
    ERL_LIBS: found.erlLibs,
    ERL_INETRC: path.join(dir, 'inetrc'),
    ERL_INET_ETC_DIR: path.join(dir, 'etc'),
    // Registration with an epmd is attempted even with -erl_epmd_port; port 0 refuses at once.
    ERL_EPMD_PORT: '0',
    ERL_EPMD_ADDRESS: '127.0.0.1',
    ERL_CRASH_DUMP_BYTES: '0',
    ERL_CRASH_DUMP: path.join(dir, 'erl_crash.dump'),
    EJABBERD_CONFIG_PATH: path.join(dir, 'ejabberd.yml'),
    EJABBERD_LOG_PATH: path.join(dir, 'logs', 'ejabberd.log'),
    CONTRIB_MODULES_PATH: path.join(dir, 'modules'),
    CONTRIB_MODULES_CONF_DIR: path.join(dir, 'modules'),
  });
  const proc = startProcess(
    'ejabberd',
    ERL,
    [
      '-name', node, '-setcookie', cookie, '-noinput',
      '-erl_epmd_port', String(distPort), '-start_epmd', 'false',
      '-kernel', 'inet_dist_use_interface', '{127,0,0,1}',
      '-mnesia', 'dir', erlString(path.join(dir, 'spool')),
      '-s', 'ejabberd', '-eval', register,
    ],
    { logFile: path.join(dir, 'console.log'), env, cwd: dir },
  );
  const log = () => readFile(path.join(dir, 'logs', 'ejabberd.log'));
  const diagnostics = () => `--- erl console ---\n${readFile(path.join(dir, 'console.log'))}\n--- ejabberd.log ---\n${log()}`;
  const started = Date.now();
  try {
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`ejabberd exited during startup (${proc.exitCode})`);
      if (Date.now() - started > START_TIMEOUT_MS) throw new TimeoutError('ejabberd start', START_TIMEOUT_MS);
      const result = readFile(ready);
      if (result.endsWith('.\n')) {
        const want = `[${USERS.map(() => 'ok').join(',')}].`;
        if (result.trim() !== want) throw new Error(`registering the test users failed: ${result.trim()}`);
        break;
      }
      await sleep(50);
    }
    // The listener was started with the application; check anyway.
    await waitListening(port, Math.max(1000, START_TIMEOUT_MS - (Date.now() - started)), 'ejabberd c2s');
  } catch (e) {
    await proc.stop();
    throw new Error(`${e.message}\n${diagnostics()}`);
  }
  return {
    name: 'ejabberd',
    label: `ejabberd ${found.version}`,
    version: found.version,
    port,
    addr: `127.0.0.1:${port}`,
    httpPort: null,
    dir,
    proc,
    log,
    stop: () => proc.stop(),
  };
}

function readFile(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
