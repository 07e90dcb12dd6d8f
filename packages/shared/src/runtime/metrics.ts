import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

// Every metric of both services, named in one place. Each service makes its own registry (tests
// run several in one process), with Node's default process metrics.

const PREFIX = 'imgproxy_cache_';

export function createRegistry(service: 'proxy' | 'uploader'): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  // The event-loop delay histogram samples on a timer: at prom-client's default of 10 ms it wakes an
  // idle service a hundred times a second, its largest cost when there is nothing to do; once a second
  // still shows a stalled loop.
  collectDefaultMetrics({ register: registry, prefix: PREFIX, eventLoopMonitoringPrecision: 1000 });
  return registry;
}

export interface ProxyMetrics {
  registry: Registry;
  requests: Counter<'method' | 'status'>;
  upstreamSeconds: Histogram<'method'>;
  bytesStreamed: Counter;
  cacheDecisions: Counter<'outcome'>;
  captureBytes: Gauge;
  cacheAnswers: Counter<'answer'>;
  bucketReads: Counter<'purpose' | 'result'>;
  bucketReadSeconds: Histogram<'purpose'>;
  coalesced: Counter;
  hits: Counter<'tier'>;
  bucketReadsShared: Counter;
  memoryBytes: Gauge;
  memoryEntries: Gauge;
  memoryEvictions: Counter<'reason'>;
  memoryConfirmations: Counter<'result'>;
  memoryRestores: Counter;
  backlogMaxBytes: Gauge;
  sourceIndex: Counter<'result'>;
}

/** The memory tier as a scrape sees it. */
export interface MemoryTierState {
  bytes: number;
  size: number;
}

/**
 * `heldBytes` reads the bytes held for caching at scrape time, `memory` the memory tier's state;
 * `backlogMaxBytes` is CACHE_BACKLOG_MAX_BYTES (alerts compare the uploaders' backlog with it).
 */
export function createProxyMetrics(
  registry: Registry,
  heldBytes: () => number = () => 0,
  memory: () => MemoryTierState = () => ({ bytes: 0, size: 0 }),
  backlogMaxBytes = 0,
): ProxyMetrics {
  // PROXY_WORKERS: every worker has the same bound, so the primary reports it once (max), not summed
  const bound = new Gauge({
    name: `${PREFIX}backlog_max_bytes`,
    help: 'CACHE_BACKLOG_MAX_BYTES: most teed bytes that may wait for upload, all shards together',
    aggregator: 'max',
    registers: [registry],
  });
  bound.set(backlogMaxBytes);
  return {
    registry,
    requests: new Counter({
      name: `${PREFIX}requests_total`,
      help: 'Responses sent, by method and status',
      labelNames: ['method', 'status'],
      registers: [registry],
    }),
    upstreamSeconds: new Histogram({
      name: `${PREFIX}upstream_duration_seconds`,
      help: 'Time until imgproxy sent its response headers',
      labelNames: ['method'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    bytesStreamed: new Counter({ name: `${PREFIX}response_bytes_total`, help: 'Body bytes received from imgproxy', registers: [registry] }),
    cacheDecisions: new Counter({
      name: `${PREFIX}cache_decisions_total`,
      help: 'What happened to each response: queued, requeued, refilled, uploaded/already-queued/deduped (nothing to do), redis-down, redis-busy, backlog-full, timeout, error, or why it was not cacheable (method, status, cache-control, vary*, too-large, incomplete, ...)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    captureBytes: new Gauge({
      name: `${PREFIX}capture_bytes`,
      help: 'Bytes of response bodies held in memory for caching and coalescing right now',
      registers: [registry],
      collect() {
        this.set(heldBytes());
      },
    }),
    cacheAnswers: new Counter({
      name: `${PREFIX}cache_answers_total`,
      help: 'Responses by X-Cache: HIT (from the bucket, read-through), MISS (from imgproxy, read-through on), STALE (from the bucket, imgproxy failing)',
      labelNames: ['answer'],
      registers: [registry],
    }),
    bucketReads: new Counter({
      name: `${PREFIX}bucket_reads_total`,
      help: 'Reads of the bucket by the proxy, by purpose (read-through, stale) and result (hit, miss, error: slow, failing or refusing)',
      labelNames: ['purpose', 'result'],
      registers: [registry],
    }),
    bucketReadSeconds: new Histogram({
      name: `${PREFIX}bucket_read_duration_seconds`,
      help: 'Time of one read of the bucket by the proxy (bounded by S3_READ_TIMEOUT_MS)',
      labelNames: ['purpose'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    coalesced: new Counter({
      name: `${PREFIX}coalesced_total`,
      help: 'Requests that shared the imgproxy response of a request for the same image already in progress',
      registers: [registry],
    }),
    hits: new Counter({
      name: `${PREFIX}hits_total`,
      help: 'Stored images served (read-through hits and stale answers), by where they came from: memory (CACHE_MEMORY_BYTES) or bucket',
      labelNames: ['tier'],
      registers: [registry],
    }),
    bucketReadsShared: new Counter({
      name: `${PREFIX}bucket_reads_shared_total`,
      help: 'Requests that shared a bucket read of the same image already in progress, instead of reading it again',
      registers: [registry],
    }),
    memoryBytes: new Gauge({
      name: `${PREFIX}memory_tier_bytes`,
      help: 'Bytes of stored images held in memory (at most CACHE_MEMORY_BYTES)',
      registers: [registry],
      collect() {
        this.set(memory().bytes);
      },
    }),
    memoryEntries: new Gauge({
      name: `${PREFIX}memory_tier_entries`,
      help: 'Stored images held in memory',
      registers: [registry],
      collect() {
        this.set(memory().size);
      },
    }),
    memoryEvictions: new Counter({
      name: `${PREFIX}memory_tier_evictions_total`,
      help: 'Images that left memory, by reason: space (least recently used, for others), expired (their Cache-Control ran out), purged, replaced (the bucket holds another object at its key), missing (handed off, and the bucket never had it)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    memoryConfirmations: new Counter({
      name: `${PREFIX}memory_tier_confirmations_total`,
      help: 'Questions to the bucket about an image served from memory, once CACHE_MEMORY_CONFIRM_MS ran out, by answer: present, missing, replaced (another object at its key), error (slow or failing: asked again later)',
      labelNames: ['result'],
      registers: [registry],
    }),
    memoryRestores: new Counter({
      name: `${PREFIX}memory_tier_restores_total`,
      help: 'Images the bucket had lost, handed off again from memory without a render',
      registers: [registry],
    }),
    backlogMaxBytes: bound,
    sourceIndex: new Counter({
      name: `${PREFIX}source_index_total`,
      help: 'Images handed off, by what the source index made of them: indexed, encrypted (imgproxy Pro enc/: not purgeable by source), none (no source imgproxy would read), error (Redis did not answer)',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}

export interface UploaderMetrics {
  registry: Registry;
  uploads: Counter<'result' | 'queue'>;
  uploadErrors: Counter<'code'>;
  uploadSeconds: Histogram<'result'>;
  uploadBytes: Counter;
  queueJobs: Gauge<'state' | 'queue'>;
  backlogBytes: Gauge<'queue'>;
  workerRestarts: Counter<'queue'>;
}

/** `jobCounts` (state → count, by queue) and `backlogBytes` (by queue) are read at scrape time. */
export function createUploaderMetrics(
  registry: Registry,
  jobCounts: () => Promise<Record<string, Record<string, number>>> = async () => ({}),
  backlogBytes: () => Promise<Record<string, number>> = async () => ({}),
): UploaderMetrics {
  return {
    registry,
    uploads: new Counter({
      name: `${PREFIX}uploads_total`,
      help: 'Upload attempts by result (uploaded, already-present, retried, throttled, failed for good) and queue shard',
      labelNames: ['result', 'queue'],
      registers: [registry],
    }),
    uploadErrors: new Counter({
      name: `${PREFIX}upload_errors_total`,
      help: 'Failed upload attempts by S3 error code (AccessDenied, InternalError, SlowDown, Timeout, ...; "other" for failures that are not S3 answers)',
      labelNames: ['code'],
      registers: [registry],
    }),
    uploadSeconds: new Histogram({
      name: `${PREFIX}upload_duration_seconds`,
      help: 'Time of one upload attempt (read bytes, HEAD, PUT, mark)',
      labelNames: ['result'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    uploadBytes: new Counter({ name: `${PREFIX}upload_bytes_total`, help: 'Bytes written to S3', registers: [registry] }),
    queueJobs: new Gauge({
      name: `${PREFIX}queue_jobs`,
      help: 'Upload jobs by state and queue shard (read at scrape time)',
      labelNames: ['state', 'queue'],
      registers: [registry],
      async collect() {
        const counts = await jobCounts();
        this.reset(); // a queue no longer worked leaves no series behind
        for (const [queue, states] of Object.entries(counts)) for (const [state, n] of Object.entries(states)) this.set({ state, queue }, n);
      },
    }),
    backlogBytes: new Gauge({
      name: `${PREFIX}backlog_bytes`,
      help: 'Teed bytes waiting in Redis for upload, by queue shard (read at scrape time)',
      labelNames: ['queue'],
      registers: [registry],
      async collect() {
        const bytes = await backlogBytes();
        this.reset();
        for (const [queue, n] of Object.entries(bytes)) this.set({ queue }, n);
      },
    }),
    workerRestarts: new Counter({
      name: `${PREFIX}worker_restarts_total`,
      help: 'Shard workers restarted by the watchdog: their queue held jobs they could take and took none for UPLOAD_STUCK_MS',
      labelNames: ['queue'],
      registers: [registry],
    }),
  };
}
