#!/usr/bin/env node
// `npm start`: the proxy and one uploader together, as the original single container ran. When
// REDIS_URL is not set, a Redis of its own too (own-redis.mjs): started first, stopped last, after
// the services have finished what they had in flight, so that its append-only file holds every
// queued image. With `--with-imgproxy` (the all-in-one image) it also runs imgproxy itself on
// 127.0.0.1:8081. When any of them exits, the others are stopped and this exits with the first
// one's code; SIGTERM and SIGINT are passed on to all, so each can finish what it has in flight.
// With UPLOADER_IN_PROXY=true the proxy and the uploader run in this process (in-process.mjs).
//
// Process managers should run `node scripts/start-all.mjs` itself: npm does not pass signals on
// (see the parent check at the end, which covers it anyway).
import '../packages/shared/dist/require-node.js';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { configOrExit } from '../packages/shared/dist/index.js';
import { SERVICE_NODE_FLAGS } from './node-flags.mjs';
import { OwnRedisError, startOwnRedis } from './own-redis.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const withImgproxy = process.argv.includes('--with-imgproxy');
const config = configOrExit(process.env, 'npm start');
// one process for both services, unless asked otherwise or several proxy processes serve
const inProcess = config.uploaderInProxy ?? config.proxy.workers === 1;

// By default the proxy's admin port is 9464 and the uploader's 9465. A METRICS_BIND set for both
// would clash: the uploader takes the next port, unless the port is 0 (any) or metrics are off.
function uploaderMetricsBind(bind) {
  const match = /^(.*):(\d+)$/.exec(bind ?? '');
  if (!match || match[2] === '0') return bind;
  return `${match[1]}:${Number(match[2]) + 1}`;
}

const children = new Map();
let exitCode;
let stopping = false;
let ownRedis;

function stopAll(signal) {
  for (const child of children.values()) {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  }
}

function onExit(name, code, signal) {
  if (!children.has(name)) return;
  children.delete(name);
  if (exitCode === undefined) {
    exitCode = code ?? (signal ? 1 : 0);
    if (code !== 0) console.error(`imgproxy-cache: ${name} exited (${signal ?? code}); stopping the other services`);
    stopAll('SIGTERM');
  }
  if (children.size === 0) void finish();
}

/** Every service has stopped: now the Redis, then this process. */
async function finish() {
  await ownRedis?.stop();
  process.exit(exitCode ?? 0);
}

function stop(signal) {
  if (stopping) return;
  stopping = true;
  if (exitCode === undefined) exitCode = 0;
  if (children.size === 0) void finish();
  else stopAll(signal);
}

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => stop(signal));

// `npm start` runs this under `sh`; on SIGTERM or SIGINT npm and sh end without passing it on. When
// the process that started us goes away, stop as if signalled, so that nothing is left holding the
// ports.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stop('SIGTERM');
}, 500).unref();

let env = process.env;
if (!config.redisUrlSet) {
  try {
    ownRedis = await startOwnRedis(config.dataDir, {
      log: (line) => process.stdout.write(`${JSON.stringify({ ...line, time: new Date().toISOString() })}\n`),
      onExit: (code, signal) => {
        if (stopping && children.size === 0) return; // stopped by finish()
        console.error(`imgproxy-cache: its Redis exited (${signal ?? code}); stopping the services`);
        exitCode ??= 1;
        stop('SIGTERM');
      },
    });
  } catch (error) {
    if (!(error instanceof OwnRedisError)) throw error;
    console.error(`imgproxy-cache npm start: ${error.message}`);
    process.exit(2);
  }
  if (stopping) await finish(); // signalled while the Redis started
  env = { ...process.env, REDIS_URL: ownRedis.url };
}

const uploaderEnv = env.METRICS_BIND ? { ...env, METRICS_BIND: uploaderMetricsBind(env.METRICS_BIND) } : env;
const services = inProcess
  ? {}
  : {
      proxy: { command: process.execPath, args: [...SERVICE_NODE_FLAGS, 'apps/proxy/dist/index.js'], env },
      uploader: { command: process.execPath, args: [...SERVICE_NODE_FLAGS, 'apps/uploader/dist/index.js'], env: uploaderEnv },
    };
if (withImgproxy) {
  // imgproxy reads IMGPROXY_BIND too: it listens inside, the proxy outside (as the Go tool did).
  // IMGPROXY_URL's default, http://127.0.0.1:8081, is where the proxy finds it.
  services.imgproxy = { command: 'imgproxy', args: [], env: { ...env, IMGPROXY_BIND: '127.0.0.1:8081' } };
}

for (const [name, { command, args, env: childEnv }] of Object.entries(services)) {
  const child = spawn(command, args, { cwd: root, stdio: 'inherit', env: childEnv });
  children.set(name, child);
  // a command that cannot start at all (imgproxy missing) emits 'error' and no 'exit'
  child.on('error', (error) => {
    console.error(`imgproxy-cache: could not start ${name}: ${error.message}`);
    onExit(name, 127, null);
  });
  child.on('exit', (code, signal) => onExit(name, code, signal));
}
if (inProcess) {
  // UPLOADER_IN_PROXY: both services in this process, which then runs with the services' flags
  const { startInProcess } = await import('./in-process.mjs');
  const unit = startInProcess(env, uploaderEnv);
  children.set('proxy and uploader', unit);
  unit.on('exit', (code, signal) => onExit('proxy and uploader', code, signal));
}
