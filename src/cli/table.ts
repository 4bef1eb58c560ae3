/**
 * A plain-text table for the operator commands (`cache ls`, `inspect`): columns as wide as
 * their widest cell, two spaces apart, no trailing blanks. One line a row, header first.
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  return [header, ...rows].map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd());
}
