/** Runs matrix cells sent by `runCells` in this worker thread, one at a time. */
import { parentPort } from 'node:worker_threads';
import { type CellJob, runMatrixCell } from './matrix.ts';

parentPort!.on('message', async (message: { index: number; job: CellJob }) => {
  try {
    parentPort!.postMessage({ index: message.index, cell: await runMatrixCell(message.job) });
  } catch (error) {
    parentPort!.postMessage({ index: message.index, error: (error as Error).message });
  }
});
