/** Runs population jobs (one matrix cell each) sent by `runPopulation` in this worker thread. */
import { parentPort } from 'node:worker_threads';
import { modelBehaviour } from '../nat/population.ts';
import { loadProfiles } from '../nat/profiles.ts';
import { runMatrixCell } from './matrix.ts';
import { natClass, type PopulationJob } from './population.ts';

const catalog = loadProfiles();

parentPort!.on(
  'message',
  async (message: { index: number; job: PopulationJob; oneWayMs: [number, number] }) => {
    const { job } = message;
    try {
      const cell = await runMatrixCell({
        calling: { name: natClass(job.calling), behaviour: modelBehaviour(job.calling, catalog) },
        called: { name: natClass(job.called), behaviour: modelBehaviour(job.called, catalog) },
        mode: job.mode,
        trials: job.trials,
        oneWayMs: message.oneWayMs,
        backgroundPerSecond: 0,
        seed: job.seed,
        keepSetups: true,
      });
      parentPort!.postMessage({
        index: message.index,
        result: {
          successes: cell.successes,
          trials: cell.trials,
          setupsMs: cell.setupsMs ?? [],
          failures: cell.failures,
        },
      });
    } catch (error) {
      parentPort!.postMessage({ index: message.index, error: (error as Error).message });
    }
  },
);
