import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { VARIABLES } from '@imgproxy-cache/shared';
import { ROOT } from './support/service.js';

// The README's configuration table is the users' reference: it must list exactly the variables
// the config module reads, with the same defaults.

describe('README', () => {
  const readme = readFileSync(`${ROOT}/README.md`, 'utf8');
  const rows = [...readme.matchAll(/^\| `([A-Z0-9_]+)` \| ([^|]+) \|/gm)].map((m) => [m[1]!, m[2]!.trim()] as const);

  it('documents every variable once, with its default', () => {
    const documented = new Map(rows);
    expect(rows.length).toBe(documented.size);
    expect([...documented.keys()].sort()).toEqual(VARIABLES.map((v) => v.name).sort());
    for (const v of VARIABLES) {
      const expected = v.default === undefined ? '*(required)*' : v.default === '' ? '*(empty)*' : `\`${v.default}\``;
      expect(documented.get(v.name), v.name).toBe(expected);
    }
  });
});

describe('configuration', () => {
  it('is read from the environment only by the config module (entry points hand it process.env)', async () => {
    const { execFileSync } = await import('node:child_process');
    const hits = execFileSync('grep', ['-rln', 'process\\.env', 'apps', 'packages', '--include=*.ts', '--exclude-dir=node_modules', '--exclude-dir=dist'], { cwd: ROOT })
      .toString()
      .trim()
      .split('\n')
      .filter((f) => !f.endsWith('.test.ts') && f !== 'packages/shared/src/config.ts')
      .sort();
    expect(hits).toEqual(['apps/proxy/src/index.ts', 'apps/uploader/src/dashboard-main.ts', 'apps/uploader/src/index.ts']);
    for (const entry of hits) {
      const uses = readFileSync(`${ROOT}/${entry}`, 'utf8').match(/process\.env[^\n]*/g) ?? [];
      expect(uses.every((u) => u.startsWith('process.env, '))).toBe(true);
    }
  });
});
