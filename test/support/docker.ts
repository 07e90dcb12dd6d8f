import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ROOT } from './service.js';

// The Docker engine as users drive it: the docker CLI (DOCKER_HOST honoured) with the classic
// builder, and compose (`docker compose`, else Debian's `docker-compose`). Third-party images that
// no registry gives are stood in for by ours (containers/), under the names our files use.

const BUILD_ENV = { DOCKER_BUILDKIT: '0', COMPOSE_DOCKER_CLI_BUILD: '0' };

export interface RunOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** Runs a command; resolves with its stdout, rejects with its stderr. */
export function run(command: string, args: string[], { timeoutMs = 120_000, env = {} }: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 * 2 ** 20, env: { ...process.env, ...BUILD_ENV, ...env } },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

export const docker = (args: string[], options?: RunOptions) => run('docker', args, options);

/** Whether an engine answers (DOCKER_HOST, or the default socket). */
export async function engineAnswers(): Promise<boolean> {
  try {
    await docker(['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** compose v2 (`docker compose`) where installed, else Debian's docker-compose 1.29. */
export async function composeCommand(): Promise<string[]> {
  try {
    await docker(['compose', 'version'], { timeoutMs: 10_000 });
    return ['docker', 'compose'];
  } catch {
    return ['docker-compose'];
  }
}

async function present(image: string): Promise<boolean> {
  try {
    await docker(['image', 'inspect', image], { timeoutMs: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes `image` available: already there, pulled, or (where no registry answers) built from our
 * stand-in. Without a stand-in, a missing image that cannot be pulled is an error saying so.
 */
export async function ensureImage(image: string, standin?: { context: string; dockerfile?: string }, buildArgs: Record<string, string> = {}): Promise<void> {
  if (await present(image)) return;
  try {
    await docker(['pull', image], { timeoutMs: 120_000 });
    return;
  } catch (error) {
    if (!standin) {
      throw new Error(
        `${image} is not on this engine and cannot be pulled (${(error as Error).message.split('\n')[0]}): build it locally under that name (in CI, .ci/run does with local-images.sh)`,
      );
    }
  }
  const args = ['build', '-q', '-t', image, ...Object.entries(buildArgs).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`])];
  if (standin.dockerfile) args.push('-f', standin.dockerfile);
  await docker([...args, standin.context], { timeoutMs: 600_000 });
}

/** The third-party images our files name, as written in them. */
export function imagesOfOurFiles(): { node: string; redis: string; imgproxy: string; s3: string; imgproxyOfDockerfile: string } {
  const dockerfile = readFileSync(`${ROOT}/Dockerfile`, 'utf8');
  const compose = parse(readFileSync(`${ROOT}/docker-compose.yml`, 'utf8'), { merge: true }) as { services: Record<string, { image?: string }> };
  const arg = (name: string) => new RegExp(`^ARG ${name}=(\\S+)$`, 'm').exec(dockerfile)?.[1];
  const service = (name: string) => compose.services[name]?.image;
  const found = {
    node: arg('NODE_IMAGE'),
    imgproxyOfDockerfile: arg('IMGPROXY_IMAGE'),
    redis: service('redis'),
    imgproxy: service('imgproxy'),
    s3: service('s3'),
  };
  for (const [name, value] of Object.entries(found)) if (!value) throw new Error(`no ${name} image found in the Dockerfile or the compose file`);
  return found as Record<keyof typeof found, string>;
}

/** Our stand-ins for the images no registry gives here, built FROM the Dockerfile's node image. */
export async function ensureThirdPartyImages(): Promise<ReturnType<typeof imagesOfOurFiles>> {
  const images = imagesOfOurFiles();
  await ensureImage(images.node);
  await ensureImage(images.redis);
  const nodeArg = { NODE_IMAGE: images.node };
  for (const imgproxy of new Set([images.imgproxy, images.imgproxyOfDockerfile])) {
    await ensureImage(imgproxy, { context: 'test/support', dockerfile: 'test/support/containers/imgproxy/Dockerfile' }, nodeArg);
  }
  await ensureImage(images.s3, { context: 'test/support/containers/versitygw' }, nodeArg);
  return images;
}

export interface ContainerState {
  name: string;
  service: string;
  status: string;
  health: string | undefined;
  exitCode: number;
}

/** Every container of a compose project, with its state. */
export async function projectContainers(project: string): Promise<ContainerState[]> {
  const ids = (await docker(['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`])).split('\n').filter(Boolean);
  if (ids.length === 0) return [];
  const inspected = JSON.parse(await docker(['inspect', ...ids])) as {
    Name: string;
    Config: { Labels: Record<string, string> };
    State: { Status: string; ExitCode: number; Health?: { Status: string } };
  }[];
  return inspected.map((c) => ({
    name: c.Name.replace(/^\//, ''),
    service: c.Config.Labels['com.docker.compose.service'] ?? '',
    status: c.State.Status,
    health: c.State.Health?.Status,
    exitCode: c.State.ExitCode,
  }));
}

/** The host port a container's port is published on, now (it changes when a container restarts). */
export async function hostPort(container: string, port: number): Promise<number> {
  const out = await docker(['port', container, String(port)]);
  const match = /:(\d+)\s*$/m.exec(out.split('\n')[0] ?? '');
  if (!match) throw new Error(`${container} publishes no port ${port}: ${out}`);
  return Number(match[1]);
}
