import { readdirSync, readFileSync } from 'node:fs';

// Processes on this host as /proc tells them (Linux): which a process started, and their command lines.

/** Every pid, each with its parent and its command line (NUL-separated); those gone meanwhile are left out. */
function processes(): { pid: number; parent: number; cmdline: string }[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .flatMap((e) => {
      try {
        const parent = Number(readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
        return [{ pid: Number(e), parent, cmdline: readFileSync(`/proc/${e}/cmdline`, 'utf8') }];
      } catch {
        return [];
      }
    });
}

/** pids of the processes whose parent is `pid` */
export function childrenOf(pid: number): number[] {
  return processes()
    .filter((p) => p.parent === pid)
    .map((p) => p.pid);
}

/** command lines of the processes whose parent is `pid` */
export function commandsOfChildren(pid: number): string[] {
  return processes()
    .filter((p) => p.parent === pid)
    .map((p) => p.cmdline);
}

/** whether any process's command line holds `text` */
export function anyProcessMentions(text: string): boolean {
  return processes().some((p) => p.cmdline.includes(text));
}
