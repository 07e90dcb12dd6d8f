// Node flags every service runs with (npm start, the images, the package scripts, the bench).
// V8 grows the young generation to 64 MiB per semi-space under load (128 MiB resident) while under
// 1 MiB of it survives a collection; 16 MiB keeps the proxy's rate and gives back about 100 MiB
// (bench/PROFILE.md, memory). It is read only at start: it cannot be set from inside a process.
export const SERVICE_NODE_FLAGS = ['--max-semi-space-size=16'];
