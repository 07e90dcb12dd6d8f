// The tables' cells: numbers to one or two decimals (empty when unknown), CPU and Redis commands by name.

export const f1 = (x) => (x === undefined || Number.isNaN(x) ? '' : x.toFixed(1));
export const f2 = (x) => (x === undefined || Number.isNaN(x) ? '' : x.toFixed(2));
export const sum = (cpu) => Object.values(cpu).reduce((a, b) => a + b, 0);

export const cpuCell = (r) =>
  Object.entries(r.cpuMsPerImage)
    .map(([k, v]) => `${k} ${f2(v)}`)
    .join(', ');

export const commandsCell = (r) =>
  Object.entries(r.commands)
    .filter(([, v]) => v >= 0.05)
    .map(([k, v]) => `${k} ${f1(v)}`)
    .join(', ');

/** How our proxy compares with the minimal one; in one process it cannot be told from the uploader. */
export const versusFloor = (r, floor) =>
  r.cpuMsPerImage.proxy === undefined
    ? ' (proxy and uploader in one process)'
    : ` (proxy ${f2(r.cpuMsPerImage.proxy / floor.cpuMsPerImage.proxy)}× the minimal proxy)`;
