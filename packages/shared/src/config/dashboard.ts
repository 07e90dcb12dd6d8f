import { isLoopback, type Reader } from './reader.js';
import type { BindAddress, Variable } from './variable.js';

// Bull Board: where it listens, and who may see it.

export const DASHBOARD_VARIABLES = [
  {
    name: 'DASHBOARD_BIND',
    default: '127.0.0.1:3000',
    roles: ['dashboard'],
    description:
      'Where Bull Board (failed uploads, retry) listens, at the root path. On any address but loopback it refuses to start without `DASHBOARD_USER` and `DASHBOARD_PASSWORD`.',
  },
  { name: 'DASHBOARD_USER', default: '', roles: ['dashboard'], description: 'HTTP basic auth user for the dashboard.' },
  {
    name: 'DASHBOARD_PASSWORD',
    default: '',
    roles: ['dashboard'],
    description: 'HTTP basic auth password for the dashboard (set both, or neither on loopback).',
  },
] as const satisfies readonly Variable[];

export interface DashboardSettings {
  bind: BindAddress;
  user: string | undefined;
  password: string | undefined;
}

export function readDashboard(r: Reader): DashboardSettings {
  const bind = r.bind('DASHBOARD_BIND', { host: '127.0.0.1', port: 3000 })!;
  const user = r.raw('DASHBOARD_USER') || undefined;
  const password = r.raw('DASHBOARD_PASSWORD') || undefined;
  if (r.role === 'dashboard') {
    if ((user === undefined) !== (password === undefined)) {
      r.problem('DASHBOARD_USER and DASHBOARD_PASSWORD must be set together');
    } else if (!isLoopback(bind.host) && user === undefined) {
      r.problem(`DASHBOARD_USER and DASHBOARD_PASSWORD are required when DASHBOARD_BIND (${r.raw('DASHBOARD_BIND')}) is not a loopback address`);
    }
  }
  return { bind, user, password };
}
