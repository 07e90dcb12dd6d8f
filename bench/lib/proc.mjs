// Child processes of the bench, and what /proc says about them: CPU seconds and resident memory.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

export const USER_HZ = 100;

export function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const listenable = (port) =>
  new Promise((resolve) => {
    const server = createServer()
      .once('error', () => resolve(false))
      .listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

/** A free port whose next one is free too (npm start gives the uploader the admin port + 1). */
export async function freePortPair() {
  for (;;) {
    const port = await freePort();
    if (port < 65535 && (await listenable(port + 1))) return port;
  }
}

export async function until(check, what, timeoutMs = 30_000, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const httpOk = (url) =>
  fetch(url).then(
    (r) => r.ok,
    () => false,
  );

function stat(pid) {
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
}

/** Direct children of a process. */
export function childrenOf(pid) {
  const out = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(stat(entry)[1]) === pid) out.push(Number(entry));
    } catch {}
  }
  return out;
}

export function cmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** CPU seconds (user + system, all threads) of a process, and of its descendants with `tree`. */
export function cpuSeconds(pid, tree = false) {
  let ticks = 0;
  try {
    const f = stat(pid);
    ticks = Number(f[11]) + Number(f[12]);
  } catch {}
  let total = ticks / USER_HZ;
  if (tree) for (const child of childrenOf(pid)) total += cpuSeconds(child, true);
  return total;
}

export function rssMiB(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
  } catch {
    return Number.NaN;
  }
}

/** The bench's children: logs in files (a pipe nobody reads would stall them), stopped at exit. */
export class Procs {
  constructor(dir) {
    this.dir = dir;
    this.all = [];
  }

  /**
   * `detached` gives the child a session of its own, hence a scheduling group of its own
   * (autogroup), as a container or a systemd unit has; without it, it shares the bench's group,
   * as `npm start` shares one.
   */
  start(name, command, args, env = {}, { detached = false, cwd } = {}) {
    const log = join(this.dir, `${name.replace(/\W+/g, '-')}-${this.all.length}.log`);
    const fd = openSync(log, 'w');
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', fd, fd], detached });
    closeSync(fd);
    child.label = name;
    child.output = () => readFileSync(log, 'utf8');
    child.exited = new Promise((resolve) => child.once('exit', resolve));
    this.all.push(child);
    return child;
  }

  async stop(child, signal = 'SIGTERM', timeoutMs = 25_000) {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await child.exited;
    clearTimeout(timer);
  }

  async stopAll() {
    await Promise.all(this.all.map((c) => this.stop(c)));
  }
}
