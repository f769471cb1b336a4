/** The open-file limit: a signaling connection each device (issue 24), in the server and the benchmark. */
import { readFileSync } from 'node:fs';

/** This process's open-file limit (soft), from /proc; Infinity when unlimited or unreadable. */
export function openFileLimit(): number {
  try {
    const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line && line[1] !== 'unlimited' ? Number(line[1]) : Number.POSITIVE_INFINITY;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}
