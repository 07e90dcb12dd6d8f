#!/usr/bin/env node
// Rewrites the configuration table in README.md from packages/shared's VARIABLES (run after
// `npm run build`); test/readme.test.ts fails when the two disagree.
import { readFileSync, writeFileSync } from 'node:fs';
import { VARIABLES } from '../packages/shared/dist/config.js';

const readmePath = new URL('../README.md', import.meta.url);
const rows = VARIABLES.map((v) => {
  const def = v.default === undefined ? '*(required)*' : v.default === '' ? '*(empty)*' : `\`${v.default}\``;
  return `| \`${v.name}\` | ${def} | ${v.roles.join(', ')} | ${v.description} |`;
});
const table = ['| Variable | Default | Read by | Meaning |', '|---|---|---|---|', ...rows].join('\n');
const readme = readFileSync(readmePath, 'utf8');
const next = readme.replace(/(<!-- config-table:start -->)[\s\S]*?(<!-- config-table:end -->)/, `$1\n${table}\n$2`);
writeFileSync(readmePath, next);
