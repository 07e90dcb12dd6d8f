export * from './bucket.js';
export * from './client.js';
export * from './errors.js';
export * from './list.js';
