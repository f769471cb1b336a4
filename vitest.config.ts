import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    // Lab tests (root, namespaces) share kernel state; run files one at a time there.
    fileParallelism: true,
  },
});
