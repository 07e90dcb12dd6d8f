import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { accessSync, closeSync, constants, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from './free-port.js';
import { waitFor } from './wait.js';

// A real S3 implementation for the S3-facing tests, beside s3rver (a mock that answers as it was
// written to): Ceph's RADOS Gateway on a fresh one-node cluster of its own — one mon, one OSD on
// memstore (objects in RAM), pools of size 1, no cephx, no mgr (I/O needs none; RGW creates its pools
// through the mon) — in a temporary directory, on free ports, with one S3 user with fixed keys.
// Needs Debian's radosgw, ceph-mon, ceph-osd and ceph-common (haveRgw()).

export interface TestRgw {
  /** http://127.0.0.1:<port>, path-style addressing only (no virtual hosts, no TLS) */
  endpoint: string;
  port: number;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** radosgw's version, e.g. 16.2.15 */
  version: string;
  /** the cluster's directory (config, logs, mon store); stop() removes it */
  dir: string;
  stop(): Promise<void>;
}

const TOOLS = ['radosgw', 'ceph-mon', 'ceph-osd', 'radosgw-admin', 'ceph', 'monmaptool', 'ceph-authtool'];
const CREDENTIALS = { accessKeyId: 'TESTRGWACCESSKEY0000', secretAccessKey: 'test-rgw-secret-key-0123456789abcdefghij' };

// the daemons' own output (stdout/stderr) and their log_file, for error messages
const DAEMON_LOGS = {
  'ceph-mon': ['mon.a.out', 'mon.a.log'],
  'ceph-osd': ['osd.0.out', 'osd.0.log'],
  radosgw: ['rgw.out', 'client.rgw.gw.log'],
};

/** Whether the Ceph tools startRgw needs are on the PATH (a PATH lookup: `ceph --version` starts a Python). */
export function haveRgw(): boolean {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  return TOOLS.every((tool) =>
    dirs.some((d) => {
      try {
        accessSync(join(d, tool), constants.X_OK);
        return statSync(join(d, tool)).isFile();
      } catch {
        return false;
      }
    }),
  );
}

function cephConf(dir: string, fsid: string, monV2: number, monV1: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon_host = [v2:127.0.0.1:${monV2},v1:127.0.0.1:${monV1}]
mon_initial_members = a
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_bind_ipv6 = false
public_network = 127.0.0.0/8
run_dir = ${dir}/run
admin_socket = ${dir}/run/$name.asok
log_file = ${dir}/log/$name.log
keyring = ${dir}/keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
mon_data_avail_crit = 1
mon_data_avail_warn = 2
debug_ms = 0

[mon]
mon_data = ${dir}/mon/ceph-$id
mon_allow_pool_delete = true
# a lone mon need not batch its updates: with the default 1 s proposal interval, every pool
# radosgw creates (at its start, then on the first CreateBucket and PutObject) waits for one
paxos_propose_interval = 0.05
paxos_min_wait = 0.01

[osd]
osd_data = ${dir}/osd/ceph-$id
osd_objectstore = memstore
memstore_device_bytes = 4294967296
osd_op_num_shards = 1
osd_op_num_threads_per_shard = 2
osd_memory_target = 939524096

[client]
rgw_data = ${dir}/rgw
log_file = ${dir}/log/$name.log

[client.rgw.gw]
rgw_frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw_thread_pool_size = 64
rgw_enable_usage_log = false
rgw_dns_name = localhost
# radosgw's built-in defaults ask for cephx and a secure mon connection; this cluster has no cephx
ms_mon_client_mode = crc
auth_client_required = none
`;
}

function lastLines(text: string, n: number): string {
  return text
    .split('\n')
    .filter((line) => line.trim())
    .slice(-n)
    .join('\n');
}

/** SIGKILL to the child's process group (its own: spawned detached), unless it has already exited. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function exited(child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    child.once('exit', done);
    child.once('error', done);
  });
}

/**
 * A fresh cluster with radosgw on a free port. Bounded by `timeoutMs` as a whole; on failure, what it
 * started is stopped and one Error names the step and quotes the relevant logs' last lines.
 */
export async function startRgw({ timeoutMs = 120_000 }: { timeoutMs?: number } = {}): Promise<TestRgw> {
  const deadline = Date.now() + timeoutMs;
  const dir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-rgw-'));
  const conf = join(dir, 'ceph.conf');
  const C = ['-c', conf];
  const logPath = (name: string) => join(dir, 'log', name);
  const env = { ...process.env, CEPH_CONF: conf };
  // every process group started here that may still run: stop() and the exit hook signal these only
  const live = new Set<ChildProcess>();
  let starting = true;

  // a daemon exiting while we start fails the start at once (raced against every step)
  let daemonDied: (error: Error) => void = () => undefined;
  const died = new Promise<never>((_, reject) => {
    daemonDied = reject;
  });
  died.catch(() => undefined);
  const watch = <T>(work: Promise<T>): Promise<T> => {
    work.catch(() => undefined); // when `died` wins, the step's own failure is of no interest
    return Promise.race([work, died]);
  };

  // so that the test process's exit leaves no daemon behind, even without stop()
  const onExit = () => {
    for (const child of live) killGroup(child);
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      process.off('exit', onExit);
      const children = [...live];
      for (const child of children) killGroup(child);
      await Promise.all(children.map((child) => exited(child)));
      rmSync(dir, { recursive: true, force: true });
    })());

  const launch = (cmd: string, args: string[], stdio: StdioOptions): ChildProcess => {
    const child = spawn(cmd, args, { detached: true, stdio, env });
    live.add(child);
    const forget = () => live.delete(child);
    child.once('exit', forget);
    child.once('error', forget);
    return child;
  };

  /** A helper command, bounded by `limitMs` and by what is left of the start's time; resolves with its stdout. */
  const run = (cmd: string, args: string[], limitMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const what = [cmd, ...args].filter((a) => a !== '-c' && a !== conf).join(' ');
      const ms = Math.min(limitMs, deadline - Date.now());
      if (!starting) return reject(new Error(`${what}: start abandoned`));
      if (ms <= 0) return reject(new Error(`${what}: out of time (timeoutMs ${timeoutMs})`));
      const child = launch(cmd, args, ['ignore', 'pipe', 'pipe']);
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      child.stdout?.on('data', (chunk: Buffer) => {
        stdout += chunk;
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk;
      });
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup(child);
      }, ms);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`${what}: ${error.message}`));
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) return resolve(stdout);
        const why = timedOut ? `did not finish within ${ms} ms` : `exited with ${code ?? signal}`;
        const output = lastLines(stderr || stdout, 5);
        reject(new Error(`${what} ${why}${output ? `:\n${output}` : ''}`));
      });
    });

  /** A daemon in the foreground (-f), in its own process group, its output in log/<out>. */
  const daemon = (cmd: keyof typeof DAEMON_LOGS, args: string[], out: string): ChildProcess => {
    const fd = openSync(logPath(out), 'w');
    let child: ChildProcess;
    try {
      child = launch(cmd, args, ['ignore', fd, fd]);
    } finally {
      closeSync(fd);
    }
    // a test that forgets stop() must not keep its process alive: the exit hook then kills the group
    child.unref();
    const fail = (why: string) => {
      if (starting) daemonDied(Object.assign(new Error(`${cmd} ${why}`), { logs: DAEMON_LOGS[cmd] }));
    };
    child.once('exit', (code, signal) => fail(`exited (${code === null ? signal : `code ${code}`})`));
    child.once('error', (error) => fail(`could not start: ${error.message}`));
    return child;
  };

  /** waitFor, bounded by what is left of the start's time, given up once the start has failed */
  const until = (what: string, check: () => Promise<boolean>, intervalMs = 250): Promise<boolean> =>
    watch(waitFor<boolean>(() => (starting ? check() : true), { what, timeoutMs: Math.max(0, deadline - Date.now()), intervalMs }));

  const tails = (files: string[]) =>
    files
      .map((file) => {
        try {
          const text = lastLines(readFileSync(logPath(file), 'utf8'), 8);
          return text ? `\n--- ${file} (last lines)\n${text}` : '';
        } catch {
          return '';
        }
      })
      .join('');

  let step = 'preparing the directory';
  let logs: string[] = [];
  const at = (name: string, files: string[] = []) => {
    step = name;
    logs = files;
  };

  try {
    const ports = new Set<number>();
    while (ports.size < 3) ports.add(await freePort());
    const [monV2, monV1, port] = [...ports] as [number, number, number];
    for (const sub of ['run', 'log', 'mon/ceph-a', 'osd/ceph-0', 'rgw']) mkdirSync(join(dir, sub), { recursive: true });
    const fsid = randomUUID();
    writeFileSync(conf, cephConf(dir, fsid, monV2, monV1, port));

    at('radosgw --version');
    const version = (await run('radosgw', ['--version'], 10_000)).split(' ')[2] ?? 'unknown';

    // keyrings are not checked (auth none), but mkfs wants one to exist
    at('ceph-authtool (keyring)');
    const keyring = join(dir, 'keyring');
    await run('ceph-authtool', ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *'], 10_000);
    await run(
      'ceph-authtool',
      [keyring, '--gen-key', '-n', 'client.admin', '--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *', '--cap', 'mds', 'allow *', '--cap', 'mgr', 'allow *'],
      10_000,
    );

    at('monmaptool');
    const monmap = join(dir, 'monmap');
    await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monV2},v1:127.0.0.1:${monV1}]`, monmap], 10_000);
    at('ceph-mon --mkfs', ['mon.a.log']);
    await run('ceph-mon', [...C, '--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', keyring], 30_000);

    at(`ceph-mon on ports ${monV2}/${monV1} (mon stat)`, DAEMON_LOGS['ceph-mon']);
    daemon('ceph-mon', [...C, '-f', '-i', 'a'], 'mon.a.out');
    await until('the mon to answer', async () => {
      await run('ceph', [...C, '--connect-timeout', '3', 'mon', 'stat'], 10_000);
      return true;
    });

    at('ceph osd new', DAEMON_LOGS['ceph-mon']);
    const osdUuid = randomUUID();
    const osdId = (await watch(run('ceph', [...C, 'osd', 'new', osdUuid], 20_000))).trim();
    if (osdId !== '0') throw new Error(`expected osd.0, got osd.${osdId}`);
    at('ceph-osd --mkfs', ['osd.0.log']);
    await watch(run('ceph-osd', [...C, '-i', '0', '--mkfs', '--osd-uuid', osdUuid], 30_000));

    at('ceph-osd (osd.0 up in)', DAEMON_LOGS['ceph-osd']);
    daemon('ceph-osd', [...C, '-f', '-i', '0'], 'osd.0.out');
    await until('osd.0 up in', async () => /^osd\.0 up +in/m.test(await run('ceph', [...C, '--connect-timeout', '3', 'osd', 'dump'], 10_000)));

    // radosgw creates its pools and the default realm, zonegroup and zone on its first start
    at(`radosgw on 127.0.0.1:${port}`, DAEMON_LOGS.radosgw);
    daemon('radosgw', [...C, '-f', '-n', 'client.rgw.gw'], 'rgw.out');
    const endpoint = `http://127.0.0.1:${port}`;
    await until(`radosgw to answer HTTP on ${port}`, async () => {
      const response = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(2_000) });
      await response.body?.cancel();
      return true; // any status: it answers
    });

    at('radosgw-admin user create', ['client.admin.log', ...DAEMON_LOGS.radosgw]);
    await watch(
      run(
        'radosgw-admin',
        [
          ...C,
          'user',
          'create',
          '--uid=tester',
          '--display-name=tester',
          `--access-key=${CREDENTIALS.accessKeyId}`,
          `--secret-key=${CREDENTIALS.secretAccessKey}`,
        ],
        60_000,
      ),
    );

    starting = false;
    return { endpoint, port, credentials: { ...CREDENTIALS }, version, dir, stop };
  } catch (error) {
    starting = false;
    const files = (error as { logs?: string[] }).logs ?? logs;
    const message = `startRgw: ${step} failed: ${(error as Error).message}${tails(files)}`;
    await stop();
    throw new Error(message);
  }
}
