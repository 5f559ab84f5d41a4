/**
 * Proves the Temporal half of the sandbox is a real server: a workflow runs its activity on a real
 * Worker, and visibility finds it by the build search attributes.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { TypedSearchAttributes } from '@temporalio/common';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { describe, expect, inject, it } from 'vitest';
import { buildSearchAttributeKeys as keys } from '../../domain/search-attributes.js';
import { createSmokeActivities } from './fixtures/smoke-activities.js';
import { smokeWorkflow } from './fixtures/smoke-workflows.js';
import { eventually, temporalClient } from './helpers.js';

// The worker's lifecycle lines would bury the test report.
Runtime.install({ logger: new DefaultLogger('WARN') });

describe('the sandbox Temporal server', () => {
  it('runs a workflow through a real Worker and finds it by its search attributes', async () => {
    const { temporal } = inject('sandbox');
    const taskQueue = `smoke-${randomBytes(4).toString('hex')}`;
    const repo = `acme/smoke-${randomBytes(3).toString('hex')}`;
    const connection = await NativeConnection.connect({ address: temporal.address });
    const client = await temporalClient();
    try {
      const worker = await Worker.create({
        connection,
        namespace: temporal.namespace,
        taskQueue,
        workflowsPath: fileURLToPath(new URL('./fixtures/smoke-workflows.ts', import.meta.url)),
        activities: createSmokeActivities(taskQueue),
      });
      const result = await worker.runUntil(
        client.workflow.execute(smokeWorkflow, {
          taskQueue,
          workflowId: `smoke-${taskQueue}`,
          args: ['runboat'],
          typedSearchAttributes: new TypedSearchAttributes([
            { key: keys.repo, value: repo },
            { key: keys.targetBranch, value: 'feature/søk' },
            { key: keys.pr, value: 42 },
            { key: keys.commit, value: 'a'.repeat(40) },
            { key: keys.status, value: 'todo' },
          ]),
        }),
      );
      expect(result).toBe(`hello runboat from ${taskQueue}`);

      const query = `RunboatRepo = "${repo}" AND RunboatPr = 42 AND RunboatStatus = "stopped"`;
      const found = await eventually(async () => {
        const executions = [];
        for await (const execution of client.workflow.list({ query })) executions.push(execution);
        expect(executions).toHaveLength(1);
        return executions[0];
      });
      expect(found?.workflowId).toBe(`smoke-${taskQueue}`);
      expect(found?.status.name).toBe('COMPLETED');
      expect(found?.typedSearchAttributes.get(keys.targetBranch)).toBe('feature/søk');
    } finally {
      await client.connection.close();
      await connection.close();
    }
  });
});
