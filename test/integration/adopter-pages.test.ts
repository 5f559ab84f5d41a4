/**
 * The adopter reads the running build workflows page by page from Temporal's visibility API: a
 * build whose workflow is on a later page is not taken for an orphan, and an orphan is adopted.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { V1Deployment } from '@kubernetes/client-node';
import type { Client } from '@temporalio/client';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { inject } from 'vitest';
import { annotations, BUILD_LABEL, CLEANUP_FINALIZER } from '../../domain/build.js';
import { buildName } from '../../domain/names.js';
import { createKubeClients } from '../../lib/kube.js';
import { ensureBuild } from '../../lib/temporal.js';
import { startAdopter, type Adopter, type AdopterOptions } from '../../watcher/adopter.js';
import { createTestNamespace, eventually, temporalClient } from './helpers.js';

const { kube: sandbox } = inject('sandbox');
const kube = createKubeClients({ kubeconfig: sandbox.kubeconfig, context: sandbox.context });
const queue = `adopter-pages-${randomBytes(3).toString('hex')}`;
const temporal = { buildsTaskQueue: queue, initTaskQueue: `${queue}-init` };
let client: Client;
let namespace: string;
let adopter: Adopter | undefined;

beforeAll(async () => {
  client = await temporalClient();
  namespace = await createTestNamespace(kube.core, 'adopt-pages');
});

afterAll(async () => {
  await adopter?.stop();
  await terminateRunning(queue);
  await client.connection.close();
});

const commit = (branch: string) => ({
  repo: 'acme/pages',
  targetBranch: branch,
  pr: null,
  gitCommit: randomBytes(20).toString('hex'),
});

/** The lean Deployment the watcher's cache holds for a build of this commit. */
function deploymentOf(c: ReturnType<typeof commit>): V1Deployment {
  const name = buildName(c);
  return {
    metadata: {
      name,
      namespace,
      labels: { [BUILD_LABEL]: name, 'runboat/status': 'stopped' },
      annotations: {
        [annotations.repo]: c.repo,
        [annotations.targetBranch]: c.targetBranch,
        [annotations.pr]: '',
        [annotations.gitCommit]: c.gitCommit,
        [annotations.initStatus]: 'succeeded',
      },
      finalizers: [CLEANUP_FINALIZER],
    },
    spec: { replicas: 0, selector: {}, template: {} },
  };
}

/** Ends the workflows a test left running on a task queue. */
async function terminateRunning(taskQueue: string) {
  for await (const execution of client.workflow.list({
    query: `TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'`,
  })) {
    await client.workflow.getHandle(execution.workflowId).terminate('test over');
  }
}

type QueueNames = typeof temporal;

/** Build workflows on a queue no worker polls (they stay running), once Temporal counts them. */
async function runningBuilds(queues: QueueNames, commits: ReturnType<typeof commit>[]) {
  for (const c of commits) {
    await ensureBuild(
      client,
      { ...queues, address: '', namespace: client.options.namespace },
      { commit: c, trigger: { kind: 'api' } },
    );
  }
  await eventually(async () => {
    const { count } = await client.workflowService.countWorkflowExecutions({
      namespace: client.options.namespace,
      query: `TaskQueue = '${queues.buildsTaskQueue}' AND ExecutionStatus = 'Running'`,
    });
    expect(count?.toNumber()).toBe(commits.length);
  }, 20_000);
}

/** An adopter over these Deployments, its log lines kept. */
function loggedAdopter(
  queues: QueueNames,
  deployments: V1Deployment[],
  options: Pick<AdopterOptions, 'intervalMs' | 'listPageSize' | 'listEveryMs'>,
) {
  const lines: { msg?: string; build?: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as { msg?: string; build?: string });
      done();
    },
  });
  const started = startAdopter({
    watcher: { deployments: () => deployments },
    kube,
    namespace,
    client,
    temporal: { ...queues, address: '', namespace: client.options.namespace },
    logger: pino({ level: 'debug' }, sink),
    ...options,
  });
  return { adopter: started, lines };
}

describe('the adopter', () => {
  it('reads every page of running workflows, and adopts only the orphan', async () => {
    // Five builds whose workflows run (no worker polls their queue: they stay running), and one
    // Deployment without a workflow.
    const running = Array.from({ length: 5 }, (_, index) => commit(`runs-${index}`));
    await runningBuilds(temporal, running);
    const orphan = commit('orphan');
    const logged = loggedAdopter(temporal, [...running, orphan].map(deploymentOf), {
      intervalMs: 3_600_000,
      // Five running workflows on three pages.
      listPageSize: 2,
    });
    adopter = logged.adopter;
    const { lines } = logged;
    await eventually(async () => {
      expect(lines.some((line) => line.msg === 'adoption round')).toBe(true);
    }, 20_000);
    const adopted = lines.filter((line) => line.msg === 'adopted').map((line) => line.build);
    expect(adopted).toEqual([buildName(orphan)]);
    expect((await client.workflow.getHandle(buildName(orphan)).describe()).status.name).toBe(
      'RUNNING',
    );
  });
});

describe('the adopter between two listings', () => {
  const looked = `${queue}-between`;
  const temporalLooked = { buildsTaskQueue: looked, initTaskQueue: `${looked}-init` };

  afterAll(async () => {
    await terminateRunning(looked);
  });

  it('looks only at new Deployments and closed workflows, and adopts their orphans', async () => {
    const commits = Array.from({ length: 3 }, (_, index) => commit(`between-${index}`));
    await runningBuilds(temporalLooked, commits);

    // The real service, its queries recorded: a listing of every running workflow is the query
    // that names neither workflow ids nor a close time.
    const lists = vi.spyOn(client.workflowService, 'listWorkflowExecutions');
    const queries = () => lists.mock.calls.map(([request]) => request.query ?? '');
    const listings = () =>
      queries().filter((query) => !/WorkflowId IN|CloseTime/.test(query)).length;
    const deployments = commits.map(deploymentOf);
    const { adopter: between, lines } = loggedAdopter(temporalLooked, deployments, {
      intervalMs: 100,
      listEveryMs: 3_600_000,
    });
    const adoptedBuilds = () =>
      new Set(lines.filter((line) => line.msg === 'adopted').map((line) => line.build));
    try {
      // The first round lists every running workflow; the next ones only ask which closed.
      await eventually(async () =>
        expect(queries().filter((query) => query.includes('CloseTime')).length).toBeGreaterThan(5),
      );
      expect(listings()).toBe(1);
      expect(adoptedBuilds()).toEqual(new Set());

      // A workflow terminated by hand while its Deployment stays: adopted within a round or two.
      const lost = buildName(commits[1] ?? commit('none'));
      await client.workflow.getHandle(lost).terminate('lost by hand');
      await eventually(async () => expect(adoptedBuilds()).toEqual(new Set([lost])), 20_000);
      expect((await client.workflow.getHandle(lost).describe()).status.name).toBe('RUNNING');

      // A Deployment that comes without a workflow (the Python runboat's): adopted.
      const legacy = commit('between-legacy');
      deployments.push(deploymentOf(legacy));
      await eventually(
        async () => expect(adoptedBuilds()).toEqual(new Set([lost, buildName(legacy)])),
        20_000,
      );
      expect(listings()).toBe(1);

      // Asked for (Temporal was seen to have lost its workflows): the next round lists.
      between.runSoon();
      await eventually(async () => expect(listings()).toBe(2));
    } finally {
      await between.stop();
      lists.mockRestore();
    }
  });
});
