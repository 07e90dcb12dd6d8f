import { type ChildProcess, spawn } from 'node:child_process';
import type { Ended, Unit } from '@imgproxy-cache/shared';

/** A service in a child process of its own; its output is this process's. */
export class ChildUnit implements Unit {
  private readonly child: ChildProcess;
  readonly ended: Promise<Ended>;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    options: { cwd: string; env: NodeJS.ProcessEnv },
  ) {
    this.child = spawn(command, args, { ...options, stdio: 'inherit' });
    this.ended = new Promise((resolve) => {
      // a command that cannot start at all (imgproxy missing) emits 'error' and no 'exit'
      this.child.once('error', (error) => {
        console.error(`imgproxy-cache: could not start ${name}: ${error.message}`);
        resolve({ code: 127, signal: null });
      });
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
    });
  }

  private get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  stop(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  kill(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}
