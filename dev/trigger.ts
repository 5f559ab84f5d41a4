/**
 * `npm run trigger -- <owner/repo> <branch> [--pr N] [--sha SHA]`: asks the local system for a
 * build, as a webhook would, by starting (or finding) the build's workflow. Talks to the Temporal
 * server of `RUNBOAT_TEMPORAL_ADDRESS`, or of the sandbox `npm start` runs.
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultTaskQueues } from '../domain/messages.js';
import { connectClient, ensureBuild } from '../lib/temporal.js';
import { readSandboxInfo, sandboxRoot } from './sandbox.js';
import { isAlive } from './tools.js';

async function temporalAddress(): Promise<string> {
  if (process.env.RUNBOAT_TEMPORAL_ADDRESS) return process.env.RUNBOAT_TEMPORAL_ADDRESS;
  const root = sandboxRoot();
  for (const entry of await readdir(root).catch(() => [])) {
    const info = await readSandboxInfo(join(root, entry));
    if (info && isAlive(info.ownerPid)) return info.temporal.address;
  }
  throw new Error('no running sandbox (npm start) and no RUNBOAT_TEMPORAL_ADDRESS');
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { pr: { type: 'string' }, sha: { type: 'string' } },
  });
  const [repo, targetBranch] = positionals;
  if (!repo || !targetBranch)
    throw new Error('usage: npm run trigger -- <owner/repo> <branch> [--pr N] [--sha SHA]');
  const options = {
    address: await temporalAddress(),
    namespace: process.env.RUNBOAT_TEMPORAL_NAMESPACE ?? 'default',
    buildsTaskQueue: process.env.RUNBOAT_BUILDS_TASK_QUEUE ?? defaultTaskQueues.builds,
    initTaskQueue: process.env.RUNBOAT_INIT_TASK_QUEUE ?? defaultTaskQueues.init,
  };
  const client = await connectClient(options);
  const commit = {
    repo: repo.toLowerCase(),
    targetBranch,
    pr: values.pr === undefined ? null : Number(values.pr),
    gitCommit: values.sha ?? randomBytes(20).toString('hex'),
  };
  const handle = await ensureBuild(client, options, { commit, trigger: { kind: 'api' } });
  console.log(
    `build ${handle.workflowId} of ${commit.repo} ${commit.targetBranch} @ ${commit.gitCommit}`,
  );
  await client.connection.close();
}

main().catch((error: unknown) => {
  console.error(`[trigger] ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
