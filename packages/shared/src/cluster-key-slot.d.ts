// The slot of a key in a Redis Cluster (the package ioredis uses, which ships no types).
declare module 'cluster-key-slot' {
  export default function calculateSlot(key: string): number;
}
