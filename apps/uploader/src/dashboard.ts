import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { DashboardConfig, UploadJobData } from '@imgproxy-cache/shared';
import type { Queue } from 'bullmq';
import { Hono } from 'hono';
import { basicAuth } from 'hono/basic-auth';

// Bull Board for the upload queue: failed uploads with their one-line reason, the image path and
// key (job data is metadata only, never the bytes), and Retry for one or all. Served at the root
// of DASHBOARD_BIND, behind basic auth whenever credentials are configured (config refuses a
// non-loopback address without them).

export interface Dashboard {
  app: Hono;
  /** shows these queues (the shards, and any of an earlier QUEUE_SHARDS) */
  show(queues: readonly Queue<UploadJobData>[]): void;
}

export function createDashboard(config: DashboardConfig, queues: readonly Queue<UploadJobData>[]): Dashboard {
  const adapterOf = (queue: Queue<UploadJobData>) => {
    const adapter = new BullMQAdapter(queue, { description: `Uploads to S3 bucket ${config.s3.bucket || '(see uploaders)'}` });
    // The list shows what an operator looks for: the path and the key.
    adapter.setFormatter('name', (job: { data?: Partial<UploadJobData> }) => `${job.data?.path ?? 'upload'}  →  ${job.data?.cacheKey ?? ''}`);
    return adapter;
  };

  const serverAdapter = new HonoAdapter(serveStatic);
  const board = createBullBoard({
    queues: queues.map(adapterOf),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'imgproxy-cache uploads' } },
  });
  serverAdapter.setBasePath('/');

  const app = new Hono();
  const { user, password } = config.dashboard;
  if (user !== undefined && password !== undefined) {
    app.use('*', basicAuth({ username: user, password, realm: 'imgproxy-cache dashboard' }));
  }
  app.route('/', serverAdapter.registerPlugin());
  return { app, show: (next) => board.replaceQueues(next.map(adapterOf)) };
}
