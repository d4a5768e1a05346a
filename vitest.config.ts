import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real ugate processes (2 worker threads each) and real origins;
    // on a 2-core box two files at a time keeps them from starving each other.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
});
