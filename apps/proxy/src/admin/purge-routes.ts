import { type AdminRoutes, describePurge, describeSourcePurge, found, type Purger, parsePurgeTarget, parseSource } from '@imgproxy-cache/shared';
import { bearerAuth } from 'hono/bearer-auth';

// Purge on the admin address: the Purger (packages/shared) behind a bearer token.

/**
 * `DELETE /cache/<path or key>` on the admin address, behind `Authorization: Bearer ADMIN_TOKEN`
 * (Hono's bearer-auth, which compares in constant time): 200 with what was removed, 404 when
 * nothing was stored, 400 for what is not an image, 401 without the token. Off (404) while
 * ADMIN_TOKEN is unset.
 */
export function purgeRoutes(token: string | undefined, purger: () => Purger, baseUrl = ''): AdminRoutes {
  return (app) => {
    if (token === undefined) {
      app.all('/cache/*', (c) => c.json({ error: 'purge is off: set ADMIN_TOKEN to turn it on' }, 404, NO_STORE));
      app.all('/cache', (c) => c.json({ error: 'purge is off: set ADMIN_TOKEN to turn it on' }, 404, NO_STORE));
      return;
    }
    const refused = (error: string) => ({ message: { error } });
    const auth = bearerAuth({
      token,
      noAuthenticationHeader: refused('Authorization: Bearer <ADMIN_TOKEN> required'),
      invalidAuthenticationHeader: refused('Authorization: Bearer <ADMIN_TOKEN> required'),
      invalidToken: refused('Authorization: Bearer <ADMIN_TOKEN> required'),
    });
    // DELETE /cache?source=<url>[&dry_run=1]: every stored variant of a source
    app.delete('/cache', auth, async (c) => {
      const source = parseSource(c.req.query('source'), baseUrl);
      if ('problem' in source) return c.json({ error: source.problem }, 400, NO_STORE);
      const dryRun = ['1', 'true'].includes(c.req.query('dry_run') ?? '');
      try {
        const result = await purger().purgeSource(source, dryRun);
        return c.json({ ...result, result: describeSourcePurge(result) }, result.variants.length > 0 ? 200 : 404, NO_STORE);
      } catch (error) {
        return c.json({ error: `purge failed: ${(error as Error).message}` }, 503, NO_STORE);
      }
    });
    app.all('/cache', (c) => c.json({ error: 'DELETE /cache?source=<url>' }, 405, { ...NO_STORE, allow: 'DELETE' }));
    app.delete('/cache/*', auth, async (c) => {
      // the path as the client sent it: the key is the MD5 of the raw path
      const raw = (c.env.incoming.url ?? '').slice('/cache'.length);
      const target = parsePurgeTarget(raw.replace(/^\/([0-9a-f]{32})$/, '$1'));
      if ('problem' in target) return c.json({ error: target.problem }, 400, NO_STORE);
      try {
        const report = await purger().purge(target);
        return c.json({ ...report, result: describePurge(report) }, found(report) ? 200 : 404, NO_STORE);
      } catch (error) {
        return c.json({ error: `purge failed: ${(error as Error).message}` }, 503, NO_STORE);
      }
    });
    app.all('/cache/*', (c) => c.json({ error: 'DELETE /cache/<image path or key>' }, 405, { ...NO_STORE, allow: 'DELETE' }));
  };
}

const NO_STORE = { 'cache-control': 'no-store' };
