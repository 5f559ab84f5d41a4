/**
 * What a pull request shows of its builds, against the real Temporal and Kubernetes and the fake
 * GitHub, as a GitHub App: a deployment per build whose status follows it (queued, in progress,
 * success with the live URL, failure with the init log, inactive once undeployed), a check run
 * per build whose Start, Stop and Reset buttons act on it through signed `check_run` deliveries,
 * refused when the delivery's installation is not the App's for the repo. Commit statuses stay.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildName, buildSlug } from '../../domain/names.js';
import { checkRunPayload, deliver, pushPayload } from '../../dev/webhook-deliveries.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const SECRET = 'previews-webhook-secret';
const ADMIN = 'previews-admin-token';
const INSTALLATION = 71;
const OTHER_INSTALLATION = 72;

let env: BuildEnv;
let api: WorkerProcess & { url: string };

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.failing, testRepos.acme] });
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const dir = await mkdtemp(join(tmpdir(), 'runboat-previews-'));
  const keyFile = join(dir, 'app.pem');
  await writeFile(keyFile, privateKey.export({ type: 'pkcs1', format: 'pem' }));
  env.github.app = {
    id: '5151',
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    installations: new Map([
      ['acme', INSTALLATION],
      ['other', OTHER_INSTALLATION],
    ]),
  };
  const app = {
    RUNBOAT_GITHUB_APP_ID: '5151',
    RUNBOAT_GITHUB_APP_PRIVATE_KEY_FILE: keyFile,
    RUNBOAT_GITHUB_DEPLOYMENTS: 'true',
    RUNBOAT_GITHUB_CHECK_RUNS: 'true',
    RUNBOAT_GITHUB_RECONCILE_SECONDS: '0',
    RUNBOAT_GITHUB_REDELIVER_SECONDS: '0',
  };
  await env.startWorker(app);
  api = await spawnApi(
    {
      ...env.workerEnv,
      ...app,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: SECRET,
      RUNBOAT_ADMIN_TOKEN: ADMIN,
    },
    join(dir, 'api.log'),
  );
});

afterAll(async () => {
  await api?.stop();
  await env?.close();
});

/** Pushes a new commit to a branch through a signed delivery; returns its build. */
async function push(repo: string, branch: string) {
  const after = randomBytes(20).toString('hex');
  const answer = await deliver(
    `${api.url}/webhooks/github`,
    'push',
    pushPayload({ repo, branch, after }),
    SECRET,
  );
  expect(answer.status).toBe(202);
  const commit = { repo, targetBranch: branch, pr: null, gitCommit: after };
  return { name: buildName(commit), slug: buildSlug(commit), sha: after };
}

const deploymentOf = (name: string) =>
  env.github.deployments.filter(
    (deployment) => (deployment.payload as { build?: string }).build === name,
  );
const checkRunsOf = (name: string) => env.github.checkRuns.filter((run) => run.externalId === name);
const lastWrite = (name: string) => checkRunsOf(name)[0]?.writes.at(-1) ?? {};
const actions = (write: Record<string, unknown>) =>
  ((write.actions ?? []) as { identifier: string }[]).map((action) => action.identifier);

function press(build: { name: string; sha: string }, identifier: string, installation: number) {
  return deliver(
    `${api.url}/webhooks/github`,
    'check_run',
    checkRunPayload({
      repo: 'acme/shop',
      identifier,
      externalId: build.name,
      headSha: build.sha,
      installation,
    }),
    SECRET,
  );
}

describe('GitHub deployments and check runs', () => {
  let build: { name: string; slug: string; sha: string };

  it('gives a ready build one deployment: queued, in progress, then success with its URL', async () => {
    build = await push('acme/shop', 'feature/x');
    await env.waitForStatus(build.name, 'stopped');
    const deployment = await eventually(async () => {
      const [found, ...more] = deploymentOf(build.name);
      expect(more).toEqual([]);
      expect(found?.statuses.map((status) => status.state)).toEqual([
        'queued',
        'in_progress',
        'success',
      ]);
      return found;
    }, 20_000);
    console.log(`deployment statuses: ${JSON.stringify(deployment?.statuses)}`);
    expect(deployment).toMatchObject({
      repo: 'acme/shop',
      ref: build.sha,
      environment: 'runboat/feature/x',
      transient: true,
      production: false,
    });
    expect(deployment?.statuses.at(-1)).toMatchObject({
      environmentUrl: `https://${build.slug}.runboat.test`,
      logUrl: `http://runboat.test/builds/${build.name}`,
    });
    // The commit status stays, for runboat compatibility.
    expect(env.github.statusesOf(build.sha).map((status) => status.state)).toContain('success');
  });

  it('keeps one check run per build, ready with the Start, Stop and Reset buttons', async () => {
    await eventually(async () => {
      expect(checkRunsOf(build.name)).toHaveLength(1);
      expect(lastWrite(build.name)).toMatchObject({ status: 'completed', conclusion: 'success' });
    }, 20_000);
    const [run] = checkRunsOf(build.name);
    console.log(
      `check run writes: ${run?.writes.map((write) => String(write.status)).join(' → ')}`,
    );
    expect(run?.writes.map((write) => write.status)).toEqual([
      'queued',
      'in_progress',
      'completed',
    ]);
    expect(run).toMatchObject({ repo: 'acme/shop', headSha: build.sha, name: 'runboat' });
    expect(actions(lastWrite(build.name))).toEqual(['start', 'stop', 'reset']);
    expect(lastWrite(build.name).details_url).toBe(`http://runboat.test/builds/${build.name}`);
  });

  it('starts and stops the build when its buttons are pressed', async () => {
    const started = await press(build, 'start', INSTALLATION);
    expect(started).toEqual({ status: 202, body: { build: build.name, transition: 'start' } });
    await env.waitForStatus(build.name, 'started');
    const stopped = await press(build, 'stop', INSTALLATION);
    expect(stopped.status).toBe(202);
    await env.waitForStatus(build.name, 'stopped');
  });

  it("refuses a press from another installation than the App's for the repo", async () => {
    const refused = await press(build, 'start', OTHER_INSTALLATION);
    expect(refused).toEqual({
      status: 403,
      body: { error: expect.stringContaining(`installation ${OTHER_INSTALLATION}`) },
    });
    // Nothing moved.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const deployment = await env.deployment(build.name);
    expect(deployment?.spec?.replicas).toBe(0);
  });

  it('marks the deployment inactive and the check run neutral once undeployed', async () => {
    const answer = await fetch(`${api.url}/api/v1/builds/${build.name}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(answer.status).toBeLessThan(300);
    await eventually(async () => expect(await env.deployment(build.name)).toBeUndefined(), 60_000);
    await eventually(async () => {
      expect(deploymentOf(build.name)[0]?.statuses.at(-1)?.state).toBe('inactive');
      expect(lastWrite(build.name)).toMatchObject({ status: 'completed', conclusion: 'neutral' });
    }, 20_000);
    expect(actions(lastWrite(build.name))).toEqual([]);
  });

  it('reports a failed init as a failed deployment linking the init log, with Reset only', async () => {
    const failed = await push('acme/broken', 'main');
    await env.waitForStatus(failed.name, 'failed');
    await eventually(async () => {
      const [deployment] = deploymentOf(failed.name);
      expect(deployment?.environment).toBe('runboat/main');
      expect(deployment?.statuses.at(-1)).toMatchObject({
        state: 'failure',
        logUrl: `http://runboat.test/api/v1/builds/${failed.name}/init-log`,
      });
      expect(lastWrite(failed.name)).toMatchObject({ status: 'completed', conclusion: 'failure' });
    }, 20_000);
    expect(actions(lastWrite(failed.name))).toEqual(['reset']);
  });
});
