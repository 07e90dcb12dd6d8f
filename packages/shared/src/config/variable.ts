// What a setting is: a variable, its default, who reads it and what it means. Every section of
// the configuration (s3.ts, proxy.ts, ...) declares its own; the README's table is made of them all.

/**
 * The services, `npm start` (the services together, with a Redis of its own if need be), the
 * operator commands (`npm run purge`, `warm`, `reindex`), and `setup-bucket` (the compose file's
 * bucket for a local S3 server).
 */
export type Role = 'proxy' | 'uploader' | 'dashboard' | 'npm start' | 'purge' | 'reindex' | 'setup-bucket' | 'warm';
export type ChecksumMode = 'WHEN_REQUIRED' | 'WHEN_SUPPORTED';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface BindAddress {
  /** undefined = all interfaces (the `:8080` form) */
  host: string | undefined;
  port: number;
}

export interface Variable {
  name: string;
  default: string | undefined;
  /** which roles read it: the README's "Read by", and where it is required */
  roles: readonly Role[];
  /** a default of its own for some roles */
  roleDefaults?: Partial<Record<Role, string>>;
  required?: readonly Role[];
  description: string;
}

export const BOTH: readonly Role[] = ['proxy', 'uploader'];
export const S3_ROLES: readonly Role[] = ['proxy', 'uploader', 'purge', 'reindex', 'setup-bucket', 'warm'];
export const ALL: readonly Role[] = ['proxy', 'uploader', 'dashboard', 'purge'];
