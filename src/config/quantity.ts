/** Kubernetes-style byte quantities: `500Gi`, `1.5T`, `1048576`. */
const UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
};

export function parseQuantity(value: string | number): number {
  if (typeof value === 'number') return value;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kKMGTP]i?)?\s*$/.exec(value);
  const unit = match ? (match[2] ?? '') : undefined;
  if (!match || unit === undefined || !(unit in UNITS)) {
    throw new Error(`"${value}" is not a byte quantity (use e.g. 500Gi, 200G or 1048576)`);
  }
  return Math.floor(Number(match[1]) * UNITS[unit]!);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(1)} ${units[i]}`;
}
