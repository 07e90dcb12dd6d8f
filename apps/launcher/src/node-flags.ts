// Node flags every service runs with (npm start, the images, the package scripts, the bench): a
// smaller young generation, whose growth under load held memory that almost nothing survived in
// (bench/PROFILE.md, memory). V8 reads it only at start: no process can set it for itself.
export const SERVICE_NODE_FLAGS = ['--max-semi-space-size=16'];
