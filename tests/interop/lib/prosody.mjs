// A private Prosody on a free loopback port, configured from the Rust
// integration tests' template tests/prosody/prosody.cfg.lua (filled in the
// same way as tests/common/prosody.rs does), with the test users registered.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startProcess } from './procs.mjs';
import { freePort, waitListening, withTimeout } from './util.mjs';

const run = promisify(execFile);

export const DOMAIN = 'localhost';
export const USERS = ['alice', 'bob', 'carol'];
export const password = (user) => `${user}-secret`;

function findProsody() {
  for (const dir of ['/usr/bin', '/usr/local/bin', '/usr/sbin']) {
    const p = path.join(dir, 'prosody');
    if (fs.existsSync(p)) return p;
  }
  throw new Error('Prosody is not installed: apt-get install -y prosody');
}

/**
 * Starts Prosody in `dir` (created). Options:
 *  - template: path of the Lua config template
 *  - httpPort: also enable Prosody's own BOSH and WebSocket endpoints on
 *    this port (only for `run.mjs --direct`, the suite's self-check; the
 *    template itself is not changed)
 *  - logLevel: Prosody log level (default "info")
 */
export async function startProsody({ dir, template, httpPort = null, logLevel = 'info' }) {
  const prosody = findProsody();
  const port = await freePort();
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'certs'), { recursive: true });
  // The same values tests/common/prosody.rs uses for a plain loopback
  // server (no TLS); an unknown placeholder is an error, not a guess.
  const values = {
    DIR: dir,
    C2S_PORT: String(port),
    LOGLEVEL: logLevel,
    DIRECT_TLS_PORT: '',
    REQUIRE_ENCRYPTION: 'false',
    VHOST_OPTIONS: '',
  };
  const unknown = new Set();
  let config = fs
    .readFileSync(template, 'utf8')
    .split('\n')
    .map((line) =>
      line.trimStart().startsWith('--')
        ? line // comments mention "@PLACEHOLDERS@"
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
        'add a default to tests/interop/lib/prosody.mjs (see tests/common/prosody.rs)',
    );
  }
  if (httpPort) {
    config = config.replace('modules_enabled = {', 'modules_enabled = {\n  "bosh"; "websocket";');
    config = config.replace(/^http_ports = .*$/m, `http_ports = { ${httpPort} }`);
    config = config.replace(
      /^VirtualHost/m,
      [
        'http_interfaces = { "127.0.0.1" }',
        'consider_bosh_secure = true',
        'consider_websocket_secure = true',
        'cross_domain_bosh = true',
        'cross_domain_websocket = true',
        '',
        'VirtualHost',
      ].join('\n'),
    );
  }
  const configPath = path.join(dir, 'prosody.cfg.lua');
  fs.writeFileSync(configPath, config);
  for (const user of USERS) {
    try {
      await withTimeout(
        run('prosodyctl', ['--config', configPath, 'register', user, DOMAIN, password(user)]),
        20000,
        `prosodyctl register ${user}`,
      );
    } catch (e) {
      throw new Error(`prosodyctl register ${user} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  }
  let version = 'unknown';
  try {
    const { stdout } = await withTimeout(run('prosodyctl', ['--config', configPath, 'about']), 20000, 'prosodyctl about');
    version = /^Prosody (\S+)/m.exec(stdout)?.[1] ?? version;
  } catch {
    // the version is only informative
  }
  const proc = startProcess('prosody', prosody, ['-F', '--config', configPath], {
    logFile: path.join(dir, 'prosody.stdout.log'),
  });
  try {
    await waitListening(port, 15000, 'prosody c2s');
    if (httpPort) await waitListening(httpPort, 15000, 'prosody http');
  } catch (e) {
    await proc.stop();
    throw new Error(`${e.message}\nprosody log:\n${readLog(dir)}`);
  }
  return {
    name: 'prosody',
    label: `Prosody ${version}`,
    version,
    port,
    addr: `127.0.0.1:${port}`,
    httpPort,
    dir,
    configPath,
    proc,
    log: () => readLog(dir),
    stop: () => proc.stop(),
  };
}

function readLog(dir) {
  try {
    return fs.readFileSync(path.join(dir, 'prosody.log'), 'utf8');
  } catch {
    return '';
  }
}
