import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from '../redis/connect.js';

// Our Lua scripts, each in its own file under packages/shared/commands (`<name>-<keys>.lua`, with
// a header naming every KEYS and ARGV entry, as BullMQ keeps its own). `--- @include "x"` pulls in
// `commands/includes/x.lua` once. Each script becomes the ioredis command `ic<Name>`.

const DIR = new URL('../../commands/', import.meta.url);
const INCLUDE = /^--- @include "([A-Za-z]+)"$/gm;

export interface Script {
  command: string;
  numberOfKeys: number;
  lua: string;
}

let scripts: Script[] | undefined;

/** Every script, read once. */
export function loadScripts(): Script[] {
  scripts ??= readdirSync(DIR)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const match = /^([A-Za-z]+)-(\d+)\.lua$/.exec(file);
      if (!match) throw new Error(`Lua script ${file} is not named <name>-<numberOfKeys>.lua`);
      const [, name, keys] = match;
      return { command: `ic${name![0]!.toUpperCase()}${name!.slice(1)}`, numberOfKeys: Number(keys), lua: withIncludes(read(file), new Set()) };
    });
  return scripts;
}

function read(path: string): string {
  return readFileSync(new URL(path, DIR), 'utf8');
}

function withIncludes(source: string, included: Set<string>): string {
  return source.replace(INCLUDE, (_, name: string) => {
    if (included.has(name)) return '';
    included.add(name);
    return withIncludes(read(`includes/${name}.lua`), included);
  });
}

/** Defines every script on a connection (once per connection). */
export function defineScripts(redis: Pick<Redis, 'defineCommand'>): void {
  const target = redis as unknown as Record<string, unknown>;
  for (const script of loadScripts()) {
    if (!target[script.command]) redis.defineCommand(script.command, { numberOfKeys: script.numberOfKeys, lua: script.lua });
  }
}
