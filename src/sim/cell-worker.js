// Worker-thread entry for the matrix cell pool (`sc2c sim population`, `sc2c sim extended`):
// TypeScript through tsx, as bin.js does.
import { register } from 'tsx/esm/api';

register();
await import('./cell-worker.ts');
