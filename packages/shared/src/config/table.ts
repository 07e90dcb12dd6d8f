import { VARIABLES } from './load.js';
import type { Variable } from './variable.js';

/** The README's configuration table (scripts/config-table.mjs writes it; a test compares). */
export function configTable(): string {
  const code = (value: string) => (value === '' ? '*(empty)*' : `\`${value}\``);
  const rows = (VARIABLES as readonly Variable[]).map((v) => {
    let def = v.default === undefined ? '*(required)*' : code(v.default);
    if (v.roleDefaults) {
      const others = Object.entries(v.roleDefaults).map(([role, value]) => `${code(value)} (${role})`);
      def = `${def} (${v.roles.filter((r) => !(r in v.roleDefaults!)).join(', ')}), ${others.join(', ')}`;
    }
    return `| \`${v.name}\` | ${def} | ${v.roles.join(', ')} | ${v.description} |`;
  });
  return ['| Variable | Default | Read by | Meaning |', '|---|---|---|---|', ...rows].join('\n');
}
