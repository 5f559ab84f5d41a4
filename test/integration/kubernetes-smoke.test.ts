/**
 * Proves the Kubernetes half of the sandbox is a real control plane: controllers reconcile
 * Deployments and Jobs, kwok's fake kubelet runs their pods, finalizers hold deletions.
 */
import type { V1Deployment, V1Job } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { OUTCOME_LABEL, RUN_FOR_ANNOTATION } from '../../dev/kwok-stages.js';
import { createTestNamespace, eventually, isStatus, kubeClients } from './helpers.js';

const { core, apps, batch } = kubeClients();
let namespace: string;

beforeAll(async () => {
  namespace = await createTestNamespace(core, 'smoke');
});

function deployment(name: string, finalizers: string[] = []): V1Deployment {
  return {
    metadata: { name, labels: { 'runboat/build': name }, finalizers },
    spec: {
      replicas: 0,
      selector: { matchLabels: { 'runboat/build': name } },
      template: {
        metadata: { labels: { 'runboat/build': name } },
        spec: { containers: [{ name: 'odoo', image: 'ghcr.io/example/odoo:17.0' }] },
      },
    },
  };
}

function job(
  name: string,
  podLabels: Record<string, string> = {},
  podAnnotations: Record<string, string> = {},
): V1Job {
  return {
    metadata: { name, labels: { 'runboat/job-kind': 'initialize' } },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { labels: podLabels, annotations: podAnnotations },
        spec: {
          restartPolicy: 'Never',
          containers: [{ name: 'init', image: 'ghcr.io/example/odoo:17.0' }],
        },
      },
    },
  };
}

async function jobCondition(name: string): Promise<string> {
  const found = await batch.readNamespacedJobStatus({ name, namespace });
  const finished = found.status?.conditions?.find(
    (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True',
  );
  if (!finished) throw new Error(`job ${name} has not finished: ${JSON.stringify(found.status)}`);
  return finished.type;
}

describe('the sandbox Kubernetes cluster', () => {
  it('makes a Deployment scaled from 0 to 1 available', async () => {
    await apps.createNamespacedDeployment({ namespace, body: deployment('scale-me') });
    const before = await apps.readNamespacedDeployment({ name: 'scale-me', namespace });
    expect(before.status?.availableReplicas ?? 0).toBe(0);

    await apps.replaceNamespacedDeploymentScale({
      name: 'scale-me',
      namespace,
      body: { metadata: { name: 'scale-me', namespace }, spec: { replicas: 1 } },
    });

    const available = await eventually(async () => {
      const current = await apps.readNamespacedDeploymentStatus({ name: 'scale-me', namespace });
      expect(current.status?.availableReplicas).toBe(1);
      return current;
    });
    expect(available.status?.readyReplicas).toBe(1);
    const pods = await core.listNamespacedPod({
      namespace,
      labelSelector: 'runboat/build=scale-me',
    });
    expect(pods.items).toHaveLength(1);
    expect(pods.items[0]?.status?.phase).toBe('Running');
    expect(pods.items[0]?.spec?.nodeName).toMatch(/^kwok-node-/);
  });

  it('runs a Job to Complete, its pod Succeeded', async () => {
    await batch.createNamespacedJob({ namespace, body: job('init-ok') });
    expect(await eventually(() => jobCondition('init-ok'))).toBe('Complete');
    const done = await batch.readNamespacedJobStatus({ name: 'init-ok', namespace });
    expect(done.status?.succeeded).toBe(1);
    const pods = await core.listNamespacedPod({ namespace, labelSelector: 'job-name=init-ok' });
    expect(pods.items.map((pod) => pod.status?.phase)).toEqual(['Succeeded']);
  });

  it(`ends a Job whose pod carries ${OUTCOME_LABEL}=fail as Failed`, async () => {
    await batch.createNamespacedJob({
      namespace,
      body: job('init-bad', { [OUTCOME_LABEL]: 'fail' }),
    });
    expect(await eventually(() => jobCondition('init-bad'))).toBe('Failed');
    const done = await batch.readNamespacedJobStatus({ name: 'init-bad', namespace });
    expect(done.status?.failed).toBe(1);
    expect(done.status?.succeeded ?? 0).toBe(0);
    const pods = await core.listNamespacedPod({ namespace, labelSelector: 'job-name=init-bad' });
    const terminated = pods.items[0]?.status?.containerStatuses?.[0]?.state?.terminated;
    expect(pods.items[0]?.status?.phase).toBe('Failed');
    expect(terminated?.exitCode).toBe(1);
  });

  it(`keeps a Job's pod running for the ${RUN_FOR_ANNOTATION} it asks for`, async () => {
    const created = Date.now();
    await batch.createNamespacedJob({
      namespace,
      body: job('init-slow', {}, { [RUN_FOR_ANNOTATION]: '4s' }),
    });
    await eventually(async () => {
      const pods = await core.listNamespacedPod({ namespace, labelSelector: 'job-name=init-slow' });
      expect(pods.items[0]?.status?.phase).toBe('Running');
    });
    expect(Date.now() - created).toBeLessThan(4000);
    expect(await eventually(() => jobCondition('init-slow'))).toBe('Complete');
    expect(Date.now() - created).toBeGreaterThanOrEqual(4000);
  });

  it('holds a Deployment with a finalizer in deletion until the finalizer is removed', async () => {
    const name = 'held';
    await apps.createNamespacedDeployment({
      namespace,
      body: deployment(name, ['runboat/cleanup']),
    });
    await apps.deleteNamespacedDeployment({ name, namespace });

    const deleting = await apps.readNamespacedDeployment({ name, namespace });
    expect(deleting.metadata?.deletionTimestamp).toBeDefined();
    // The garbage collector and the deployment controller have time to act; nothing may remove it.
    await new Promise((r) => setTimeout(r, 2000));
    const stillThere = await apps.readNamespacedDeployment({ name, namespace });
    expect(stillThere.metadata?.finalizers).toEqual(['runboat/cleanup']);

    await apps.replaceNamespacedDeployment({
      name,
      namespace,
      body: { ...stillThere, metadata: { ...stillThere.metadata, finalizers: [] } },
    });
    await eventually(async () => {
      const gone = await apps
        .readNamespacedDeployment({ name, namespace })
        .then(() => false)
        .catch((error: unknown) => isStatus(error, 404));
      expect(gone).toBe(true);
    });
  });

  it('has room for a Service per build: its Service range is not a /24', async () => {
    // An address far outside the API server's default 10.0.0.0/24.
    const created = await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'far' },
        spec: { clusterIP: '10.100.39.7', ports: [{ port: 8069 }] },
      },
    });
    expect(created.spec?.clusterIP).toBe('10.100.39.7');
  });
});
