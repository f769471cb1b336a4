#!/usr/bin/env node
// Entry point for `npx sc2c`: runs the TypeScript sources through tsx so that no build step is needed
// after `npm ci`, and a spawned lab process always runs the code that is checked out.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
