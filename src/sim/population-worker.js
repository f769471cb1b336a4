// Worker-thread entry for `sc2c sim population`: TypeScript through tsx, as bin.js does.
import { register } from 'tsx/esm/api';

register();
await import('./population-worker.ts');
