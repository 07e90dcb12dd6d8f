import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from './support/free-port.js';
import { type Service, spawnService } from './support/service.js';
import { rendered, type Stack, startStack } from './support/stack.js';
import { waitFor } from './support/wait.js';

// `npm run warm`, run as users run it (its own process, configured by the environment), against
// the whole pipeline: the imgproxy stand-in counting renders and concurrent requests, the proxy,
// an uploader, Redis and s3rver behind the tap.

let stack: Stack | undefined;
const running: Service[] = [];
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail') for (const s of running) console.log(s.output());
  await Promise.all(running.splice(0).map((s) => s.stop()));
  await stack?.stop();
  stack = undefined;
});

const dir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-warm-'));
let files = 0;
const listFile = (lines: string[]) => {
  const file = join(dir, `list-${++files}.txt`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
};
const paths = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `/sig/rs:fit:${100 + i}:100/plain/https://example.com/${tag}.jpg@png`);

const warmEnv = (s: Stack) => ({
  S3_BUCKET: s.bucket,
  S3_ENDPOINT: s.tap.endpoint,
  S3_REGION: 'us-east-1',
  METRICS_BIND: `127.0.0.1:${s.proxy.admin!.port}`,
});

function warm(s: Stack, args: string[], env: Record<string, string> = {}): Service {
  const service = spawnService(['apps/cli/dist/warm.js', ...args], { ...warmEnv(s), ...env });
  running.push(service);
  return service;
}

/** Requests of the stand-in in flight at once, at most, from now on. */
function concurrencyAt(s: Stack) {
  let now = 0;
  let max = 0;
  s.stub.server.on('request', (_req, res) => {
    now += 1;
    max = Math.max(max, now);
    res.once('close', () => (now -= 1));
  });
  return () => max;
}

/** Every image takes a moment to render, so that requests overlap. */
const slowImages = (s: Stack, prefix: string, delayMs = 40) =>
  s.stub.on(prefix, (req) => ({
    status: 200,
    headers: { 'content-type': 'image/png', 'cache-control': 'max-age=31536000, public' },
    body: s.stub.imageFor(req.url!),
    pieceSize: 512,
    delayMs,
  }));

describe('npm run warm', () => {
  it('renders only what the bucket lacks, once each, and every path is stored at the end: exit 0, plain progress lines without a terminal', async () => {
    stack = await startStack({ env: { UPLOAD_GATHER_MS: '0' } });
    const s = stack;
    const all = paths('catalogue', 60);
    const before = all.slice(0, 20);
    for (const p of before) await s.get(p);
    for (const p of before) await s.waitForObject(p);
    const run = warm(s, [listFile(['# the catalogue', '', ...all]), '--proxy', s.baseUrl]);
    expect(await run.exited(60_000)).toBe(0);
    for (const p of all) expect(rendered(s, p)).toBe(1);
    for (const p of all) await s.waitForObject(p);
    const out = run.output();
    expect(out).toMatch(/rendered and stored: 40\n/);
    expect(out).toMatch(/already stored: 20\n/);
    expect(out).toMatch(/not stored: 0\n/);
    expect(out).not.toContain('\u001b['); // no terminal: no bar, no escape codes
    expect(out).toMatch(/^warm: 60 paths, 4 at a time, to http:\/\/127\.0\.0\.1:\d+$/m);
  }, 90_000);

  it.runIf(existsSync('/usr/bin/script'))(
    'on a terminal: a progress bar (done/total, images per second, ETA, failures)',
    async () => {
      stack = await startStack({ env: { UPLOAD_GATHER_MS: '0' } });
      const s = stack;
      const all = paths('terminal', 6);
      // util-linux's script gives the command a terminal of its own
      const command = [process.execPath, 'apps/cli/dist/warm.js', listFile(all), '--proxy', s.baseUrl].map((a) => `'${a}'`).join(' ');
      const run = spawnService([], warmEnv(s), { command: ['script', '-qec', command, '/dev/null'] });
      running.push(run);
      expect(await run.exited(60_000)).toBe(0);
      expect(run.output()).toMatch(/warm .* 6\/6 \| [\d.]+\/s \| ETA \S+ \| failed 0/);
      expect(run.output()).toMatch(/rendered and stored: 6/);
    },
    60_000,
  );

  it('--list: one listing of S3_FOLDER/ tells what is stored, instead of a HEAD per path', async () => {
    stack = await startStack({ env: { UPLOAD_GATHER_MS: '0' } });
    const s = stack;
    const all = paths('listed', 10);
    for (const p of all.slice(0, 5)) await s.get(p);
    for (const p of all.slice(0, 5)) await s.waitForObject(p);
    const from = s.tap.requests.length;
    const run = warm(s, [listFile(all), '--proxy', s.baseUrl, '--list']);
    expect(await run.exited(60_000)).toBe(0);
    const seen = s.tap.requests.slice(from);
    expect(seen.filter((r) => r.method === 'GET' && r.url.includes('max-keys=1000')).length).toBe(1);
    for (const p of all.slice(0, 5)) expect(seen.filter((r) => r.method === 'HEAD' && r.url.split('?')[0]!.endsWith(s.keyFor(p)))).toEqual([]);
    expect(run.output()).toMatch(/already stored: 5\n/);
    expect(run.output()).toMatch(/rendered and stored: 5\n/);
  }, 60_000);

  it('lands what imgproxy renders and lists the paths it refuses in --failures: exit 1', async () => {
    stack = await startStack({ env: { UPLOAD_GATHER_MS: '0' } });
    const s = stack;
    s.stub.on('/sig/rs:fit:1', () => ({ status: 404, headers: { 'content-type': 'text/plain' }, body: Buffer.from('Invalid URL') }));
    const good = paths('good', 10).map((p) => p.replace('/rs:fit:', '/rs:fill:'));
    const refused = paths('missing', 5);
    const failures = join(dir, 'failures.txt');
    const run = warm(s, [listFile([...good, ...refused]), '--proxy', s.baseUrl, '--failures', failures]);
    expect(await run.exited(60_000)).toBe(1);
    for (const p of good) await s.waitForObject(p);
    expect(readFileSync(failures, 'utf8').trim().split('\n').sort()).toEqual([...refused].sort());
    expect(run.output()).toMatch(/5 × imgproxy answered 404/);
    expect(run.output()).toMatch(/rendered and stored: 10\n/);
  }, 90_000);

  it('Ctrl-C stops taking paths, lets those in flight finish, prints its summary and exits 130; a rerun does only what is left', async () => {
    stack = await startStack({ env: { UPLOAD_GATHER_MS: '0' } });
    const s = stack;
    const all = paths('interrupted', 30);
    // the first four are answered; the next are held until the signal has been taken, so that
    // two are in flight when it comes and the rest are not started
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let answered = 0;
    s.stub.on('/sig/rs:fit:', (req) => ({
      status: 200,
      headers: { 'content-type': 'image/png', 'cache-control': 'max-age=31536000, public' },
      body: s.stub.imageFor(req.url!),
      holdBeforeHeaders: answered++ < 4 ? undefined : held,
    }));
    const list = listFile(all);
    const first = warm(s, [list, '--proxy', s.baseUrl, '--concurrency', '2']);
    const requested = () => all.filter((p) => rendered(s, p) > 0).length;
    await waitFor(() => requested() === 6, { what: 'four images done and two in flight' });
    first.child.kill('SIGINT');
    await first.line(/warm: interrupted/);
    release();
    expect(await first.exited(30_000)).toBe(130);
    expect(first.output()).toMatch(/not started \(interrupted\): 24/);
    const done = Number(/rendered and stored: (\d+)/.exec(first.output())![1]);
    expect(done).toBe(6); // the four before the signal and the two it found in flight
    expect(requested()).toBe(6);

    const second = warm(s, [list, '--proxy', s.baseUrl, '--concurrency', '4']);
    expect(await second.exited(60_000)).toBe(0);
    expect(second.output()).toMatch(new RegExp(`already stored: ${done}\\n`));
    for (const p of all) expect(rendered(s, p)).toBe(1);
  }, 90_000);

  it('holds --concurrency (counted at imgproxy) and, paced by --rate, still warms every path', async () => {
    stack = await startStack({ env: { UPLOAD_GATHER_MS: '0' } });
    const s = stack;
    slowImages(s, '/sig/rs:fit:', 60);
    const max = concurrencyAt(s);
    const crowd = warm(s, [listFile(paths('crowd', 24)), '--proxy', s.baseUrl, '--concurrency', '3']);
    expect(await crowd.exited(60_000)).toBe(0);
    expect(max()).toBe(3);

    // the spacing of the starts is warm()'s own, tested on a fake clock (packages/shared/src/ops/warm.test.ts)
    const paced = paths('paced', 12).map((p) => p.replace('/rs:fit:', '/rs:fill:'));
    const run = warm(s, [listFile(paced), '--proxy', s.baseUrl, '--concurrency', '8', '--rate', '4']);
    expect(await run.exited(60_000)).toBe(0);
    expect(run.output()).toMatch(/^warm: 12 paths, 8 at a time, 4 per second at most, to /m);
    expect(run.output()).toMatch(/rendered and stored: 12\n/);
    for (const p of paced) expect(rendered(s, p)).toBe(1);
    for (const p of paced) await s.waitForObject(p);
  }, 90_000);

  it('bad input: one line and exit 2, nothing requested', async () => {
    stack = await startStack();
    const s = stack;
    const noFile = warm(s, [join(dir, 'nothing-here.txt'), '--proxy', s.baseUrl]);
    expect(await noFile.exited()).toBe(2);
    expect(noFile.output().trim()).toMatch(/^imgproxy-cache warm: cannot read .*nothing-here\.txt: ENOENT$/);

    const badLine = warm(s, [listFile(['/sig/plain/https://example.com/a.jpg@png', 'ftp://example.com/b.jpg']), '--proxy', s.baseUrl]);
    expect(await badLine.exited()).toBe(2);
    expect(badLine.output().trim()).toBe('imgproxy-cache warm: line 2: "ftp://example.com/b.jpg" is neither a path (starting with /) nor an http(s) URL');

    const nobody = warm(s, [listFile(['/sig/plain/https://example.com/a.jpg@png']), '--proxy', `http://127.0.0.1:${await freePort()}`]);
    expect(await nobody.exited()).toBe(2);
    expect(nobody.output().trim()).toMatch(/^imgproxy-cache warm: the proxy at http:\/\/127\.0\.0\.1:\d+ does not answer \(.*\): start it, or give --proxy$/);

    const noArgs = warm(s, []);
    expect(await noArgs.exited()).toBe(2);
    expect(noArgs.output()).toMatch(/usage: npm run warm --/);
    // the container's command: its arguments come after its name
    const container = spawnService(['scripts/service.mjs', 'warm', join(dir, 'nothing-here.txt')], { S3_BUCKET: s.bucket });
    running.push(container);
    expect(await container.exited()).toBe(2);
    expect(container.output().trim()).toMatch(/^imgproxy-cache warm: cannot read .*nothing-here\.txt: ENOENT$/);
    expect(s.stub.requests.filter((r) => r.url !== '/health')).toEqual([]);
  });
});
