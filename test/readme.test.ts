import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { configTable, VARIABLES } from '@imgproxy-cache/shared';
import { describe, expect, it } from 'vitest';
import { filesUnder } from './support/files.js';
import { ROOT } from './support/service.js';

// The README's configuration table is the users' reference: it must list exactly the variables
// the config module reads, with the same defaults.

describe('README', () => {
  const readme = readFileSync(`${ROOT}/README.md`, 'utf8');

  it('documents every variable once, with its default, readers and meaning (npm run docs:config writes the table)', () => {
    const table = /<!-- config-table:start -->\n([\s\S]*?)\n<!-- config-table:end -->/.exec(readme)?.[1];
    expect(table).toBe(configTable());
    const names = [...(table ?? '').matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect(names.sort()).toEqual(VARIABLES.map((v) => v.name).sort());
  });

  it('names only files that exist (a path from the root, or from the proxy or shared sources it describes)', () => {
    const named = [...new Set([...readme.matchAll(/`([\w./-]+\.(?:ts|mjs|lua|yml))`/g)].map((m) => m[1]!))];
    const tracked = filesUnder(ROOT, /./).map((f) => relative(ROOT, f));
    const exists = (file: string) =>
      file.includes('/')
        ? ['', 'apps/proxy/src/', 'packages/shared/src/'].some((base) => existsSync(`${ROOT}/${base}${file}`))
        : tracked.some((t) => t === file || t.endsWith(`/${file}`));
    expect(named.length).toBeGreaterThan(20);
    expect(named.filter((file) => !exists(file))).toEqual([]);
  });
});

describe('configuration', () => {
  it('is read from the environment only by the config module (entry points hand it process.env)', async () => {
    const hits = execFileSync('grep', ['-rln', 'process\\.env', 'apps', 'packages', '--include=*.ts', '--exclude-dir=node_modules', '--exclude-dir=dist'], {
      cwd: ROOT,
    })
      .toString()
      .trim()
      .split('\n')
      .filter((f) => !f.endsWith('.test.ts') && !f.startsWith('packages/shared/src/config/'))
      .sort();
    expect(hits).toEqual([
      'apps/cli/src/purge.ts',
      'apps/cli/src/reindex.ts',
      'apps/cli/src/warm.ts',
      'apps/launcher/src/index.ts',
      'apps/proxy/src/index.ts',
      'apps/uploader/src/dashboard-main.ts',
      'apps/uploader/src/index.ts',
      'apps/uploader/src/setup-bucket-main.ts',
    ]);
    for (const entry of hits) {
      const uses = readFileSync(`${ROOT}/${entry}`, 'utf8').match(/process\.env[^\n]*/g) ?? [];
      expect(uses.every((u) => u.startsWith('process.env, '))).toBe(true);
    }
  });
});
