import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Registry } from 'prom-client';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { freePort } from './support/free-port.js';
import { ROOT } from './support/service.js';
import { type Stack, startStack } from './support/stack.js';
import { waitFor } from './support/wait.js';

// The alert rules and the dashboard, against promtool and a real Prometheus (Debian's) scraping a
// real proxy and uploader: every metric and label they use exists, every dashboard query runs, and
// a real fault (S3 refusing uploads) drives the upload alert to pending or firing.

const run = promisify(execFile);
const havePrometheus = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
if (!havePrometheus && !process.env.CI) console.warn('alert rule tests skipped: promtool missing (apt-get install -y prometheus)');
const RULES = join(ROOT, 'deploy/prometheus/alerts.yml');
const DASHBOARD = join(ROOT, 'deploy/grafana/imgproxy-cache.json');

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
}
const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  panels: { title: string; targets: { expr: string }[] }[];
  templating: { list: { name: string; query: unknown }[] };
};
/** A dashboard query with its variables as Grafana would fill them in. */
const filled = (expr: string) => expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*').replaceAll('$queue', '.*');
const dashboardQueries = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: filled(t.expr) })));
const allExprs = [...rules.map((r) => ({ what: r.alert ?? r.record!, expr: r.expr })), ...dashboardQueries.map((q) => ({ what: q.panel, expr: q.expr }))];

/** Our metric names in an expression (not recording rules, which hold a colon). */
const metricNames = (expr: string) => [...new Set([...expr.matchAll(/\bimgproxy_cache_[a-z0-9_]+\b/g)].map((m) => m[0]))];
/** The label names an expression matches or groups on. */
const labelNames = (expr: string) => {
  const names = new Set<string>();
  for (const m of expr.matchAll(/\{([^}]*)\}/g)) for (const l of m[1]!.matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)) names.add(l[1]!);
  for (const m of expr.matchAll(/\b(?:by|on|ignoring)\s*\(([^)]*)\)/g)) for (const l of m[1]!.split(',')) if (l.trim()) names.add(l.trim());
  return [...names];
};
/** Labels every series has: the target's, Prometheus's, the histogram's, and the services' default label. */
const ANY = new Set(['job', 'instance', 'le', 'service', '__name__']);
const baseName = (name: string) => name.replace(/_(bucket|sum|count)$/, '');

describe.runIf(havePrometheus || process.env.CI)('the alert rules, with promtool', () => {
  it('are valid rules, and every alert fires on its series and stays quiet on a blip or a quiet night (promtool test rules)', async () => {
    const check = await run('promtool', ['check', 'rules', RULES]);
    expect(check.stdout).toMatch(/SUCCESS: \d+ rules found/);
    const tests = await run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: join(ROOT, 'deploy/prometheus') });
    expect(tests.stdout).toMatch(/SUCCESS/);
    // every alert has a test of its own, firing and not
    const tested = readFileSync(join(ROOT, 'deploy/prometheus/alerts.test.yml'), 'utf8');
    for (const rule of rules.filter((r) => r.alert)) {
      expect(tested).toContain(`# ${rule.alert}: fires`);
      expect(tested).toContain(`# ${rule.alert}: must not fire`);
    }
  });

  it('every alert says how bad (severity) and what to do (summary, description), and waits (for:)', () => {
    const alerts = (
      parse(readFileSync(RULES, 'utf8')) as { groups: { rules: (Rule & { labels?: Record<string, string>; annotations?: Record<string, string> })[] }[] }
    ).groups
      .flatMap((g) => g.rules)
      .filter((r) => r.alert);
    expect(alerts.length).toBeGreaterThanOrEqual(10);
    for (const a of alerts) {
      expect(a.for, a.alert).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning', 'info'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
      expect(a.annotations?.description?.length ?? 0, a.alert).toBeGreaterThan(40);
    }
  });
});

describe.runIf(havePrometheus || process.env.CI)('the rules and the dashboard, on a real Prometheus scraping a real proxy and uploader', () => {
  let stack: Stack;
  let prometheus: ChildProcess;
  let api: string;
  const dir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-prometheus-'));
  const query = async (path: string) => {
    const res = await request(`${api}${path}`);
    return (await res.body.json()) as { status: string; data: unknown; error?: string };
  };

  beforeAll(async () => {
    stack = await startStack({ env: { UPLOAD_GATHER_MS: '0', UPLOAD_ATTEMPTS: '1', CACHE_READ_THROUGH: 'true', CACHE_MEMORY_CONFIRM_MS: '200' } });
    // the rules as shipped, waiting a second instead of minutes
    writeFileSync(join(dir, 'alerts.yml'), readFileSync(RULES, 'utf8').replace(/^(\s+for:) \S+$/gm, '$1 1s'));
    const port = await freePort();
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'rule_files: [alerts.yml]',
        'scrape_configs:',
        `  - { job_name: imgproxy-cache-proxy, static_configs: [{ targets: ['127.0.0.1:${stack.proxy.admin!.port}'] }] }`,
        `  - { job_name: imgproxy-cache-uploader, static_configs: [{ targets: ['127.0.0.1:${stack.uploader!.admin!.port}'] }] }`,
        '',
      ].join('\n'),
    );
    prometheus = spawn(
      'prometheus',
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
      { stdio: 'ignore' },
    );
    api = `http://127.0.0.1:${port}/api/v1`;
    await waitFor(
      async () => {
        const targets = (await query('/targets')).data as { activeTargets: { health: string }[] };
        return targets.activeTargets.length === 2 && targets.activeTargets.every((t) => t.health === 'up');
      },
      { what: 'Prometheus to scrape both services', timeoutMs: 30_000 },
    );
    // traffic, so that the series the rules and panels read exist: misses, hits, confirmations
    const path = '/sig/plain/https://example.com/observed.jpg@png';
    await stack.get(path);
    await stack.waitForObject(path);
    await waitFor(async () => (await stack.get(path)) && (await stack.proxy.metrics.memoryConfirmations.get()).values.length > 0, {
      what: 'a confirmation of a hot image',
    });
  }, 60_000);

  afterAll(async () => {
    prometheus?.kill('SIGKILL');
    await stack?.stop();
  });

  it('every metric the rules and the dashboard use is one the services export, with the labels used', async () => {
    // names as Prometheus scraped them (HELP and TYPE: present even before a labelled counter counts)
    await waitFor(async () => Object.keys((await query('/metadata')).data as object).some((n) => n.startsWith('imgproxy_cache_memory_tier_')), {
      what: 'the metadata of the scrapes',
    });
    const scraped = new Set(Object.keys((await query('/metadata')).data as object));
    const registries: Registry[] = [stack.proxy.metrics.registry, stack.uploader!.metrics.registry];
    const declared = (name: string) => {
      for (const r of registries) {
        const metric = r.getSingleMetric(baseName(name)) as unknown as { labelNames?: string[] } | undefined;
        if (metric) return metric.labelNames ?? [];
      }
      return undefined;
    };
    const missing: string[] = [];
    for (const { what, expr } of allExprs) {
      const names = metricNames(expr);
      for (const name of names) if (!scraped.has(baseName(name)) && !scraped.has(name)) missing.push(`${what}: ${name}`);
      // each label it uses is declared by one of its metrics (or is a target's)
      const labels = new Set(names.flatMap((n) => declared(n) ?? []));
      for (const label of labelNames(expr))
        if (!ANY.has(label) && !labels.has(label) && names.length > 0) missing.push(`${what}: label ${label} of ${names.join(', ')}`);
    }
    expect(missing).toEqual([]);
    // and the recording rules the dashboard reads are ones the rules file makes
    const recorded = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));
    for (const { expr } of dashboardQueries) for (const m of expr.matchAll(/\bimgproxy_cache:[a-z0-9_:]+/g)) expect(recorded).toContain(m[0]);
  });

  it('every dashboard query runs without error', async () => {
    for (const { panel, expr } of dashboardQueries) {
      const answer = await query(`/query?query=${encodeURIComponent(expr)}`);
      expect(answer.status, `${panel}: ${expr}: ${answer.error}`).toBe('success');
    }
    for (const variable of dashboard.templating.list.filter((v) => v.name !== 'datasource')) {
      const m = /label_values\((\w+), (\w+)\)/.exec((variable.query as { query: string }).query)!;
      const values = await waitFor(
        async () => {
          const answer = await query(`/label/${m[2]}/values?match[]=${m[1]}`);
          expect(answer.status).toBe('success');
          return (answer.data as string[]).length > 0 ? answer.data : undefined;
        },
        { what: `values of the ${variable.name} variable` },
      );
      expect(values, variable.name).toBeDefined();
    }
  });

  it('S3 refusing uploads drives ImgproxyCacheUploadsFailing to pending or firing', async () => {
    stack.tap.fault = (r) => (r.method === 'PUT' ? { kind: 'status', status: 403, code: 'AccessDenied', message: 'bucket policy' } : undefined);
    const images = Array.from({ length: 3 }, (_, i) => `/sig/plain/https://example.com/refused-${i}.jpg@png`);
    for (const p of images) await stack.get(p);
    await waitFor(async () => (await stack.queue.getFailedCount()) === 3, { what: 'the uploads to fail for good' });
    const alert = await waitFor(
      async () => {
        const { alerts } = (await query('/alerts')).data as { alerts: { labels: Record<string, string>; state: string }[] };
        return alerts.find((a) => a.labels.alertname === 'ImgproxyCacheUploadsFailing');
      },
      { what: 'the alert', timeoutMs: 30_000 },
    );
    expect(['pending', 'firing']).toContain(alert.state);
    expect(alert.labels.severity).toBe('warning');
  }, 60_000);
});
