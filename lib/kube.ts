/**
 * Kubernetes client plumbing: clients from a kubeconfig, server-side apply with a dry run first,
 * and the classification of API errors into retryable or not. No business rules here.
 */
import {
  ApiException,
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
} from '@kubernetes/client-node';

/** Field manager of every object the orchestrator applies. */
export const FIELD_MANAGER = 'runboat';

/** Kubernetes API clients sharing one configuration. */
export interface KubeClients {
  config: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  batch: BatchV1Api;
  networking: NetworkingV1Api;
  objects: KubernetesObjectApi;
}

/** Options of {@link createKubeClients}. */
export interface KubeClientsOptions {
  /** A kubeconfig file; without it, in-cluster config or `~/.kube/config`. */
  kubeconfig?: string | undefined;
  context?: string | undefined;
}

/** Builds the API clients from a kubeconfig file or the default locations. */
export function createKubeClients(options: KubeClientsOptions = {}): KubeClients {
  const config = new KubeConfig();
  if (options.kubeconfig) config.loadFromFile(options.kubeconfig);
  else config.loadFromDefault();
  if (options.context) config.setCurrentContext(options.context);
  return {
    config,
    core: config.makeApiClient(CoreV1Api),
    apps: config.makeApiClient(AppsV1Api),
    batch: config.makeApiClient(BatchV1Api),
    networking: config.makeApiClient(NetworkingV1Api),
    objects: KubernetesObjectApi.makeApiClient(config),
  };
}

/** The HTTP status of a Kubernetes API error, if it is one. */
export function kubeStatus(error: unknown): number | undefined {
  return error instanceof ApiException ? error.code : undefined;
}

/** Whether an error is a Kubernetes API answer with this HTTP status. */
export function isKubeStatus(error: unknown, code: number): boolean {
  return kubeStatus(error) === code;
}

/**
 * Whether retrying can help: conflicts, throttling, server errors and network failures can pass;
 * other 4xx answers (a bad manifest, a forbidden verb) will not.
 */
export function isRetryableKubeError(error: unknown): boolean {
  const code = kubeStatus(error);
  if (code === undefined) return true;
  return code === 409 || code === 429 || code >= 500;
}

/** A short description of a Kubernetes API error: the API's own message when it has one. */
export function describeKubeError(error: unknown): string {
  if (error instanceof ApiException) {
    const body: unknown = error.body;
    let message: string | undefined;
    if (typeof body === 'string') {
      try {
        message = (JSON.parse(body) as { message?: string }).message;
      } catch {
        message = body;
      }
    } else if (body && typeof body === 'object' && 'message' in body) {
      message = String((body as { message: unknown }).message);
    }
    return `HTTP ${error.code}: ${message ?? error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Server-side applies manifests: first every one as a dry run (so that a bad manifest changes
 * nothing), then for real. Conflicts with other managers are forced: the orchestrator owns them.
 */
export async function applyManifests(
  objects: KubernetesObjectApi,
  manifests: readonly KubernetesObject[],
): Promise<void> {
  const apply = PatchStrategy.ServerSideApply;
  for (const manifest of manifests) {
    await objects.patch(manifest, undefined, 'All', FIELD_MANAGER, true, apply);
  }
  for (const manifest of manifests) {
    await objects.patch(manifest, undefined, undefined, FIELD_MANAGER, true, apply);
  }
}

/** Options of a merge patch: the JSON merge patch content type. */
export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
/** Options of a JSON patch. */
export const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);

/** What {@link superviseInformer} needs of an informer. */
interface SupervisedInformer {
  start(): Promise<void>;
  stop(): Promise<void>;
  on(verb: 'error' | 'connect', callback: (error?: unknown) => void): void;
}

/**
 * Keeps an informer alive: after an error (a failed list, a broken watch, a refused connection
 * while the API server restarts) it is started again with backoff, until it succeeds or is
 * stopped. One restart is pending at a time. Resolves once the first start succeeded.
 */
export async function superviseInformer(
  informer: SupervisedInformer,
  onError: (error: unknown, retryInMs: number) => void,
): Promise<{ stop(): Promise<void> }> {
  let stopped = false;
  let pending = false;
  let backoffMs = 500;
  const restart = () => {
    if (stopped || pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      if (stopped) return;
      informer.start().catch((error: unknown) => {
        onError(error, backoffMs);
        backoffMs = Math.min(backoffMs * 2, 30_000);
        restart();
      });
    }, backoffMs);
  };
  informer.on('connect', () => {
    backoffMs = 500;
  });
  informer.on('error', (error) => {
    if (stopped) return;
    onError(error, backoffMs);
    restart();
    backoffMs = Math.min(backoffMs * 2, 30_000);
  });
  await informer.start();
  return {
    async stop() {
      stopped = true;
      await informer.stop();
    },
  };
}
