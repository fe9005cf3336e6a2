// Every child process the suite starts goes through here, so that all of
// them are stopped at the end, on failure, on SIGINT/SIGTERM, and even if
// this Node process is killed outright (a shell watchdog per child).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { sleep } from './util.mjs';

const children = new Set();

/**
 * Starts `cmd args` in its own process group, stdout and stderr appended to
 * `logFile`. Returns a handle: { name, pid, child, exited (promise), stop() }.
 */
export function startProcess(name, cmd, args, { logFile, env, cwd, onStderr } = {}) {
  const out = logFile ? fs.openSync(logFile, 'a') : 'ignore';
  const child = spawn(cmd, args, {
    cwd,
    env: env ?? process.env,
    detached: true, // own process group: stop() kills helpers too (chromium)
    stdio: ['ignore', out, onStderr ? 'pipe' : out],
  });
  if (typeof out === 'number') fs.closeSync(out);
  const handle = {
    name,
    pid: child.pid,
    child,
    exitCode: null,
    exited: new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        handle.exitCode = code ?? signal;
        children.delete(handle);
        resolve(code ?? signal);
      });
      child.once('error', (err) => {
        handle.exitCode = String(err);
        children.delete(handle);
        resolve(String(err));
      });
    }),
    async stop(graceMs = 3000) {
      await stopHandle(handle, graceMs);
    },
  };
  if (onStderr) {
    const log = logFile ? fs.createWriteStream(logFile, { flags: 'a' }) : null;
    child.stderr.on('data', (chunk) => {
      log?.write(chunk);
      onStderr(chunk.toString());
    });
    child.once('exit', () => log?.end());
  }
  children.add(handle);
  if (child.pid) {
    // If this Node process dies without cleaning up (SIGKILL), the
    // watchdog kills the child's whole process group.
    const watchdog = spawn(
      'sh',
      [
        '-c',
        `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${child.pid} 2>/dev/null; do sleep 1; done; kill -9 -${child.pid} 2>/dev/null`,
      ],
      { detached: true, stdio: 'ignore' },
    );
    watchdog.unref();
  }
  return handle;
}

function signalGroup(pid, sig) {
  try {
    process.kill(-pid, sig);
    return true;
  } catch {
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false;
    }
  }
}

async function stopHandle(handle, graceMs) {
  if (!handle.pid) return;
  if (handle.exitCode === null) {
    signalGroup(handle.pid, 'SIGTERM');
    const done = await Promise.race([handle.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!done) {
      signalGroup(handle.pid, 'SIGKILL');
      await Promise.race([handle.exited, sleep(2000)]);
    }
  }
  // Helpers left in the group (chromium's zygotes) go too.
  signalGroup(handle.pid, 'SIGKILL');
  children.delete(handle);
}

/** Stops every child still running. */
export async function stopAll() {
  await Promise.all([...children].map((h) => stopHandle(h, 3000)));
}

/** Synchronous last resort (process 'exit' handler): SIGKILL every group. */
export function killAllSync() {
  for (const h of children) {
    if (h.pid) signalGroup(h.pid, 'SIGKILL');
  }
  children.clear();
}

export function runningChildren() {
  return [...children].map((h) => `${h.name} (pid ${h.pid})`);
}
