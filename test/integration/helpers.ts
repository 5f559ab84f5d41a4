/**
 * Clients of the sandbox for integration tests: Kubernetes API clients from its kubeconfig, a
 * Temporal client and a fresh namespace per test file.
 */
import { randomBytes } from 'node:crypto';
import {
  ApiException,
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
} from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { expect, inject } from 'vitest';
import { buildName } from '../../domain/names.js';

/** Kubernetes API clients bound to the sandbox cluster. */
export interface KubeClients {
  config: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  batch: BatchV1Api;
}

/** Kubernetes clients of the run's sandbox. */
export function kubeClients(): KubeClients {
  const { kube } = inject('sandbox');
  const config = new KubeConfig();
  config.loadFromFile(kube.kubeconfig);
  config.setCurrentContext(kube.context);
  return {
    config,
    core: config.makeApiClient(CoreV1Api),
    apps: config.makeApiClient(AppsV1Api),
    batch: config.makeApiClient(BatchV1Api),
  };
}

/** Creates a namespace of its own for one test file; returns its name. */
export async function createTestNamespace(core: CoreV1Api, prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name } } });
  // The controller-manager creates each namespace's default ServiceAccount shortly after;
  // pods are refused until it exists.
  await eventually(async () => {
    await core.readNamespacedServiceAccount({ name: 'default', namespace: name });
  }, 30_000);
  return name;
}

/** Whether an error is a Kubernetes API answer with this HTTP status. */
export function isStatus(error: unknown, code: number): boolean {
  return error instanceof ApiException && error.code === code;
}

/** A Temporal client connected to the run's sandbox (close its connection when done). */
export async function temporalClient(): Promise<Client> {
  const { temporal } = inject('sandbox');
  const connection = await Connection.connect({ address: temporal.address });
  return new Client({ connection, namespace: temporal.namespace });
}

/**
 * Retries `check` until it stops throwing, then returns its result; after `timeoutMs` it throws
 * the last failure, so the assertion message says what was still wrong.
 */
export async function eventually<T>(
  check: () => Promise<T>,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() >= deadline) throw error;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}

/**
 * Asks the API at `apiUrl` (as the admin of `token`) for a build of a new commit of `repo`'s
 * `branch`; expects it accepted under the build's name, and returns that name.
 */
export async function triggerBranch(
  apiUrl: string,
  token: string,
  repo: string,
  branch: string,
): Promise<string> {
  const sha = randomBytes(20).toString('hex');
  const response = await fetch(`${apiUrl}/api/v1/builds/trigger/branch`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ repo, branch, sha }),
  });
  expect(response.status).toBe(202);
  const name = buildName({ repo, targetBranch: branch, pr: null, gitCommit: sha });
  expect(((await response.json()) as { build: string }).build).toBe(name);
  return name;
}
