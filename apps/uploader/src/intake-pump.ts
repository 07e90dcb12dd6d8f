import type { Queue } from 'bullmq';
import {
  UPLOAD_JOB_NAME,
  rateLimited,
  uploadJobOptions,
  type Config,
  type Intake,
  type IntakeEntry,
  type Logger,
  type Redis,
  type UploadJobData,
} from '@imgproxy-cache/shared';

// Turns the intake (images the proxies teed, shared/src/intake.ts) into upload jobs. Every
// uploader runs one pump, and pumps share the intake safely: a claim is atomic, and add() does
// nothing for an image whose job exists. A pump that dies between claiming images and releasing
// them leaves them in the claimed list; every pump scans that list each `rescanMs` and creates the
// jobs of images it finds there in two scans in a row.

/** Most images turned into jobs in one round (one addBulk). */
const BATCH = 100;
/** Longest blocking wait for the intake, so that a scan is never far behind. */
const WAIT_SEC = 2;

export interface IntakePumpOptions {
  intake: Intake;
  queue: Queue<UploadJobData>;
  /** a connection of the pump's own for the blocking wait; the pump disconnects it on close */
  blocking: Redis;
  config: Config;
  logger: Logger;
  /** how often the claimed list is scanned for images left by a pump that died */
  rescanMs?: number;
}

export class IntakePump {
  private running = true;
  private readonly loop: Promise<void>;
  private readonly logError = rateLimited(10_000);
  private readonly rescanMs: number;
  private lastScan = Date.now();
  /** claimed images seen by the last scan */
  private seen = new Set<string>();
  private wakeUp: (() => void) | undefined;

  constructor(private readonly options: IntakePumpOptions) {
    this.rescanMs = options.rescanMs ?? 10_000;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const { intake, blocking } = this.options;
    while (this.running) {
      try {
        if (Date.now() - this.lastScan >= this.rescanMs) await this.rescan();
        let batch = await intake.claim(BATCH);
        if (batch.size === 0) batch = await intake.waitAndClaim(blocking, Math.min(WAIT_SEC, this.rescanMs / 1000));
        if (batch.size > 0) await this.createJobs(batch);
      } catch (error) {
        if (!this.running) break;
        this.logError((suppressed) =>
          this.options.logger.warn({ err: (error as Error).message, suppressed }, 'Could not turn teed images into upload jobs; retrying'),
        );
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1000);
          this.wakeUp = () => (clearTimeout(timer), resolve());
        });
      }
    }
  }

  private async createJobs(batch: Map<string, IntakeEntry>): Promise<void> {
    const { queue, intake, config, logger } = this.options;
    for (const [id, entry] of batch) {
      // A failed job keeps its id for the dashboard; a new complete body for the image replaces it.
      if (entry.replace && (await queue.remove(id)) === 0) logger.debug({ key: id }, 'Failed job is locked (retried by hand?); keeping it');
    }
    await queue.addBulk([...batch].map(([id, entry]) => ({ name: UPLOAD_JOB_NAME, data: entry.data, opts: uploadJobOptions(config, id) })));
    await intake.release([...batch.keys()]);
  }

  /** Creates the jobs of images claimed by a pump that has not released them since the last scan. */
  private async rescan(): Promise<void> {
    this.lastScan = Date.now();
    const claimed = new Set(await this.options.intake.claimed());
    const stuck = [...claimed].filter((id) => this.seen.has(id));
    this.seen = claimed;
    if (stuck.length === 0) return;
    this.options.logger.warn({ images: stuck.length }, 'Teed images left claimed by an uploader that stopped: creating their jobs');
    await this.createJobs(await this.options.intake.read(stuck));
  }

  /** Stops after the round in flight (which only waits on Redis). */
  async close(): Promise<void> {
    this.running = false;
    this.options.blocking.disconnect();
    this.wakeUp?.();
    await this.loop;
  }
}
