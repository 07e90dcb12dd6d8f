#!/usr/bin/env node
// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by package, so that a
// profile can be read without a browser. Usage: node bench/lib/cpuprofile.mjs <file> [top] [from-s] [to-s]
// (from-s, to-s: only the samples between those seconds after the profile started)
import { readFileSync } from 'node:fs';

const [, , file, topArg = '30', fromArg, toArg] = process.argv;
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = profile.timeDeltas;
const from = fromArg === undefined ? -Infinity : Number(fromArg) * 1e6;
const to = toArg === undefined ? Infinity : Number(toArg) * 1e6;
let at = 0;
for (let i = 0; i < profile.samples.length; i++) {
  at += dt[i] ?? 0;
  if (at < from || at > to) continue;
  const id = profile.samples[i];
  self.set(id, (self.get(id) ?? 0) + (dt[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const where = (n) => {
  const url = n.callFrame.url;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) return pkg;
  if (url.startsWith('node:')) return url;
  if (url.includes('/apps/') || url.includes('/packages/')) return url.replace(/.*\/(apps|packages)\//, '$1/');
  return url || `(${n.callFrame.functionName || 'program'})`;
};
const byFunction = new Map();
const byPackage = new Map();
for (const [id, t] of self) {
  const n = byId.get(id);
  const fn = `${n.callFrame.functionName || '(anonymous)'} ${where(n)}:${n.callFrame.lineNumber + 1}`;
  byFunction.set(fn, (byFunction.get(fn) ?? 0) + t);
  const pkg = where(n).replace(/:\d+$/, '');
  byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + t);
}
const pct = (t) => `${((t / total) * 100).toFixed(1).padStart(5)} %`;
console.log(`total sampled ${(total / 1000).toFixed(0)} ms of ${(at / 1e6).toFixed(1)} s`);
console.log('\nby package/file:');
for (const [k, t] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg))) console.log(`${pct(t)}  ${k}`);
console.log('\nby function:');
for (const [k, t] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg))) console.log(`${pct(t)}  ${k}`);
