#!/usr/bin/env node
// `npm start`: the proxy and one uploader together, as the original single container ran. When
// either exits, the other is stopped and this exits with the first one's code; SIGTERM and SIGINT
// are passed on to both, so each can finish what it has in flight.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const services = {
  proxy: 'apps/proxy/dist/index.js',
  uploader: 'apps/uploader/dist/index.js',
};

// Both processes would bind the same admin port: the uploader takes the next one, unless the
// port is 0 (any) or metrics are off.
function uploaderMetricsBind(bind = ':9464') {
  const match = /^(.*):(\d+)$/.exec(bind);
  if (!match || match[2] === '0') return bind;
  return `${match[1]}:${Number(match[2]) + 1}`;
}

const envs = {
  proxy: process.env,
  uploader: { ...process.env, METRICS_BIND: uploaderMetricsBind(process.env.METRICS_BIND) },
};
const children = new Map();
let exitCode;

function stopAll(signal) {
  for (const child of children.values()) {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  }
}

for (const [name, entry] of Object.entries(services)) {
  const child = spawn(process.execPath, [entry], { cwd: root, stdio: 'inherit', env: envs[name] });
  children.set(name, child);
  child.on('exit', (code, signal) => {
    children.delete(name);
    if (exitCode === undefined) {
      exitCode = code ?? (signal ? 1 : 0);
      if (code !== 0) console.error(`imgproxy-cache: ${name} exited (${signal ?? code}); stopping the other service`);
      stopAll('SIGTERM');
    }
    if (children.size === 0) process.exit(exitCode);
  });
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    if (exitCode === undefined) exitCode = 0;
    stopAll(signal);
  });
}
