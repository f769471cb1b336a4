/**
 * Matrix cells in worker threads: each cell is a whole virtual network (server, NATs, gateways) on
 * its own virtual clock, so cells are independent and spread over the CPUs. Results come back in
 * job order whatever order they finish in.
 */
import type { CellJob, MatrixCell } from './matrix.ts';

export interface PoolInit {
  /** Worker threads; at most one per job. */
  readonly workers: number;
  /** After each finished cell: cells done, cells in all, and the cell. */
  readonly onCell?: (done: number, total: number, cell: MatrixCell) => void;
}

/** Runs every job; rejects with the first cell that threw (the other workers are stopped). */
export async function runCells(jobs: readonly CellJob[], init: PoolInit): Promise<MatrixCell[]> {
  const { Worker } = await import('node:worker_threads');
  const results: MatrixCell[] = new Array(jobs.length);
  const workers = Array.from(
    { length: Math.max(1, Math.min(init.workers, jobs.length)) },
    () => new Worker(new URL('./cell-worker.js', import.meta.url)),
  );
  let next = 0;
  let done = 0;
  try {
    await Promise.all(
      workers.map(
        (worker) =>
          new Promise<void>((resolve, reject) => {
            const dispatch = (): void => {
              if (next >= jobs.length) {
                resolve();
                return;
              }
              const index = next++;
              worker.postMessage({ index, job: jobs[index] });
            };
            worker.on('message', (message: { index: number; cell?: MatrixCell; error?: string }) => {
              if (message.error) {
                reject(new Error(`matrix cell ${message.index} failed: ${message.error}`));
                return;
              }
              results[message.index] = message.cell!;
              done++;
              init.onCell?.(done, jobs.length, message.cell!);
              dispatch();
            });
            worker.on('error', reject);
            dispatch();
          }),
      ),
    );
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return results;
}

/** `workers` threads, as many as the jobs need. */
export function poolSize(workers: number, jobs: number): number {
  return Math.max(1, Math.min(workers, jobs));
}
