// A relay shard's process (issue 23, see relay-shards.ts): runs the TypeScript through tsx, as `src/cli/bin.js` does.
import { register } from 'tsx/esm/api';

register();
await import('./relay-shard.ts');
