export * from './config.js';
export * from './cache-key.js';
export * from './redis-keys.js';
export * from './queue.js';
export * from './logger.js';
export * from './redis.js';
export * from './payload-store.js';
