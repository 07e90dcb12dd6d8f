import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './free-port.js';
import { waitFor } from './wait.js';

// The compose file's S3 server stand-in (containers/versitygw) as a child process, configured as
// the compose file configures the real one.

export interface TestVersity {
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function startVersityStandin(credentials = { accessKeyId: 'root-access-key', secretAccessKey: 'root-secret-key' }): Promise<TestVersity> {
  const dir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-vgw-'));
  const port = await freePort();
  const script = fileURLToPath(new URL('./containers/versitygw/versitygw.mjs', import.meta.url));
  const child = spawn(process.execPath, [script, 'posix', dir], {
    env: {
      PATH: process.env.PATH ?? '',
      ROOT_ACCESS_KEY: credentials.accessKeyId,
      ROOT_SECRET_KEY: credentials.secretAccessKey,
      VGW_PORT: `:${port}`,
      VGW_HEALTH: '/health',
    },
    stdio: 'ignore',
  });
  const endpoint = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`the S3 stand-in exited with ${child.exitCode}`);
      return (await fetch(`${endpoint}/health`)).ok;
    },
    { what: 'the S3 stand-in' },
  );
  return {
    endpoint,
    credentials,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
