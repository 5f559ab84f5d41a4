/**
 * The logs of builds: the init, cleanup and image build logs kept in the build's ConfigMaps, and
 * the live log of its running pod streamed from Kubernetes. Read-only.
 *
 * A log that cannot be read raises {@link LogUnavailableError} with the reason, never a 200 with
 * the error as text. A streamed log holds one request to the Kubernetes API (a long-running one,
 * with `follow`) until the stream ends or is destroyed: whoever reads the stream destroys it when
 * its own client goes away, and the request is aborted with it.
 */
import type { IncomingMessage } from 'node:http';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Readable } from 'node:stream';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { Gauge, type Registry } from 'prom-client';
import { BUILD_LABEL, JOB_KIND_LABEL } from '../domain/build.js';
import { describeKubeError, kubeStatus, type KubeClients } from './kube.js';

/**
 * A log that cannot be read now: 503 when Kubernetes (or the build's pod) is not there to ask,
 * 502 when Kubernetes answered an error.
 */
export class LogUnavailableError extends Error {
  constructor(
    message: string,
    readonly status: 502 | 503,
  ) {
    super(message);
    this.name = 'LogUnavailableError';
  }
}

/**
 * The kinds of logs kept in a build's ConfigMaps: `<build>-init-log`, `<build>-cleanup-log`,
 * `<build>-build-log` (its image build).
 */
export type KeptLogKind = 'init' | 'cleanup' | 'build';

/** Options of {@link createBuildLogs}. */
export interface BuildLogsOptions {
  /** Where the gauge `runboat_log_streams_open` is registered. */
  metrics?: Registry;
}

/** Wraps a failed Kubernetes call: an answer is a 502, no answer (network) a 503. */
function unavailable(what: string, error: unknown): LogUnavailableError {
  if (error instanceof LogUnavailableError) {
    return new LogUnavailableError(`${what}: ${error.message}`, error.status);
  }
  const answered = kubeStatus(error) !== undefined;
  const prefix = answered ? 'Kubernetes answered' : 'Kubernetes API unreachable';
  return new LogUnavailableError(
    `${what}: ${prefix}: ${describeKubeError(error)}`,
    answered ? 502 : 503,
  );
}

/** How long Kubernetes may take to answer a log request (its headers) before it counts as away. */
const ANSWER_TIMEOUT_MS = 30_000;

/** Reads a small error body and gives its Kubernetes Status message. */
async function statusMessage(response: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of response as AsyncIterable<Buffer>) {
    text += chunk.toString('utf8');
    if (text.length > 16 * 1024) break;
  }
  response.destroy();
  try {
    const status = JSON.parse(text) as { message?: unknown };
    if (typeof status.message === 'string') return status.message;
  } catch {
    // Not a Status object: the text itself is the reason.
  }
  return text.trim() || (response.statusMessage ?? '');
}

/**
 * GETs a path of the Kubernetes API as a stream. Resolves once the API answered 200; the stream
 * is the response, and destroying it aborts the request.
 */
async function streamFromKube(config: KubeConfig, path: string): Promise<IncomingMessage> {
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new LogUnavailableError('no Kubernetes cluster configured', 503);
  const url = new URL(`${cluster.server.replace(/\/$/, '')}${path}`);
  const options: https.RequestOptions = {};
  await config.applyToHTTPSOptions(options);
  const send = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const request = send(url, { ...options, method: 'GET' }, (response) => {
      // Answered: from now on a followed log may stay quiet for as long as the build does.
      request.setTimeout(0);
      if (response.statusCode === 200) {
        resolve(response);
        return;
      }
      const code = response.statusCode ?? 0;
      statusMessage(response).then(
        (message) =>
          reject(new LogUnavailableError(`Kubernetes answered HTTP ${code}: ${message}`, 502)),
        reject,
      );
    });
    request.setTimeout(ANSWER_TIMEOUT_MS, () =>
      request.destroy(new Error(`no answer in ${ANSWER_TIMEOUT_MS / 1000} s`)),
    );
    request.on('error', (error) =>
      reject(new LogUnavailableError(`Kubernetes API unreachable: ${error.message}`, 503)),
    );
    request.end();
  });
}

/** When the object (pod, Job) was created (ms), to pick the newest. */
function created(pod: { metadata?: { creationTimestamp?: Date | string } }): number {
  return new Date(pod.metadata?.creationTimestamp ?? 0).getTime();
}

/** Reads the logs of the builds of one namespace. */
export function createBuildLogs(
  kube: KubeClients,
  namespace: string,
  options: BuildLogsOptions = {},
) {
  const openStreams = new Gauge({
    name: 'runboat_log_streams_open',
    help: 'Build log streams open to the Kubernetes API',
    registers: options.metrics ? [options.metrics] : [],
  });

  /** The kept log of one kind with its outcome, or undefined when none was kept yet. */
  const keptLog = async (name: string, kind: KeptLogKind): Promise<string | undefined> => {
    let data: Record<string, string>;
    try {
      const configMap = await kube.core.readNamespacedConfigMap({
        name: `${name}-${kind}-log`,
        namespace,
      });
      data = configMap.data ?? {};
    } catch (error) {
      if (kubeStatus(error) === 404) return undefined;
      throw unavailable(`the ${kind} log of build ${name}`, error);
    }
    const header = `# ${data.job ?? kind}: ${data.outcome ?? '?'}${data.reason ? ` (${data.reason})` : ''}`;
    return `${header}\n${data.log ?? ''}`;
  };

  /** The newest pod of the build's app (not of its Jobs) that is not being deleted. */
  const newestAppPod = async (name: string): Promise<V1Pod | undefined> => {
    try {
      const pods = await kube.core.listNamespacedPod({
        namespace,
        labelSelector: `${BUILD_LABEL}=${name},!${JOB_KIND_LABEL}`,
      });
      return pods.items
        .filter((item) => item.metadata?.deletionTimestamp == null)
        .sort((a, b) => created(a) - created(b))
        .pop();
    } catch (error) {
      throw unavailable(`the pods of build ${name}`, error);
    }
  };

  /**
   * The newest pod of the build's newest init Job (found by the Job's labels, which every
   * kubefiles' init Job carries; its pods by the `job-name` label Kubernetes gives them).
   */
  const newestInitPod = async (name: string): Promise<V1Pod | undefined> => {
    try {
      const jobs = await kube.batch.listNamespacedJob({
        namespace,
        labelSelector: `${BUILD_LABEL}=${name},${JOB_KIND_LABEL}=initialize`,
      });
      const job = jobs.items
        .filter((item) => item.metadata?.deletionTimestamp == null)
        .sort((a, b) => created(a) - created(b))
        .pop()?.metadata?.name;
      if (!job) return undefined;
      const pods = await kube.core.listNamespacedPod({
        namespace,
        labelSelector: `job-name=${job}`,
      });
      return pods.items.sort((a, b) => created(a) - created(b)).pop();
    } catch (error) {
      throw unavailable(`the init Job of build ${name}`, error);
    }
  };

  /** Streams the log of a pod's first container; destroying the stream aborts the request. */
  const podLog = async (
    pod: V1Pod,
    what: string,
    options: { follow: boolean; tail: number },
  ): Promise<Readable> => {
    const podName = pod.metadata?.name ?? '';
    // Kubernetes would refuse (400) the log of a pod not started yet: it is a wait, not an error.
    if (pod.status?.phase === 'Pending') {
      throw new LogUnavailableError(`the pod ${podName} of ${what} is not running yet`, 503);
    }
    const query = new URLSearchParams({
      container: pod.spec?.containers[0]?.name ?? '',
      follow: String(options.follow),
      tailLines: String(options.tail),
    });
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(podName)}/log?${query}`;
    let stream: IncomingMessage;
    try {
      stream = await streamFromKube(kube.config, path);
    } catch (error) {
      throw unavailable(`the log of pod ${podName}`, error);
    }
    openStreams.inc();
    // 'close' comes once, whether the log ended, failed or was destroyed by its reader.
    stream.once('close', () => openStreams.dec());
    return stream;
  };

  return {
    /** The kept init log with its outcome, or undefined when none was kept yet. */
    initLog: (name: string) => keptLog(name, 'init'),

    /** The kept log of the last cleanup Job with its outcome, or undefined when none ran yet. */
    cleanupLog: (name: string) => keptLog(name, 'cleanup'),

    /** The kept log of the last image build with its outcome, or undefined when none ended yet. */
    imageBuildLog: (name: string) => keptLog(name, 'build'),

    /**
     * Streams the log of the build's newest app pod. Destroying the stream aborts the request
     * to Kubernetes (a following reader must, when its client goes away).
     */
    async buildLog(name: string, options: { follow: boolean; tail: number }): Promise<Readable> {
      const pod = await newestAppPod(name);
      if (!pod?.metadata?.name) {
        throw new LogUnavailableError(`build ${name} has no running pod yet`, 503);
      }
      return podLog(pod, `build ${name}`, options);
    },

    /**
     * Streams the log of the pod of the build's newest init Job, while it runs (the build page
     * follows it; once the Job ends, its kept log is the one to read). Destroying the stream
     * aborts the request to Kubernetes.
     */
    async liveInitLog(name: string, options: { follow: boolean; tail: number }): Promise<Readable> {
      const pod = await newestInitPod(name);
      if (!pod?.metadata?.name) {
        throw new LogUnavailableError(`build ${name} has no init pod yet`, 503);
      }
      return podLog(pod, `the init of build ${name}`, options);
    },
  };
}
