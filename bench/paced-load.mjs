#!/usr/bin/env node
// A fixed rate of new images: `rate` requests per second, each for a new path, evenly spaced, on
// keep-alive connections, for `seconds`. Prints one JSON line: sent, ok, errors, latency p50/p99.
// Usage: node bench/paced-load.mjs <base URL> <rate> <seconds> <path prefix> [encoded]
// `encoded` percent-encodes the source (the Go tool's mux answers 301 to a path holding `//`).
import { Agent, request } from 'undici';

const [, , base, rateArg, secondsArg, prefix = '/bench', encoded] = process.argv;
const source = encoded === 'encoded' ? 'local:%2F%2F%2Fphoto.jpg' : 'local:///photo.jpg';
const rate = Number(rateArg);
const total = Math.round(rate * Number(secondsArg));
const dispatcher = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
const run = Math.random().toString(36).slice(2, 8);
const latencies = [];
let ok = 0;
let errors = 0;

const started = performance.now();
const inflight = [];
for (let i = 0; i < total; i++) {
  const due = started + (i * 1000) / rate;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const t0 = performance.now();
  inflight.push(
    request(`${base}${prefix}/rs:fit:${300 + (i % 500)}:${200 + (i % 300)}/q:80/cb:${run}-${i}/plain/${source}@webp`, { dispatcher })
      .then(async (res) => {
        await res.body.arrayBuffer();
        latencies.push(performance.now() - t0);
        if (res.statusCode === 200) ok++;
        else errors++;
      })
      .catch(() => errors++),
  );
}
await Promise.all(inflight);
latencies.sort((a, b) => a - b);
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
process.stdout.write(`${JSON.stringify({ sent: total, ok, errors, seconds: (performance.now() - started) / 1000, p50: pct(50), p99: pct(99) })}\n`);
await dispatcher.close();
