/**
 * The relay's data plane for `sc2c server` and its relay shards (issue 23): `turn.dataPlane`
 * `native` runs sc2c-relayd (src/relay/native/relayd.c) and refuses to start without it, `node`
 * forwards in this process, and `auto` (the default) takes relayd when it can be built and run.
 */
import { NativePlaneUnavailable } from '../relay/native-build.ts';
import { NativePlane } from '../relay/native-plane.ts';

export type DataPlaneMode = 'auto' | 'native' | 'node';

export interface RelayPlane {
  readonly plane?: NativePlane;
  /** For the start-up line: which plane, and why not the native one. */
  readonly note: string;
}

export async function startRelayPlane(mode: DataPlaneMode, maxDatagramBytes?: number): Promise<RelayPlane> {
  if (mode === 'node') return { note: 'data plane in Node (turn.dataPlane: node)' };
  try {
    const plane = await NativePlane.start({ maxDatagramBytes });
    return { plane, note: 'native data plane (sc2c-relayd)' };
  } catch (error) {
    const why = error instanceof NativePlaneUnavailable ? error.message : String(error);
    if (mode === 'native') throw new Error(`turn.dataPlane is native but sc2c-relayd cannot run: ${why}`);
    return { note: `data plane in Node (${why})` };
  }
}
