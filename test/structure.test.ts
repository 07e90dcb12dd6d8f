import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { filesUnder } from './support/files.js';
import { ROOT } from './support/service.js';

// The shape the code keeps (README, Architecture): small files, no import cycle, and the proxy's
// rooms in one direction, each knowing only the rooms below it.

const MAX_LINES = 400;

const workspaces = ['apps', 'packages'].flatMap((top) => readdirSync(join(ROOT, top)).map((name) => join(ROOT, top, name)));
/** Every module of the runtime (tests apart), by absolute path. */
const modules = workspaces.flatMap((ws) => filesUnder(join(ws, 'src'), /\.ts$/)).filter((file) => !file.endsWith('.test.ts'));

/** What a workspace's package name and subpath resolve to, as Node resolves them through `exports`. */
function packageTarget(specifier: string): string | undefined {
  const match = /^@imgproxy-cache\/([\w-]+)(?:\/(.+))?$/.exec(specifier);
  if (!match) return undefined;
  const ws = workspaces.find((dir) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name === `@imgproxy-cache/${match[1]}`);
  if (!ws) return undefined;
  return join(ws, 'src', `${match[2] ?? 'index'}.ts`);
}

/** The modules `file` imports (static, dynamic and type-only alike), among the runtime's own. */
function importsOf(file: string): string[] {
  const source = readFileSync(file, 'utf8');
  const specifiers = [...source.matchAll(/(?:^import[^'"]*?from |^export[^'"]*? from |^import |import\()'([^']+)'/gm)].map((m) => m[1]!);
  return specifiers
    .map((spec) => (spec.startsWith('.') ? resolve(dirname(file), spec.replace(/\.js$/, '.ts')) : packageTarget(spec)))
    .filter((target): target is string => target !== undefined);
}

const graph = new Map(modules.map((file) => [file, importsOf(file)]));

/** Every cycle, as the chain of files that closes it. */
function cycles(): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next].map((f) => relative(ROOT, f)));
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return found;
}

describe('the shape of the code', () => {
  it('resolves every import of its own to a file (so the walk below sees the whole graph)', () => {
    const missing = [...graph].flatMap(([file, targets]) =>
      targets.filter((t) => !statSync(t, { throwIfNoEntry: false })).map((t) => `${relative(ROOT, file)} → ${relative(ROOT, t)}`),
    );
    expect(missing).toEqual([]);
    expect(modules.length).toBeGreaterThan(100);
  });

  it(`has no source file past ${MAX_LINES} lines`, () => {
    const sources = [
      ...workspaces.flatMap((ws) => filesUnder(join(ws, 'src'), /\.ts$/)),
      ...filesUnder(join(ROOT, 'packages/shared/commands'), /\.lua$/),
      ...filesUnder(join(ROOT, 'scripts'), /\.m?[jt]s$/),
      ...filesUnder(join(ROOT, 'bench'), /\.m?[jt]s$/),
      ...filesUnder(join(ROOT, 'test'), /\.ts$/),
    ];
    const long = sources
      .map((file) => [relative(ROOT, file), readFileSync(file, 'utf8').split('\n').length - 1] as const)
      .filter(([, lines]) => lines > MAX_LINES);
    expect(long).toEqual([]);
  });

  it('has no import cycle', () => {
    expect(cycles()).toEqual([]);
  });

  it("walks the proxy's rooms in one direction: http → serving → (stored | coalescing → imgproxy) → handoff", () => {
    const proxy = join(ROOT, 'apps/proxy/src');
    // a room may import only rooms of a greater depth; server/ and admin/ compose them, and no room imports those
    const depth: Record<string, number> = { http: 0, serving: 1, stored: 2, coalescing: 2, imgproxy: 3, handoff: 4 };
    const roomOf = (file: string) => relative(proxy, file).split('/')[0]!;
    const wrong: string[] = [];
    for (const [file, targets] of graph) {
      if (!file.startsWith(`${proxy}/`)) continue;
      const from = roomOf(file);
      if (!(from in depth)) continue;
      for (const target of targets) {
        if (!target.startsWith(`${proxy}/`)) continue;
        const to = roomOf(target);
        if (to !== from && !((depth[to] ?? -1) > depth[from]!)) wrong.push(`${relative(proxy, file)} → ${relative(proxy, target)}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(Object.keys(depth).every((room) => statSync(join(proxy, room)).isDirectory())).toBe(true);
  });
});
