#!/usr/bin/env node
// The container's entry point: `node scripts/service.mjs <proxy|uploader|dashboard|all|setup-bucket|purge|warm|reindex> [arguments]` loads one
// service into this very process, so that node is PID 1's child (with `init: true`) and receives
// SIGTERM directly (npm would swallow it).
import '../packages/shared/dist/require-node.js';

const services = {
  proxy: '../apps/proxy/dist/index.js',
  uploader: '../apps/uploader/dist/index.js',
  dashboard: '../apps/uploader/dist/dashboard-main.js',
  // one-shot commands
  purge: '../apps/cli/dist/purge.js',
  warm: '../apps/cli/dist/warm.js',
  reindex: '../apps/cli/dist/reindex.js',
  // the bucket of a local S3 server (the compose file's s3-init)
  'setup-bucket': '../apps/uploader/dist/setup-bucket-main.js',
  all: '../apps/launcher/dist/index.js',
  'all-in-one': '../apps/launcher/dist/index.js', // with imgproxy: see the Dockerfile's all-in-one target
};

const name = process.argv[2] ?? 'proxy';
if (!(name in services)) {
  console.error(`imgproxy-cache: unknown service "${name}"; expected one of ${Object.keys(services).join(', ')}`);
  process.exit(2);
}
if (name === 'all-in-one') process.argv.push('--with-imgproxy');
// a one-shot command reads its own arguments after the command's name
if (['purge', 'warm', 'reindex'].includes(name)) process.argv.splice(2, 1);
await import(services[name]);
