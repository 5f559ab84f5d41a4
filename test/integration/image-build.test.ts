/**
 * Image builds against the real system (real worker and API processes, real Temporal and
 * Kubernetes; kwok ends the build Job's pod as the test asks): a repo entry with `imageBuild`
 * builds `<registry>/<name>:<sha>` in a build Job before its init, shows `building` meanwhile,
 * runs its init Job and Deployment on that image, builds one sha once (a second build of it, a
 * reset), fails with the build log linked, and an undeploy during the build ends the build Job.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Watch, type V1Job } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILD_LABEL, JOB_KIND_LABEL, type CommitInfo } from '../../domain/build.js';
import { buildName } from '../../domain/names.js';
import { imageRecordName } from '../../activities/image-build.js';
import { servePodLogs } from '../../dev/kwok-logs.js';
import { OUTCOME_LABEL, RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { isKubeStatus } from '../../lib/kube.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const TOKEN = 'image-build-admin-token';
const REGISTRY = 'registry.test/previews';
const BUILDER_LINE = 'INFO[0003] Pushing image to registry.test/previews (kaniko in the sandbox)';

let env: BuildEnv;
let api: WorkerProcess & { url: string };
/** Every build Job the cluster showed: name → its build's label. */
const buildJobs = new Map<string, string>();
/** Every init Job the cluster showed: name → its container image. */
const initJobs = new Map<string, string>();
let stopWatching: () => void = () => undefined;

/** The repos file; `slowFor` is how long the builds of acme/imageslow run. */
function repos(slowFor: string): unknown[] {
  return [
    {
      repo: 'acme/imaged',
      branch: '.*',
      builds: [
        {
          imageBuild: { registry: REGISTRY },
          // Long enough to see `building` through the API.
          templateVars: { buildPodAnnotations: { [RUN_FOR_ANNOTATION]: '2s' } },
        },
      ],
    },
    {
      repo: 'acme/imagefail',
      branch: '.*',
      builds: [
        {
          imageBuild: { registry: REGISTRY, name: 'broken', dockerfile: 'docker/Dockerfile' },
          templateVars: { buildPodLabels: { [OUTCOME_LABEL]: 'fail' } },
        },
      ],
    },
    {
      repo: 'acme/imagewait',
      branch: '.*',
      builds: [
        {
          imageBuild: { registry: REGISTRY },
          templateVars: { buildPodAnnotations: { [RUN_FOR_ANNOTATION]: '4s' } },
        },
      ],
    },
    {
      repo: 'acme/imageslow',
      branch: '.*',
      builds: [
        {
          imageBuild: { registry: REGISTRY },
          templateVars: { buildPodAnnotations: { [RUN_FOR_ANNOTATION]: slowFor } },
        },
      ],
    },
  ];
}

beforeAll(async () => {
  env = await createBuildEnv({ repos: repos('10m') });
  const dir = await mkdtemp(join(tmpdir(), 'runboat-image-build-'));
  // kwok runs no process: every pod of the namespace shows this as its log.
  await servePodLogs(env.kube.config, {
    namespace: env.namespace,
    file: join(dir, 'pods.log'),
    lines: [BUILDER_LINE],
  });
  const controller = await new Watch(env.kube.config).watch(
    `/apis/batch/v1/namespaces/${env.namespace}/jobs`,
    {},
    (_phase, job: V1Job) => {
      const name = job.metadata?.name ?? '';
      const labels = job.metadata?.labels ?? {};
      if (labels[JOB_KIND_LABEL] === 'build') buildJobs.set(name, labels[BUILD_LABEL] ?? '');
      if (labels[JOB_KIND_LABEL] === 'initialize') {
        initJobs.set(name, job.spec?.template.spec?.containers[0]?.image ?? '');
      }
    },
    () => undefined,
  );
  stopWatching = () => controller.abort();
  // Two image build slots: two builds of one commit at once wait for one build Job.
  await env.startWorker({ RUNBOAT_MAX_IMAGE_BUILDS: '2' });
  api = await spawnApi(
    {
      ...env.workerEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: 'image-build-secret',
      RUNBOAT_ADMIN_TOKEN: TOKEN,
    },
    join(dir, 'api.log'),
  );
});

afterAll(async () => {
  stopWatching();
  await api?.stop();
  await env?.close();
});

async function call(method: string, path: string) {
  const response = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // a log is text
  }
  return { status: response.status, json, text };
}

/** Polls the API for the build's status, recording every status seen on the way. */
async function waitForApi(name: string, status: string, seen?: string[], timeoutMs = 60_000) {
  return eventually(
    async () => {
      const { json } = await call('GET', `/api/v1/builds/${name}`);
      const now = (json.status as string | undefined) ?? 'none';
      if (seen && seen.at(-1) !== now) seen.push(now);
      expect(now).toBe(status);
      return json;
    },
    timeoutMs,
    50,
  );
}

const builtImage = (commit: CommitInfo, name = 'acme-imaged') =>
  `${REGISTRY}/${name}:${commit.gitCommit}`;

const jobsOf = (build: string) =>
  [...buildJobs].filter(([, owner]) => owner === build).map(([job]) => job);

async function jobExists(name: string): Promise<boolean> {
  try {
    await env.kube.batch.readNamespacedJob({ name, namespace: env.namespace });
    return true;
  } catch (error) {
    if (isKubeStatus(error, 404)) return false;
    throw error;
  }
}

describe('an image build', () => {
  const branch = () => env.commit('acme/imaged', 'main');
  let first: CommitInfo;

  it('shows building, then runs the init Job and the Deployment on the image it built', async () => {
    first = branch();
    const name = buildName(first);
    await env.build(first);
    const seen: string[] = [];
    await waitForApi(name, 'building', seen);
    await waitForApi(name, 'stopped', seen);
    console.log(`statuses seen through the API: ${seen.join(' → ')}`);
    expect(seen).toContain('building');
    expect(seen.indexOf('building')).toBeLessThan(seen.indexOf('stopped'));

    expect(jobsOf(name)).toEqual([`${name}-build-1`]);
    expect(initJobs.get(`${name}-init-1`)).toBe(builtImage(first));
    const deployment = await env.deployment(name);
    expect(deployment?.spec?.template.spec?.containers[0]?.image).toBe(builtImage(first));
    expect(deployment?.metadata?.annotations?.['runboat/image-status']).toBe('built');
    const view = await call('GET', `/api/v1/builds/${name}`);
    expect(view.json.image_status).toBe('built');

    const record = await env.kube.core.readNamespacedConfigMap({
      name: imageRecordName(builtImage(first)),
      namespace: env.namespace,
    });
    expect(record.data).toMatchObject({
      ref: builtImage(first),
      state: 'built',
      job: `${name}-build-1`,
    });
    // Kept after the build, labelled with no build: it outlives them.
    expect(record.metadata?.labels?.[BUILD_LABEL]).toBeUndefined();
    const log = await call('GET', `/api/v1/builds/${name}/build-log`);
    expect(log.status).toBe(200);
    expect(log.text).toMatch(new RegExp(`^# ${name}-build-1: succeeded`));
    expect(log.text).toContain(BUILDER_LINE);
    // Commit statuses go out in order, after the transition they tell: the last may follow
    // `stopped` by a moment.
    await eventually(async () =>
      expect(env.github.statusesOf(first.gitCommit).at(-1)?.state).toBe('success'),
    );
    const statuses = env.github.statusesOf(first.gitCommit).map((s) => s.description);
    expect(statuses).toContain('building image');
  });

  it('is not built again for a pull request of the same commit: no build Job, same image', async () => {
    const pr: CommitInfo = { ...first, pr: 7, headRepo: 'acme/imaged' };
    const name = buildName(pr);
    expect(name).not.toBe(buildName(first));
    await env.build(pr);
    await waitForApi(name, 'stopped');
    expect(jobsOf(name)).toEqual([]);
    expect(initJobs.get(`${name}-init-1`)).toBe(builtImage(first));
    const deployment = await env.deployment(name);
    expect(deployment?.spec?.template.spec?.containers[0]?.image).toBe(builtImage(first));
    const log = await call('GET', `/api/v1/builds/${name}/build-log`);
    expect(log.status).toBe(200);
    expect(log.text).toContain(`image ${builtImage(first)} was built before`);
  });

  it('is not built again by a reset of the build', async () => {
    const name = buildName(first);
    const reset = await call('POST', `/api/v1/builds/${name}/reset`);
    expect(reset.status).toBe(202);
    await eventually(async () => expect(initJobs.has(`${name}-init-2`)).toBe(true), 60_000, 100);
    await waitForApi(name, 'stopped');
    expect(jobsOf(name)).toEqual([`${name}-build-1`]);
    expect(initJobs.get(`${name}-init-2`)).toBe(builtImage(first));
  });

  it('runs once for two builds of one commit asked for at once: the second waits for it', async () => {
    const branchBuild = env.commit('acme/imagewait', 'main');
    const prBuild: CommitInfo = { ...branchBuild, pr: 9, headRepo: 'acme/imagewait' };
    const names = [buildName(branchBuild), buildName(prBuild)];
    await Promise.all([env.build(branchBuild), env.build(prBuild)]);
    await Promise.all(names.map((name) => waitForApi(name, 'stopped')));
    const jobs = names.flatMap(jobsOf);
    expect(jobs).toHaveLength(1);
    const image = builtImage(branchBuild, 'acme-imagewait');
    for (const name of names) expect(initJobs.get(`${name}-init-1`)).toBe(image);
    // Both keep the log of the one build Job.
    for (const name of names) {
      const log = await call('GET', `/api/v1/builds/${name}/build-log`);
      expect(log.text).toMatch(new RegExp(`^# ${jobs[0]}: succeeded`));
      expect(log.text).toContain(BUILDER_LINE);
    }
  });

  it('that fails ends failed with the reason and its log; the init never runs', async () => {
    const commit = env.commit('acme/imagefail', 'feature/x');
    const name = buildName(commit);
    await env.build(commit);
    const failed = await waitForApi(name, 'failed');
    console.log(`failure_reason: ${String(failed.failure_reason)}`);
    expect(failed.failure_reason).toMatch(
      new RegExp(`^ImageBuildFailed: build Job ${name}-build-1 failed: BackoffLimitExceeded`),
    );
    expect(failed.image_status).toBe('failed');
    const log = await call('GET', `/api/v1/builds/${name}/build-log`);
    expect(log.status).toBe(200);
    expect(log.text).toMatch(new RegExp(`^# ${name}-build-1: failed`));
    expect(log.text).toContain(BUILDER_LINE);
    const status = await eventually(async () => {
      const last = env.github.statusesOf(commit.gitCommit).at(-1);
      expect(last?.state).toBe('failure');
      return last;
    });
    expect(status?.targetUrl).toBe(`http://runboat.test/api/v1/builds/${name}/build-log`);
    expect(status?.description).toMatch(/^ImageBuildFailed: /);
    expect(jobsOf(name)).toEqual([`${name}-build-1`]);
    expect([...initJobs.keys()].filter((job) => job.startsWith(name))).toEqual([]);
    expect(await jobExists(`${name}-init-1`)).toBe(false);
    // The build stays for reset and undeploy.
    expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
    await eventually(
      async () => expect((await call('GET', `/api/v1/builds/${name}`)).status).toBe(404),
      60_000,
      100,
    );
  });

  let slow: CommitInfo;

  it('is ended by an undeploy while it builds: the build Job is deleted, the build is gone', async () => {
    slow = env.commit('acme/imageslow', 'main');
    const commit = slow;
    const name = buildName(commit);
    await env.build(commit);
    await waitForApi(name, 'building');
    await eventually(async () => expect(await jobExists(`${name}-build-1`)).toBe(true));
    const asked = Date.now();
    expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
    await eventually(
      async () => expect((await call('GET', `/api/v1/builds/${name}`)).status).toBe(404),
      60_000,
      100,
    );
    console.log(`undeployed while building in ${Date.now() - asked} ms`);
    expect(await jobExists(`${name}-build-1`)).toBe(false);
    expect([...initJobs.keys()].filter((job) => job.startsWith(name))).toEqual([]);
  });

  it('let go by a build undeployed while building, is built by the next build of its commit', async () => {
    const gone = imageRecordName(builtImage(slow, 'acme-imageslow'));
    const left = await env.kube.core.readNamespacedConfigMap({
      name: gone,
      namespace: env.namespace,
    });
    // Released when its build was undeployed: the next build takes it over at once.
    expect(left.data).toMatchObject({ state: 'failed', job: `${buildName(slow)}-build-1` });
    await env.writeRepos(repos('1s'));
    const pr: CommitInfo = { ...slow, pr: 11, headRepo: 'acme/imageslow' };
    const name = buildName(pr);
    await env.build(pr);
    await waitForApi(name, 'stopped');
    expect(jobsOf(name)).toEqual([`${name}-build-1`]);
    expect(initJobs.get(`${name}-init-1`)).toBe(builtImage(slow, 'acme-imageslow'));
    const record = await env.kube.core.readNamespacedConfigMap({
      name: gone,
      namespace: env.namespace,
    });
    expect(record.data).toMatchObject({ state: 'built', job: `${name}-build-1` });
  });
});
