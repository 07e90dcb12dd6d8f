import { fileURLToPath } from 'node:url';
import { type Env, type LauncherConfig, Supervisor, type Unit } from '@imgproxy-cache/shared';
import { ChildUnit } from './child-unit.js';
import { SERVICE_NODE_FLAGS } from './node-flags.js';
import { type OwnRedis, startOwnRedis } from './own-redis.js';

// `npm start`: the proxy and one uploader together, as the original single container ran, in this
// process (UPLOADER_IN_PROXY) or a child each. When REDIS_URL is not set, a Redis of its own too:
// started first, stopped last, after the services have finished what they had in flight, so that
// its append-only file holds every queued image. With `--with-imgproxy` (the all-in-one image) it
// also runs imgproxy itself on 127.0.0.1:8081. When any of them exits, the others are stopped and
// this exits with the first one's code; SIGTERM and SIGINT are passed on to all, so each can
// finish what it has in flight.

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

export interface LaunchOptions {
  withImgproxy: boolean;
}

/** Runs until every service has stopped; resolves the exit code. */
export async function launch(config: LauncherConfig, env: Env, options: LaunchOptions): Promise<number> {
  // one process for both services, unless asked otherwise or several proxy processes serve
  const inProcess = config.uploaderInProxy ?? config.proxy.workers === 1;
  let redis: OwnRedis | undefined;

  const supervisor = new Supervisor({
    ended(unit, { code, signal }) {
      if (code !== 0) console.error(`imgproxy-cache: ${unit.name} exited (${signal ?? code}); stopping the other services`);
      return code ?? (signal ? 1 : 0);
    },
    async afterAll() {
      await redis?.stop();
    },
  });

  // Signals (and the parent's end) before the services run stop the start-up instead.
  let started = false;
  let stopEarly = false;
  const stop = (signal: NodeJS.Signals) => {
    if (started) supervisor.stop(0, signal);
    else if (!stopEarly) {
      stopEarly = true;
      const own = config.redisUrlSet ? '' : ' (its Redis is stopped as soon as it has started)';
      console.error(`imgproxy-cache: ${signal} before the services started: stopping without starting them${own}`);
    }
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => stop(signal));
  watchParent(() => stop('SIGTERM'));

  if (!config.redisUrlSet) {
    redis = await startOwnRedis(config.dataDir, {
      log: (line) => process.stdout.write(`${JSON.stringify({ ...line, time: new Date().toISOString() })}\n`),
      onExit: (code, signal) => {
        console.error(`imgproxy-cache: its Redis exited (${signal ?? code}); stopping the services`);
        supervisor.stop(1);
      },
    });
    env = { ...env, REDIS_URL: redis.url };
  }
  if (!stopEarly) {
    const units = inProcess ? [await inProcessUnit(env)] : services(env);
    if (options.withImgproxy) {
      // imgproxy reads IMGPROXY_BIND too: it listens inside, the proxy outside (as the Go tool did).
      // IMGPROXY_URL's default, http://127.0.0.1:8081, is where the proxy finds it.
      units.push(new ChildUnit('imgproxy', 'imgproxy', [], { cwd: ROOT, env: { ...env, IMGPROXY_BIND: '127.0.0.1:8081' } }));
    }
    for (const unit of units) supervisor.add(unit);
  }
  started = true;
  if (stopEarly) supervisor.stop(0);
  return supervisor.finished;
}

/** The proxy and the uploader, a child process each. */
function services(env: Env): Unit[] {
  const node = (name: string, childEnv: Env) =>
    new ChildUnit(name, process.execPath, [...SERVICE_NODE_FLAGS, `apps/${name}/dist/index.js`], { cwd: ROOT, env: childEnv });
  return [node('proxy', env), node('uploader', uploaderEnv(env))];
}

/** Both in this process; their modules load only then. */
async function inProcessUnit(env: Env): Promise<Unit> {
  const { startInProcess } = await import('./in-process.js');
  return startInProcess(env, uploaderEnv(env));
}

/**
 * By default the proxy's admin port is 9464 and the uploader's 9465. A METRICS_BIND set for both
 * would clash: the uploader takes the next port, unless the port is 0 (any) or metrics are off.
 */
function uploaderEnv(env: Env): Env {
  const match = /^(.*):(\d+)$/.exec(env.METRICS_BIND ?? '');
  if (!match || match[2] === '0') return env;
  return { ...env, METRICS_BIND: `${match[1]}:${Number(match[2]) + 1}` };
}

/**
 * `npm start` runs this under `sh`; on SIGTERM or SIGINT npm and sh end without passing it on. When
 * the process that started us goes away, stop as if signalled, so that nothing is left holding the
 * ports.
 */
function watchParent(stop: () => void): void {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop();
  }, 500).unref();
}
