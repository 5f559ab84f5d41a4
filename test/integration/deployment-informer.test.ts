/**
 * The lean informer of build Deployments (lib/kube.ts): its cache, listed page by page and kept
 * by a watch, holds only the fields the worker reads, and tells the same facts (status, replicas,
 * deletion, finalizers) as the full objects do.
 */
import type { V1Deployment } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { annotations, BUILD_LABEL, CLEANUP_FINALIZER } from '../../domain/build.js';
import { buildView } from '../../domain/build-view.js';
import {
  createKubeClients,
  makeDeploymentInformer,
  mergePatch,
  superviseInformer,
} from '../../lib/kube.js';
import { createTestNamespace, eventually } from './helpers.js';

const { kube: sandbox } = inject('sandbox');
const kube = createKubeClients({ kubeconfig: sandbox.kubeconfig, context: sandbox.context });
let namespace: string;
let informer: ReturnType<typeof makeDeploymentInformer>;
let stop: (() => Promise<void>) | undefined;
const events: { verb: string; deployment: V1Deployment }[] = [];

function deployment(name: string, labelled = true): V1Deployment {
  return {
    metadata: {
      name,
      labels: labelled ? { [BUILD_LABEL]: name } : { app: name },
      annotations: {
        [annotations.repo]: 'acme/addons',
        [annotations.targetBranch]: '17.0',
        [annotations.pr]: '',
        [annotations.gitCommit]: 'a'.repeat(40),
        [annotations.initStatus]: 'succeeded',
      },
      finalizers: [CLEANUP_FINALIZER],
    },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'odoo', image: 'ghcr.io/example/odoo:17.0' }] },
      },
    },
  };
}

const names = ['lean-a', 'lean-b', 'lean-c', 'lean-d', 'lean-e'];
const cached = (name: string) => informer.get(name, namespace);

beforeAll(async () => {
  namespace = await createTestNamespace(kube.core, 'informer');
  for (const name of names) {
    await kube.apps.createNamespacedDeployment({ namespace, body: deployment(name) });
  }
  await kube.apps.createNamespacedDeployment({ namespace, body: deployment('other', false) });
  // Pages of two: the first list takes three requests.
  informer = makeDeploymentInformer(kube, { namespace, labelSelector: BUILD_LABEL, pageSize: 2 });
  for (const verb of ['add', 'update', 'delete'] as const) {
    informer.on(verb, (object) => events.push({ verb, deployment: object }));
  }
  stop = (await superviseInformer(informer, () => {})).stop;
});

afterAll(async () => {
  await stop?.();
});

describe('the lean Deployment informer', () => {
  it('lists every build Deployment across pages, and only those', () => {
    expect(
      informer
        .list()
        .map((d) => d.metadata?.name)
        .sort(),
    ).toEqual(names);
  });

  it('keeps what the worker reads and drops the rest', async () => {
    for (const name of names) {
      const full = await kube.apps.readNamespacedDeployment({ name, namespace });
      const lean = cached(name);
      expect(full.metadata?.managedFields?.length).toBeGreaterThan(0);
      expect(lean?.metadata?.managedFields).toBeUndefined();
      expect(lean?.spec?.template.spec).toBeUndefined();
      expect(lean?.metadata?.finalizers).toEqual([CLEANUP_FINALIZER]);
      expect(lean?.metadata?.resourceVersion).toBe(full.metadata?.resourceVersion);
      expect(buildView(lean as V1Deployment, 'example.com')).toEqual(
        buildView(full, 'example.com'),
      );
      expect(JSON.stringify(lean).length).toBeLessThan(JSON.stringify(full).length / 2);
    }
  });

  it('follows a scale to its ready replica, in lean objects', async () => {
    await kube.apps.patchNamespacedDeployment(
      { name: 'lean-b', namespace, body: { spec: { replicas: 1 } } },
      mergePatch,
    );
    await eventually(async () => {
      expect(cached('lean-b')?.spec?.replicas).toBe(1);
      expect(cached('lean-b')?.status?.readyReplicas).toBe(1);
    }, 60_000);
    expect(buildView(cached('lean-b') as V1Deployment, 'example.com').status).toBe('started');
    const updates = events.filter((e) => e.verb === 'update');
    expect(updates.length).toBeGreaterThan(0);
    for (const { deployment } of updates) {
      expect(deployment.metadata?.managedFields).toBeUndefined();
    }
  });

  it('shows a deletion held by the finalizer, then the Deployment gone', async () => {
    await kube.apps.deleteNamespacedDeployment({ name: 'lean-c', namespace });
    await eventually(async () => {
      expect(cached('lean-c')?.metadata?.deletionTimestamp).toBeDefined();
    });
    expect(buildView(cached('lean-c') as V1Deployment, 'example.com').status).toBe('undeploying');
    await kube.apps.patchNamespacedDeployment(
      { name: 'lean-c', namespace, body: { metadata: { finalizers: null } } },
      mergePatch,
    );
    await eventually(async () => {
      expect(cached('lean-c')).toBeUndefined();
    });
    const deleted = events.find((e) => e.verb === 'delete');
    expect(deleted?.deployment.metadata?.name).toBe('lean-c');
  });
});
