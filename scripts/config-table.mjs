#!/usr/bin/env node
// Rewrites the configuration table in README.md from packages/shared's VARIABLES (run after
// `npm run build`); test/readme.test.ts fails when the two disagree.
import { readFileSync, writeFileSync } from 'node:fs';
import { configTable } from '../packages/shared/dist/config/index.js';

const readmePath = new URL('../README.md', import.meta.url);
const readme = readFileSync(readmePath, 'utf8');
writeFileSync(readmePath, readme.replace(/(<!-- config-table:start -->)[\s\S]*?(<!-- config-table:end -->)/, `$1\n${configTable()}\n$2`));
