import type { BindAddress, Role, Variable } from './variable.js';

// Reading the environment for one role: each value by its variable's declaration (default,
// required), every problem collected with the variable's name, so that loadConfig reports them all
// at once.

export type Env = Readonly<Record<string, string | undefined>>;

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export class Reader {
  readonly problems: string[] = [];
  private readonly byName: ReadonlyMap<string, Variable>;

  constructor(
    private readonly env: Env,
    readonly role: Role,
    variables: readonly Variable[],
  ) {
    this.byName = new Map(variables.map((v) => [v.name, v]));
  }

  problem(message: string): void {
    this.problems.push(message);
  }

  /** Whether this role is among the variable's readers (its declaration's `roles`). */
  reads(name: string): boolean {
    return this.byName.get(name)?.roles.includes(this.role) ?? false;
  }

  /** Whether the environment sets `name` at all (a default is not a setting). */
  isSet(name: string): boolean {
    return (this.env[name] ?? '').trim() !== '';
  }

  /** The value, trimmed, or its default (the role's own first). */
  raw(name: string): string {
    const spec = this.byName.get(name);
    if (!spec) throw new Error(`${name} is not declared`);
    const value = this.env[name];
    if (value === undefined || value === '') {
      if (spec.required?.includes(this.role)) this.problem(`${name} is required`);
      return spec.roleDefaults?.[this.role] ?? spec.default ?? '';
    }
    return value.trim();
  }

  int(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.raw(name);
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      this.problem(`${name} must be a whole number from ${min} to ${max}, got "${value}"`);
      return min;
    }
    return Number(value);
  }

  bool(name: string): boolean {
    const value = this.raw(name).toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(value)) return true;
    if (['false', '0', 'no', 'off'].includes(value)) return false;
    this.problem(`${name} must be true or false, got "${value}"`);
    return false;
  }

  url(name: string, protocols: readonly string[]): URL {
    const value = this.raw(name);
    try {
      const parsed = new URL(value);
      if (!protocols.includes(parsed.protocol)) throw new Error('protocol');
      return parsed;
    } catch {
      this.problem(`${name} must be a ${protocols.map((p) => p.replace(':', '')).join(' or ')} URL, got "${value}"`);
      return new URL(`${protocols[0]}//invalid`);
    }
  }

  oneOf<T extends string>(name: string, values: readonly T[], normalize = (v: string) => v): T {
    const value = normalize(this.raw(name));
    if ((values as readonly string[]).includes(value)) return value as T;
    this.problem(`${name} must be one of ${values.join(', ')}, got "${value}"`);
    return values[0]!;
  }

  /** A listen address; `orOff`: `off` turns it off (undefined). */
  bind(name: string, fallback: BindAddress, orOff = false): BindAddress | undefined {
    const value = this.raw(name);
    if (orOff && value.toLowerCase() === 'off') return undefined;
    const parsed = parseBind(value);
    if (!parsed) this.problem(`${name} must be host:port${orOff ? ', :port or off' : ' or :port'}, got "${value}"`);
    return parsed ?? fallback;
  }
}

/** `:8080`, `0.0.0.0:8080`, `[::1]:8080`, `localhost:0`. */
export function parseBind(value: string): BindAddress | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

/** Loopback only: 127.0.0.0/8, ::1, localhost. No host (`:3000`) means every interface. */
export function isLoopback(host: string | undefined): boolean {
  return host !== undefined && (host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host));
}
