// A relay shard's process (issue 23): runs the TypeScript through tsx, as `src/cli/bin.js` does.
import { register } from 'tsx/esm/api';

register();
await import('./turn-shard.ts');
