/**
 * Ends a vitest run with one plain line, `tests: N passed, N failed, N skipped`, that CI logs and
 * scripts can read without parsing vitest's coloured summary. A module that failed outside its
 * tests (load error, failing hook) and each unhandled error count as one failure.
 */
import type { Reporter, TestModule } from 'vitest/node';

type SerializedErrors = Parameters<NonNullable<Reporter['onTestRunEnd']>>[1];

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: SerializedErrors): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const module of testModules) {
      let failedInModule = 0;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failedInModule++;
        else skipped++;
      }
      // A module that failed on its own (load error, failing hook) counts once.
      failed += failedInModule > 0 ? failedInModule : module.state() === 'failed' ? 1 : 0;
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
