/**
 * Kubernetes client plumbing: clients from a kubeconfig, server-side apply with a dry run first,
 * the classification of API errors into retryable or not, and a lean informer of Deployments.
 * No business rules here.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import {
  ApiException,
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  ListWatch,
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type KubernetesObject,
  type RequestContext,
  type V1Deployment,
  type V1DeploymentList,
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

/** The TLS material of an agent: two agents with the same may share their connections. */
const TLS_OPTIONS = [
  'ca',
  'cert',
  'key',
  'pfx',
  'passphrase',
  'rejectUnauthorized',
  'servername',
] as const;

function sameTlsOptions(a: https.AgentOptions, b: https.AgentOptions): boolean {
  return TLS_OPTIONS.every((name) => {
    const [x, y] = [a[name], b[name]];
    if (Buffer.isBuffer(x) && Buffer.isBuffer(y)) return x.equals(y);
    return x === y;
  });
}

/**
 * A kubeconfig whose API clients keep their connections to the API server open. The client
 * library gives every request an agent of its own, so each one (a mirror, a scale, each object
 * of a deploy) opened a new TCP connection and did a TLS handshake: 7–10 ms a request and ~4 ms
 * of CPU on each side, against ~1.5 ms over an open connection. Here the requests share one
 * keep-alive agent for as long as the TLS material (CA, client certificate) stays the same; when
 * it changes (a rotated certificate file), the next request gets a new agent and the old one
 * closes its connections once the requests on them are done. Through a proxy, the library's own
 * agents are kept.
 */
class PooledKubeConfig extends KubeConfig {
  private pooled: https.Agent | undefined;

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const fresh = context.getAgent();
    const Agent = fresh?.constructor;
    // A proxy's agent (the kubeconfig's `proxy-url`) is of another class: left as it is.
    if (!fresh || (Agent !== https.Agent && Agent !== http.Agent)) return;
    const { options } = fresh as https.Agent;
    const pooled = this.pooled;
    if (pooled?.constructor === Agent && sameTlsOptions(pooled.options, options)) {
      context.setAgent(pooled);
      return;
    }
    if (pooled) retire(pooled);
    this.pooled = new (Agent as typeof https.Agent)({ ...options, keepAlive: true });
    context.setAgent(this.pooled);
  }
}

/** Closes an agent's idle connections, and each busy one when its request is done. */
function retire(agent: http.Agent): void {
  (agent as { keepAlive?: boolean }).keepAlive = false;
  for (const sockets of Object.values(agent.freeSockets)) {
    for (const socket of sockets ?? []) socket.destroy();
  }
  agent.on('free', (socket: { destroy(): void }) => socket.destroy());
}

/** Builds the API clients from a kubeconfig file or the default locations. */
export function createKubeClients(options: KubeClientsOptions = {}): KubeClients {
  const config = new PooledKubeConfig();
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

/**
 * The part of a Deployment the orchestrator reads (names, labels, annotations, finalizers,
 * times, replicas): everything else — `managedFields`, the pod template, conditions — is most of
 * a Deployment's size and no reader needs it. A cache of thousands of builds holds these only
 * (docs/operations.md, "Memory").
 */
export function leanDeployment(deployment: V1Deployment): V1Deployment {
  const meta = deployment.metadata ?? {};
  const lean: V1Deployment = {
    metadata: {
      name: meta.name,
      namespace: meta.namespace,
      uid: meta.uid,
      resourceVersion: meta.resourceVersion,
      generation: meta.generation,
      labels: meta.labels,
      annotations: meta.annotations,
      finalizers: meta.finalizers,
      creationTimestamp: meta.creationTimestamp,
      deletionTimestamp: meta.deletionTimestamp,
    },
  };
  if (deployment.spec) {
    // `selector` and `template` are required by the type; an empty pod template stands for them.
    lean.spec = { replicas: deployment.spec.replicas, selector: {}, template: {} };
  }
  if (deployment.status) {
    lean.status = {
      replicas: deployment.status.replicas,
      readyReplicas: deployment.status.readyReplicas,
      observedGeneration: deployment.status.observedGeneration,
    };
  }
  return lean;
}

/** Which Deployments {@link listLeanDeployments} and {@link makeDeploymentInformer} read. */
export interface DeploymentSelection {
  namespace: string;
  labelSelector: string;
  /**
   * Deployments a list asks for at once (default 500): a list of thousands of builds is never
   * held whole before it is cut down.
   */
  pageSize?: number;
}

/** A page of a list as the API server sends it: plain JSON, times as strings. */
interface RawDeploymentList {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: V1Deployment[];
}

/**
 * One page of Deployments, read and parsed here rather than through the generated client: its
 * deserialisation of every field of every object (then thrown away by {@link leanDeployment})
 * took most of the CPU of listing 10,000 builds. Asked uncompressed: the API server is near, and
 * gzip cost both sides more CPU than the bytes it saved. A refusal is an {@link ApiException},
 * as the generated client throws.
 */
async function listDeploymentPage(
  config: KubeConfig,
  namespace: string,
  query: Record<string, string>,
): Promise<RawDeploymentList> {
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new Error('no current cluster in the kubeconfig');
  const url = new URL(
    `${cluster.server.replace(/\/$/, '')}/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/deployments`,
  );
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  const options: https.RequestOptions = {
    method: 'GET',
    headers: { accept: 'application/json', 'accept-encoding': 'identity' },
  };
  await config.applyToHTTPSOptions(options);
  const { status, headers, body } = await new Promise<{
    status: number;
    headers: Record<string, string>;
    body: string;
  }>((resolve, reject) => {
    const request = (url.protocol === 'https:' ? https : http).request(url, options, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          headers: Object.fromEntries(
            Object.entries(response.headers).map(([key, value]) => [key, String(value)]),
          ),
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    request.on('error', reject);
    request.end();
  });
  if (status < 200 || status > 299) {
    throw new ApiException(status, `HTTP ${status} listing Deployments`, body, headers);
  }
  return JSON.parse(body) as RawDeploymentList;
}

/** A time of the API server's JSON as the generated client gives it (a Date). */
function asDate(value: Date | string | undefined): Date | undefined {
  return typeof value === 'string' ? new Date(value) : value;
}

/**
 * Lists Deployments page by page, each cut to a {@link leanDeployment} (its times as Dates, as
 * the generated client gives them); the list's resourceVersion is the first page's, at which
 * every page is read.
 */
export async function listLeanDeployments(
  kube: Pick<KubeClients, 'config'>,
  selection: DeploymentSelection,
): Promise<V1DeploymentList> {
  const { namespace, labelSelector, pageSize = 500 } = selection;
  const items: V1Deployment[] = [];
  let resourceVersion: string | undefined;
  let next: string | undefined;
  do {
    const page = await listDeploymentPage(kube.config, namespace, {
      labelSelector,
      limit: String(pageSize),
      ...(next ? { continue: next } : {}),
    });
    resourceVersion ??= page.metadata?.resourceVersion;
    for (const item of page.items ?? []) {
      const lean = leanDeployment(item);
      lean.metadata!.creationTimestamp = asDate(lean.metadata!.creationTimestamp);
      lean.metadata!.deletionTimestamp = asDate(lean.metadata!.deletionTimestamp);
      items.push(lean);
    }
    next = page.metadata?.continue || undefined;
  } while (next);
  return { apiVersion: 'apps/v1', kind: 'DeploymentList', metadata: { resourceVersion }, items };
}

/**
 * An informer of the Deployments of a namespace whose cache holds {@link leanDeployment}s: each
 * object listed (page by page) or watched is cut down before it is stored or handed to a
 * callback, so the cache and its events tell the same facts in the same shape. Restart it with
 * {@link superviseInformer}.
 */
export function makeDeploymentInformer(
  kube: KubeClients,
  selection: DeploymentSelection,
): ListWatch<V1Deployment> {
  return new ListWatch(
    `/apis/apps/v1/namespaces/${selection.namespace}/deployments`,
    new LeanWatch(kube.config),
    () => listLeanDeployments(kube, selection),
    false,
    selection.labelSelector,
  );
}

/** A watch of Deployments whose events carry {@link leanDeployment}s (errors and bookmarks as sent). */
class LeanWatch extends Watch {
  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    return super.watch(
      path,
      queryParams,
      // The event itself (the third argument) is left out: it holds the whole object.
      (phase, object: V1Deployment) => {
        const isObject = phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED';
        callback(phase, isObject ? leanDeployment(object) : object);
      },
      done,
    );
  }
}
