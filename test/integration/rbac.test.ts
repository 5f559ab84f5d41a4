/**
 * The RBAC of deploy/ proven on the sandbox, whose kube-apiserver enforces RBAC
 * (`--authorization-mode=Node,RBAC`, kwokctl's default): the base is rendered with
 * `kubectl kustomize deploy/`, its ServiceAccounts, Roles and RoleBindings applied (into this
 * file's namespaces), tokens minted for the ServiceAccounts (TokenRequest), and the real worker
 * and API processes run with kubeconfigs of those tokens through a build's whole life, an adoption
 * and the drift watcher. Any missing permission fails it; `kubectl auth can-i --list` shows
 * nothing beyond the Roles, which docs/operations.md tabulates (test/unit/deploy.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { BUILD_LABEL, annotations } from '../../domain/build.js';
import { stateQuery } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import { runCommand } from '../../dev/run-command.js';
import { deliver, pushPayload } from '../../dev/webhook-deliveries.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { createBuildEnv, scheduledActivities, type BuildEnv } from './build-env.js';
import { createTestNamespace, eventually } from './helpers.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SECRET = 'rbac-test-webhook-secret';
const ADMIN_TOKEN = 'rbac-test-admin-token-0123456789';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}
interface Manifest {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: Rule[];
  subjects?: { namespace?: string }[];
}

let env: BuildEnv;
let dir: string;
/** This file's stand-in for the namespace `runboat` (the builds namespace is env.namespace). */
let systemNamespace: string;
let roles: Manifest[];
const kubeconfigs: Record<'api' | 'worker', string> = { api: '', worker: '' };
let worker: WorkerProcess;
let api: WorkerProcess & { url: string };

/** kubectl as the sandbox's admin. */
function adminKubectl(...args: string[]): Promise<string> {
  const sandbox = inject('sandbox');
  return runCommand(sandbox.kubectl, [
    '--kubeconfig',
    sandbox.kube.kubeconfig,
    '--context',
    sandbox.kube.context,
    ...args,
  ]);
}

/** `resource.group [verbs]` lines of `kubectl auth can-i --list` as a ServiceAccount. */
async function canList(account: 'api' | 'worker', namespace: string): Promise<string[]> {
  const output = await runCommand(inject('sandbox').kubectl, [
    '--kubeconfig',
    kubeconfigs[account],
    'auth',
    'can-i',
    '--list',
    '-n',
    namespace,
  ]);
  return output
    .split('\n')
    .map((line) => /^(\S+)\s+\[[^\]]*\]\s+\[[^\]]*\]\s+\[([^\]]*)\]\s*$/.exec(line))
    .filter((match) => match !== null)
    .map((match) => `${match[1]} [${(match[2] ?? '').split(' ').sort().join(' ')}]`)
    .sort();
}

/** What every authenticated user may do (system:basic-user), whatever the namespace. */
const everyone = [
  'selfsubjectaccessreviews.authorization.k8s.io [create]',
  'selfsubjectreviews.authentication.k8s.io [create]',
  'selfsubjectrulesreviews.authorization.k8s.io [create]',
];

/** A resource as kubectl names it: `deployments.apps/status`, `pods/log`. */
function qualified(resource: string, group: string): string {
  const [base, sub] = resource.split('/');
  return `${base}${group ? `.${group}` : ''}${sub ? `/${sub}` : ''}`;
}

/** The same lines, from a Role of deploy/. */
function granted(role: string): string[] {
  const rules = roles.find((manifest) => manifest.metadata.name === role)?.rules ?? [];
  return rules.flatMap((rule) =>
    rule.resources.flatMap((resource) =>
      rule.apiGroups.map(
        (group) => `${qualified(resource, group)} [${[...rule.verbs].sort().join(' ')}]`,
      ),
    ),
  );
}

beforeAll(async () => {
  env = await createBuildEnv({
    repos: [
      {
        repo: 'acme/imaged',
        branch: '.*',
        builds: [{ imageBuild: { registry: 'registry.test/previews' } }],
      },
      { repo: 'acme/.*', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] },
    ],
  });
  dir = await mkdtemp(join(tmpdir(), 'runboat-rbac-'));
  systemNamespace = await createTestNamespace(env.kube.core, 'runboat');

  // The base as an operator renders it; its RBAC moved into this file's two namespaces.
  const rendered = await runCommand(inject('sandbox').kubectl, [
    'kustomize',
    join(projectRoot, 'deploy'),
  ]);
  const manifests = parseAllDocuments(rendered).map((doc) => doc.toJS() as Manifest);
  const rbac = manifests.filter((m) => ['ServiceAccount', 'Role', 'RoleBinding'].includes(m.kind));
  for (const manifest of rbac) {
    manifest.metadata.namespace =
      manifest.metadata.namespace === 'runboat-builds' ? env.namespace : systemNamespace;
    for (const subject of manifest.subjects ?? []) subject.namespace = systemNamespace;
  }
  roles = rbac.filter((m) => m.kind === 'Role');
  const rbacFile = join(dir, 'rbac.json');
  await writeFile(rbacFile, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }));
  await adminKubectl('apply', '--server-side', '-f', rbacFile);

  // Tokens of the ServiceAccounts (TokenRequest), and kubeconfigs holding nothing else.
  const cluster = env.kube.config.getCurrentCluster();
  for (const account of ['api', 'worker'] as const) {
    const token = (
      await adminKubectl(
        'create',
        'token',
        `runboat-${account}`,
        '-n',
        systemNamespace,
        '--duration=2h',
      )
    ).trim();
    kubeconfigs[account] = join(dir, `${account}.kubeconfig`);
    await writeFile(
      kubeconfigs[account],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'sandbox',
            cluster: {
              server: cluster?.server,
              ...(cluster?.caFile
                ? { 'certificate-authority': cluster.caFile }
                : { 'certificate-authority-data': cluster?.caData }),
            },
          },
        ],
        users: [{ name: `runboat-${account}`, user: { token } }],
        contexts: [
          { name: 'runboat', context: { cluster: 'sandbox', user: `runboat-${account}` } },
        ],
        'current-context': 'runboat',
      }),
    );
  }
  const asAccount = (account: 'api' | 'worker') => ({
    RUNBOAT_KUBECONFIG: kubeconfigs[account],
    RUNBOAT_KUBE_CONTEXT: 'runboat',
  });
  worker = await env.startWorker({ ...asAccount('worker'), RUNBOAT_ADOPT_INTERVAL_SECONDS: '1' });
  api = await spawnApi(
    {
      ...env.workerEnv,
      ...asAccount('api'),
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: SECRET,
      RUNBOAT_ADMIN_TOKEN: ADMIN_TOKEN,
    },
    join(dir, 'api.log'),
  );
});

afterAll(async () => {
  await api?.stop();
  await env?.close();
  if (systemNamespace) await env?.kube.core.deleteNamespace({ name: systemNamespace });
});

/** A call to the API as its admin. */
async function call(method: string, path: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  return { status: response.status, text: await response.text() };
}

const forbidden = /forbidden|unauthorized|HTTP 40[13]/i;

describe('least-privilege RBAC (deploy/) on a cluster that enforces it', () => {
  it('the ServiceAccounts may do what the Roles say in the builds namespace, nothing elsewhere', async () => {
    expect(await canList('api', env.namespace)).toEqual(
      [...everyone, ...granted('runboat-api')].sort(),
    );
    expect(await canList('worker', env.namespace)).toEqual(
      [...everyone, ...granted('runboat-worker')].sort(),
    );
    for (const namespace of [systemNamespace, 'default', 'kube-system']) {
      expect(await canList('api', namespace)).toEqual(everyone);
      expect(await canList('worker', namespace)).toEqual(everyone);
    }
    // The API reads no Secret; neither writes anything cluster-wide.
    const canI = (account: 'api' | 'worker', ...args: string[]) =>
      runCommand(inject('sandbox').kubectl, [
        '--kubeconfig',
        kubeconfigs[account],
        'auth',
        'can-i',
        ...args,
      ])
        .catch((error: { output?: string }) => error.output ?? '')
        // The answer is the last line (kubectl may warn before it).
        .then((output) => output.trim().split('\n').pop());
    expect(await canI('api', 'get', 'secrets', '-n', env.namespace)).toBe('no');
    expect(await canI('worker', 'create', 'namespaces')).toBe('no');
    expect(await canI('worker', 'create', 'clusterrolebindings')).toBe('no');
  });

  it('runs a build through its whole life with those permissions only', async () => {
    const after = randomBytes(20).toString('hex');
    const name = buildName({ repo: 'acme/rbac', targetBranch: '17.0', pr: null, gitCommit: after });
    const answer = await deliver(
      `${api.url}/webhooks/github`,
      'push',
      pushPayload({ repo: 'acme/rbac', branch: '17.0', after }),
      SECRET,
    );
    expect(answer).toEqual({ status: 202, body: { build: name } });
    await env.waitForStatus(name, 'stopped');
    // The API sees it through its informer, and reads the init log the worker kept.
    await eventually(async () => {
      expect(await call('GET', `/api/v1/builds/${name}`)).toMatchObject({ status: 200 });
    });
    const initLog = await call('GET', `/api/v1/builds/${name}/init-log`);
    expect(initLog.status).toBe(200);
    expect(initLog.text).toContain(`${name}-init-1: succeeded`);
    expect(initLog.text).not.toMatch(forbidden);

    expect((await call('POST', `/api/v1/builds/${name}/start`)).status).toBe(202);
    await env.waitForStatus(name, 'started');
    const log = await call('GET', `/api/v1/builds/${name}/log?tail=20`);
    // The sandbox's fake pods have no kubelet log to serve (kwok answers 400, the API 502), but
    // the request went through: no 401 or 403.
    expect([200, 502]).toContain(log.status);
    expect(log.text).not.toMatch(forbidden);
    expect((await call('POST', `/api/v1/builds/${name}/stop`)).status).toBe(202);
    await env.waitForStatus(name, 'stopped');
    // The drift watcher takes a scale by hand as a start.
    await adminKubectl('-n', env.namespace, 'scale', `deployment/${name}`, '--replicas=1');
    await env.waitForStatus(name, 'started');

    expect((await call('DELETE', `/api/v1/builds/${name}`)).status).toBe(202);
    await eventually(async () => expect(await env.deployment(name)).toBeUndefined(), 60_000);
    const activities = await scheduledActivities(env.client.workflow.getHandle(name));
    expect(activities.indexOf('cleanup')).toBeGreaterThan(-1);
    expect(activities.indexOf('cleanup')).toBeLessThan(activities.indexOf('deleteBuildObjects'));
    const leftovers = await env.kube.core.listNamespacedConfigMap({
      namespace: env.namespace,
      labelSelector: `${BUILD_LABEL}=${name}`,
    });
    expect(leftovers.items).toEqual([]);
    expect(env.github.statusesOf(after).map((status) => status.state)).toContain('success');
  });

  it('adopts a build found in Kubernetes and cleans it up after a kubectl delete, with those permissions only', async () => {
    const name = `b${randomBytes(16).toString('hex')}`;
    await env.kube.apps.createNamespacedDeployment({
      namespace: env.namespace,
      body: {
        metadata: {
          name,
          labels: { [BUILD_LABEL]: name },
          annotations: {
            [annotations.repo]: 'acme/legacy',
            [annotations.targetBranch]: '16.0',
            [annotations.pr]: '',
            [annotations.gitCommit]: randomBytes(20).toString('hex'),
            [annotations.initStatus]: 'succeeded',
          },
          finalizers: ['runboat/cleanup'],
        },
        spec: {
          replicas: 0,
          selector: { matchLabels: { [BUILD_LABEL]: name } },
          template: {
            metadata: { labels: { [BUILD_LABEL]: name } },
            spec: { containers: [{ name: 'odoo', image: 'ghcr.io/oca/odoo:16.0' }] },
          },
        },
      },
    });
    const handle = env.client.workflow.getHandle(name);
    await eventually(async () =>
      expect(await handle.query(stateQuery)).toMatchObject({ name, status: 'stopped' }),
    );
    // `kubectl delete` by hand: the finalizer holds it until the workflow cleaned up.
    await adminKubectl('-n', env.namespace, 'delete', `deployment/${name}`, '--wait=false');
    await eventually(async () => expect(await env.deployment(name)).toBeUndefined(), 60_000);
  });

  it('builds an image once for two builds of its commit, with those permissions only', async () => {
    const branch = env.commit('acme/imaged', 'main');
    const pr = { ...branch, pr: 3, headRepo: 'acme/imaged' };
    await env.build(branch);
    await env.waitForStatus(buildName(branch), 'stopped');
    // The second build reads the image record the first wrote (create, get, update).
    await env.build(pr);
    await env.waitForStatus(buildName(pr), 'stopped');
    const jobs = await env.kube.batch.listNamespacedJob({
      namespace: env.namespace,
      labelSelector: 'runboat/job-kind=build',
    });
    expect(jobs.items.map((job) => job.metadata?.name)).toEqual([`${buildName(branch)}-build-1`]);
    const buildLog = await call('GET', `/api/v1/builds/${buildName(pr)}/build-log`);
    expect(buildLog.status).toBe(200);
    expect(buildLog.text).toContain('was built before');
  });

  it('logged no refusal by the Kubernetes API', async () => {
    const logs = [await readFile(worker.logFile, 'utf8'), await readFile(api.logFile, 'utf8')];
    for (const log of logs) {
      expect(log.split('\n').filter((line) => forbidden.test(line))).toEqual([]);
    }
  });
});
