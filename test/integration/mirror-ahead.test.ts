/**
 * A transition is shown by the activity that sees it (activities/mirror-ahead.ts): a build whose
 * init Job completed shows `stopped` at once, even while its workflow cannot yet take the init's
 * end; and the API, which lists it stopped, takes a start the workflow refuses until it has
 * caught up, instead of answering 409.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildStatus } from '../../domain/build.js';
import { buildName } from '../../domain/names.js';
import { createBuildCommands } from '../../api/commands.js';
import { InvalidTransitionError } from '../../lib/errors.js';
import { caughtUpSignal } from './fixtures/lagging-build-workflow.js';
import { createBuildEnv, slowInitRepo, type BuildEnv } from './build-env.js';
import { startWorkflowWorker, type WorkflowWorker } from './workflow-worker.js';

describe('a build whose init Job completed', () => {
  let env: BuildEnv;

  beforeAll(async () => {
    env = await createBuildEnv({ repos: [slowInitRepo('3s')] });
  });

  afterAll(async () => {
    await env?.close();
  });

  it('shows stopped while no builds worker can take its init activity’s end', async () => {
    const builds = await env.startWorker({ RUNBOAT_WORKER_ROLES: 'builds' });
    await env.startWorker({ RUNBOAT_WORKER_ROLES: 'init' });
    const commit = env.commit('acme/slow', 'ahead');
    const name = buildName(commit);
    await env.build(commit);
    await env.waitForStatus(name, 'initializing', 60_000);
    // From here on only the init worker runs: the workflow takes nothing until a builds
    // worker is back.
    await builds.stop('SIGKILL');
    const shown = await env.waitForShown(name, 'stopped', 30_000);
    expect(shown.metadata?.annotations?.['runboat/init-status']).toBe('succeeded');
    // The workflow catches up once a builds worker runs, and the build starts.
    await env.startWorker({ RUNBOAT_WORKER_ROLES: 'builds' });
    const commands = createBuildCommands({
      client: env.client,
      temporal: env.temporal,
      repos: () => [],
      shown: () => 'stopped',
    });
    await commands.transition(name, 'start');
    await env.waitForStatus(name, 'started', 30_000);
  });
});

describe('a start or stop the workflow refuses while the build shows it possible', () => {
  const taskQueue = `lagging-${randomBytes(4).toString('hex')}`;
  let worker: WorkflowWorker;

  beforeAll(async () => {
    worker = await startWorkflowWorker({
      taskQueue,
      workflowsPath: fileURLToPath(
        new URL('./fixtures/lagging-build-workflow.ts', import.meta.url),
      ),
    });
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
  });

  const lagging = async () => {
    const id = `lagging-${randomBytes(4).toString('hex')}`;
    return worker.client.workflow.start('laggingBuildWorkflow', { taskQueue, workflowId: id });
  };
  const commandsShowing = (status: BuildStatus, catchUpMs?: number) =>
    createBuildCommands({
      client: worker.client,
      temporal: {
        address: '',
        namespace: worker.client.options.namespace,
        buildsTaskQueue: taskQueue,
        initTaskQueue: taskQueue,
        imageBuildTaskQueue: taskQueue,
      },
      repos: () => [],
      shown: () => status,
      ...(catchUpMs === undefined ? {} : { catchUpMs }),
    });

  it('is taken once the workflow has caught up', async () => {
    const handle = await lagging();
    const began = Date.now();
    const started = commandsShowing('stopped').transition(handle.workflowId, 'start');
    await new Promise((resolve) => setTimeout(resolve, 500));
    await handle.signal(caughtUpSignal);
    await started;
    expect(Date.now() - began).toBeGreaterThanOrEqual(500);
    await handle.terminate();
  });

  it('is refused at once when the build shows it initializing', async () => {
    const handle = await lagging();
    const began = Date.now();
    const refused = commandsShowing('initializing').transition(handle.workflowId, 'stop');
    await expect(refused).rejects.toBeInstanceOf(InvalidTransitionError);
    await expect(refused).rejects.toThrow('cannot start build lagging: it is initializing');
    expect(Date.now() - began).toBeLessThan(1_000);
    await handle.terminate();
  });

  it('is refused once the workflow has not caught up in time', async () => {
    const handle = await lagging();
    const began = Date.now();
    const refused = commandsShowing('stopped', 1_000).transition(handle.workflowId, 'start');
    await expect(refused).rejects.toBeInstanceOf(InvalidTransitionError);
    expect(Date.now() - began).toBeGreaterThanOrEqual(1_000);
    await handle.terminate();
  });
});
