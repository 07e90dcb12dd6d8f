export * from './load.js';
export { retryWindowMs } from './queue.js';
export { ConfigError, type Env, isLoopback, parseBind } from './reader.js';
export { normalizeFolder, type S3Config } from './s3.js';
export * from './table.js';
export type * from './variable.js';
