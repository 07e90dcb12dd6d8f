// The first import of every entry point: on a Node.js older than the project needs, one line and
// exit 2, before any dependency loads (undici and others fail on Node 20 with a stack trace that
// names neither Node nor the version). It imports nothing, so it runs before the modules after it.

/** The oldest major version that runs the project: package.json's `engines` (a test compares). */
export const REQUIRED_NODE_MAJOR = 22;

const found = process.versions.node;
if (Number(found.split('.')[0]) < REQUIRED_NODE_MAJOR) {
  console.error(`imgproxy-cache: Node.js ${found} is too old: it needs Node.js ${REQUIRED_NODE_MAJOR} or newer (24 LTS recommended)`);
  process.exit(2);
}
