import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The abuse test floods loopback for 20 s with both cores busy: beside the lab's userspace
    // routers it would starve them (their STUN probes timed out). \`npm test\` runs it on its own,
    // after the rest (SC2C_ABUSE=1).
    exclude: process.env.SC2C_ABUSE ? [] : ['test/cli/abuse.test.ts'],
    testTimeout: 30_000,
    // Lab tests (root, namespaces) share kernel state; run files one at a time there.
    fileParallelism: true,
  },
});
