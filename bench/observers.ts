/**
 * What a benchmark sees for itself, on its own clock: the build Deployments, init Jobs and build
 * pods of a namespace through informers of its own process (so that an instant is when the cluster
 * showed it, not when the system said so), and the API's Server-Sent Events (what a browser sees).
 */
import {
  makeInformer,
  type KubernetesObject,
  type V1Deployment,
  type V1Job,
  type V1Pod,
} from '@kubernetes/client-node';
import { annotations, BUILD_LABEL, JOB_KIND_LABEL, STATUS_LABEL } from '../domain/build.js';
import { superviseInformer, type KubeClients } from '../lib/kube.js';
import { Transitions } from './bench-kit.js';

/** The statuses whose instants the observers record (`<build> <status>` keys). */
const watchedStatuses = ['todo', 'initializing', 'stopped', 'started', 'failed', 'undeploying'];

/** A build Deployment as last seen. */
export interface SeenDeployment {
  status: string | undefined;
  replicas: number;
  repo: string;
  lastScaled: string;
  deleting: boolean;
  /** The Deployment controller has seen its last change (it made the ReplicaSet). */
  observed: boolean;
}

const done = (job: V1Job) =>
  (job.status?.conditions ?? []).some(
    (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True',
  );

/** The cluster as this process's own informers show it. */
export class ClusterView {
  readonly deployments = new Map<string, SeenDeployment>();
  /** Builds whose Deployment asks for pods (`spec.replicas > 0`). */
  readonly scaledUp = new Set<string>();
  /** Build name: its Deployment exists. */
  readonly exists = new Transitions();
  /** Build name: its Deployment asks for a pod. */
  readonly scaled = new Transitions();
  /** `<build> <status>`: its Deployment shows that status label. */
  readonly status = new Transitions();
  /** Build name: a pod of the build is Ready. */
  readonly podReady = new Transitions();
  /** Build name: its init Job is Complete. */
  readonly jobComplete = new Transitions();
  /** Build name → how long its last init Job took, from created to Complete as seen here (ms). */
  readonly jobMs = new Map<string, number>();
  /** Build name → when its last init Job was first seen. */
  readonly jobCreatedAt = new Map<string, number>();
  /** Init Jobs neither finished nor deleted. */
  readonly activeInit = new Set<string>();
  /** Most init Jobs active at once since the last {@link resetPeak}. */
  peakInit = 0;
  /** Each time `scaledUp` went above the limit: how long until it was back within it (ms). */
  readonly restores: number[] = [];
  private overSince: number | undefined;
  private readonly jobCreated = new Map<string, number>();
  private readonly stops: (() => Promise<void>)[] = [];

  constructor(
    private readonly kube: KubeClients,
    private readonly namespace: string,
    /** The started limit whose crossings are timed. */
    private readonly maxStarted: number,
  ) {}

  /** Starts the informers; resolves once each has listed. */
  async start(): Promise<void> {
    const { namespace } = this;
    await this.inform<V1Deployment>(
      `/apis/apps/v1/namespaces/${namespace}/deployments`,
      BUILD_LABEL,
      () => this.kube.apps.listNamespacedDeployment({ namespace, labelSelector: BUILD_LABEL }),
      (d) => this.onDeployment(d),
      (d) => this.onDeploymentGone(d),
    );
    const initJobs = `${JOB_KIND_LABEL}=initialize`;
    await this.inform<V1Job>(
      `/apis/batch/v1/namespaces/${namespace}/jobs`,
      initJobs,
      () => this.kube.batch.listNamespacedJob({ namespace, labelSelector: initJobs }),
      (job) => this.onJob(job, false),
      (job) => this.onJob(job, true),
    );
    const buildPods = `${BUILD_LABEL},!${JOB_KIND_LABEL}`;
    await this.inform<V1Pod>(
      `/api/v1/namespaces/${namespace}/pods`,
      buildPods,
      () => this.kube.core.listNamespacedPod({ namespace, labelSelector: buildPods }),
      (pod) => this.onPod(pod, false),
      (pod) => this.onPod(pod, true),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.stops.map((stop) => stop()));
  }

  /** Deployments the Deployment controller has not caught up with. */
  unobserved(): number {
    let n = 0;
    for (const d of this.deployments.values()) if (!d.observed) n++;
    return n;
  }

  /** Builds whose Deployment shows this status label. */
  count(status: string): number {
    let n = 0;
    for (const d of this.deployments.values()) if (d.status === status) n++;
    return n;
  }

  /** Build Deployments not being deleted. */
  get live(): number {
    let n = 0;
    for (const d of this.deployments.values()) if (!d.deleting) n++;
    return n;
  }

  /** Builds in a status, optionally only those of repos starting with a prefix. */
  named(status: string, repoPrefix = ''): string[] {
    const names: string[] = [];
    for (const [name, d] of this.deployments) {
      if (d.status === status && !d.deleting && d.repo.startsWith(repoPrefix)) names.push(name);
    }
    return names;
  }

  /** The `count` builds in a status whose last scale is the most recent (the last evicted). */
  newest(status: string, repoPrefix: string, count: number): string[] {
    return this.named(status, repoPrefix)
      .sort((a, b) =>
        (this.deployments.get(b)?.lastScaled ?? '').localeCompare(
          this.deployments.get(a)?.lastScaled ?? '',
        ),
      )
      .slice(0, count);
  }

  resetPeak(): void {
    this.peakInit = this.activeInit.size;
  }

  private async inform<T extends KubernetesObject>(
    path: string,
    selector: string,
    list: () => Promise<{ items: T[] }>,
    onUpsert: (object: T) => void,
    onDelete: (object: T) => void,
  ): Promise<void> {
    const informer = makeInformer<T>(
      this.kube.config,
      path,
      list as Parameters<typeof makeInformer<T>>[2],
      selector,
    );
    informer.on('add', onUpsert);
    informer.on('update', onUpsert);
    informer.on('delete', onDelete);
    const supervised = await superviseInformer(informer, (error) =>
      console.log(`[bench] watch of ${path} failed, restarting: ${String(error)}`),
    );
    this.stops.push(() => supervised.stop());
  }

  private onDeployment(deployment: V1Deployment): void {
    const name = deployment.metadata?.name ?? '';
    const status = deployment.metadata?.labels?.[STATUS_LABEL];
    const replicas = deployment.spec?.replicas ?? 0;
    const deleting = Boolean(deployment.metadata?.deletionTimestamp);
    this.deployments.set(name, {
      status,
      replicas,
      repo: deployment.metadata?.annotations?.[annotations.repo] ?? '',
      lastScaled: deployment.metadata?.annotations?.[annotations.lastScaled] ?? '',
      deleting,
      observed:
        (deployment.status?.observedGeneration ?? 0) >= (deployment.metadata?.generation ?? 1),
    });
    this.exists.set(name, true);
    this.scaled.set(name, replicas > 0);
    for (const s of watchedStatuses) this.status.set(`${name} ${s}`, status === s);
    if (replicas > 0) this.scaledUp.add(name);
    else this.scaledUp.delete(name);
    this.checkLimit();
  }

  private onDeploymentGone(deployment: V1Deployment): void {
    const name = deployment.metadata?.name ?? '';
    this.deployments.delete(name);
    this.exists.set(name, false);
    this.scaled.set(name, false);
    for (const s of watchedStatuses) this.status.set(`${name} ${s}`, false);
    this.scaledUp.delete(name);
    this.checkLimit();
  }

  private checkLimit(): void {
    const over = this.scaledUp.size > this.maxStarted;
    if (over && this.overSince === undefined) this.overSince = performance.now();
    if (!over && this.overSince !== undefined) {
      this.restores.push(performance.now() - this.overSince);
      this.overSince = undefined;
    }
  }

  private onJob(job: V1Job, deleted: boolean): void {
    const name = job.metadata?.name ?? '';
    const build = job.metadata?.labels?.[BUILD_LABEL] ?? '';
    if (!this.jobCreated.has(name)) {
      this.jobCreated.set(name, performance.now());
      this.jobCreatedAt.set(build, performance.now());
    }
    const finished = done(job);
    const complete = (job.status?.conditions ?? []).some(
      (c) => c.type === 'Complete' && c.status === 'True',
    );
    if (complete && !this.jobComplete.holds(build)) {
      this.jobMs.set(build, performance.now() - (this.jobCreated.get(name) ?? NaN));
    }
    this.jobComplete.set(build, complete && !deleted);
    if (deleted || finished) this.activeInit.delete(name);
    else this.activeInit.add(name);
    this.peakInit = Math.max(this.peakInit, this.activeInit.size);
  }

  private onPod(pod: V1Pod, deleted: boolean): void {
    const build = pod.metadata?.labels?.[BUILD_LABEL] ?? '';
    const ready = (pod.status?.conditions ?? []).some(
      (c) => c.type === 'Ready' && c.status === 'True',
    );
    this.podReady.set(build, ready && !deleted && !pod.metadata?.deletionTimestamp);
  }
}

/**
 * Reads a Server-Sent Events stream; `onEvent` returning false ends the reading. Resolves when
 * the stream ends or is aborted.
 */
export async function readEvents(
  url: string,
  signal: AbortSignal,
  onEvent: (event: string, data: string) => boolean | void,
): Promise<void> {
  const response = await fetch(url, { signal, headers: { accept: 'text/event-stream' } });
  if (!response.ok || !response.body) throw new Error(`${url}: ${response.status}`);
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length > 0 && onEvent(event, data.join('\n')) === false) return;
    }
  }
}

/** The API's build events as a browser receives them, reconnecting when the stream ends. */
export class BuildEvents {
  /** `<build> <status>`: the API has shown the build in that status. */
  readonly status = new Transitions();
  private readonly controller = new AbortController();
  private running: Promise<void> | undefined;

  constructor(private readonly url: string) {}

  start(): void {
    this.running = (async () => {
      while (!this.controller.signal.aborted) {
        await readEvents(this.url, this.controller.signal, (event, data) => {
          const build = JSON.parse(data) as { name: string; status: string };
          for (const s of watchedStatuses) {
            this.status.set(`${build.name} ${s}`, event === 'upd' && build.status === s);
          }
        }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.running;
  }
}
