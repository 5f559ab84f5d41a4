/**
 * The API's in-memory index of builds: an informer on the build Deployments, so that every read
 * is served from memory (like runboat's index) and every change is pushed to SSE listeners.
 * Builds asked for but not deployed yet (no worker has run their workflow) have no Deployment:
 * the index also keeps those, from Temporal, with status `queued`, until their Deployment
 * appears and the informer's view replaces them.
 */
import { EventEmitter } from 'node:events';
import type { V1Deployment } from '@kubernetes/client-node';
import { annotations, BUILD_LABEL } from '../domain/build.js';
import { buildView, type BuildView } from '../domain/build-view.js';
import { makeDeploymentInformer, superviseInformer, type KubeClients } from '../lib/kube.js';
import { ClientError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { BuildSet, filters, mergeNewestFirst, newestFirst, type BuildFilter } from './build-set.js';
import type { StatusCounts } from './fleet-summary.js';
import type { QueuedBuild, QueuedBuildSource } from './queued-builds.js';

export type { BuildFilter } from './build-set.js';

/** Events: `upd` (a build appeared or changed) and `del` (a build is gone). */
export interface BuildIndexEvents {
  upd: [BuildView];
  del: [BuildView];
}

/** Options of the index. */
export interface BuildIndexOptions {
  /** Where builds not deployed yet are found; without it the index knows Deployments only. */
  queued?: QueuedBuildSource | undefined;
  /**
   * Least time between two lists of the builds not deployed yet (default 3 s). A list that took
   * long spaces the next one out: at most 1/{@link QUEUED_LIST_SHARE} of the time is spent
   * listing.
   */
  queuedIntervalMs?: number;
}

/**
 * A visibility list on the Temporal dev server's SQLite scans every running workflow: at 10,000
 * builds one took 1-2.5 s, and one every 3 s kept Temporal busy at 75 % of a core, halving the
 * rate at which it could start and run workflows. The next list waits this many times as long
 * as the last one took, when that is longer than the interval.
 */
export const QUEUED_LIST_SHARE = 20;

/**
 * Runs `task` now, then again and again, one at a time: each run starts `intervalMs` after the
 * previous one ended, or `share` times as long as that one took when that is longer. Resolves
 * once the first run ended.
 */
export async function repeatSpaced(
  task: () => Promise<void>,
  intervalMs: number,
  share: number,
): Promise<{ stop(): void }> {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const run = async () => {
    const began = Date.now();
    await task();
    if (stopped) return;
    timer = setTimeout(() => void run(), Math.max(intervalMs, (Date.now() - began) * share));
  };
  await run();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** The view of a build that has a workflow but no Deployment yet. */
export function queuedView(build: QueuedBuild, buildDomain: string): BuildView {
  const { commit } = build;
  const view = buildView(
    {
      metadata: {
        name: build.name,
        creationTimestamp: build.created,
        annotations: {
          [annotations.repo]: commit.repo,
          [annotations.targetBranch]: commit.targetBranch,
          [annotations.pr]: commit.pr === null ? '' : String(commit.pr),
          [annotations.gitCommit]: commit.gitCommit,
        },
      },
    },
    buildDomain,
  );
  return { ...view, status: build.status };
}

/** The index; `start()` resolves once the first list is in memory. */
export class BuildIndex extends EventEmitter<BuildIndexEvents> {
  private readonly builds = new BuildSet();
  /** Builds with a workflow and no Deployment yet, by name (never one of `builds`). */
  private readonly queued = new BuildSet();
  private synced = false;
  private supervised: { stop(): Promise<void> } | undefined;
  private queuedLoop: { stop(): void } | undefined;
  private queuedFailing = false;
  /** When `find` added a queued build: the visibility store may not list it for a moment. */
  private readonly foundAt = new Map<string, number>();
  private readonly informer;

  constructor(
    kube: KubeClients,
    namespace: string,
    private readonly buildDomain: string,
    private readonly logger: Logger,
    private readonly options: BuildIndexOptions = {},
  ) {
    super();
    this.setMaxListeners(0);
    // Only the fields a build's view reads are kept, as in the worker (lib/kube.ts).
    this.informer = makeDeploymentInformer(kube, { namespace, labelSelector: BUILD_LABEL });
    const put = (deployment: V1Deployment) => {
      const view = buildView(deployment, this.buildDomain);
      this.builds.set(view);
      this.queued.delete(view.name);
      this.foundAt.delete(view.name);
      this.emit('upd', view);
    };
    this.informer.on('add', put);
    this.informer.on('update', put);
    this.informer.on('delete', (deployment) => {
      const name = deployment.metadata?.name ?? '';
      const view = this.builds.get(name) ?? buildView(deployment, this.buildDomain);
      this.builds.delete(name);
      this.emit('del', view);
    });
  }

  /** Lists and starts watching; resolves once the cache holds every build. */
  async start(): Promise<void> {
    // Every build of the first list is put in order once, when the list is in.
    this.builds.deferOrder();
    this.supervised = await superviseInformer(this.informer, (error, retryInMs) =>
      this.logger.warn({ err: error, retryInMs }, 'build index watch failed; restarting'),
    );
    this.synced = true;
    if (this.options.queued) {
      this.queuedLoop = await repeatSpaced(
        () => this.refreshQueued(),
        this.options.queuedIntervalMs ?? 3000,
        QUEUED_LIST_SHARE,
      );
    }
  }

  async stop(): Promise<void> {
    this.queuedLoop?.stop();
    await this.supervised?.stop();
  }

  /** Lists the builds not deployed yet again; one that left the list without a Deployment is gone. */
  async refreshQueued(): Promise<void> {
    const source = this.options.queued;
    if (!source) return;
    let found: QueuedBuild[];
    try {
      found = await source.list();
      if (this.queuedFailing) this.logger.info('queued builds listed again');
      this.queuedFailing = false;
    } catch (error) {
      // Temporal down: keep showing what was queued; say so once, not every few seconds.
      if (!this.queuedFailing) this.logger.warn({ err: error }, 'cannot list queued builds');
      this.queuedFailing = true;
      return;
    }
    const names = new Set<string>();
    for (const build of found) {
      names.add(build.name);
      this.putQueued(build);
    }
    const recent = Date.now() - 10_000;
    for (const view of [...this.queued.values()]) {
      const { name } = view;
      if (names.has(name) || (this.foundAt.get(name) ?? 0) > recent) continue;
      this.queued.delete(name);
      this.foundAt.delete(name);
      this.emit('del', view);
    }
  }

  private putQueued(build: QueuedBuild): BuildView | undefined {
    if (this.builds.has(build.name)) return this.builds.get(build.name);
    const known = this.queued.get(build.name);
    if (known?.status === build.status) return known;
    const view = queuedView(build, this.buildDomain);
    this.queued.set(view);
    this.emit('upd', view);
    return view;
  }

  /** Whether the cache has been filled at least once. */
  get isSynced(): boolean {
    return this.synced;
  }

  /** A deployed build (one with a Deployment). */
  get(name: string): BuildView | undefined {
    return this.builds.get(name);
  }

  /** Deployed builds matching every given filter, newest first. */
  list(filter: BuildFilter = {}): BuildView[] {
    if (!filters(filter)) return this.builds.newestFirst().slice();
    return this.builds.select(filter).sort(newestFirst);
  }

  /** Deployed and queued builds matching every given filter, newest first: what users see. */
  all(filter: BuildFilter = {}): BuildView[] {
    if (!filters(filter))
      return mergeNewestFirst(this.builds.newestFirst(), this.queued.newestFirst());
    return [...this.builds.select(filter), ...this.queued.select(filter)].sort(newestFirst);
  }

  /** How many builds of {@link all} have each status, kept as they change (no pass over them). */
  counts(): StatusCounts {
    const counts = new Map(this.builds.counts());
    for (const [status, count] of this.queued.counts()) {
      counts.set(status, (counts.get(status) ?? 0) + count);
    }
    return counts;
  }

  /**
   * A build, deployed or queued; one asked for since the last list of queued builds is looked
   * up in Temporal by name (its workflow id), so a build is never unknown once accepted.
   */
  async find(name: string): Promise<BuildView | undefined> {
    const known = this.builds.get(name) ?? this.queued.get(name);
    if (known || !this.options.queued) return known;
    const found = await this.options.queued.find(name).catch((error: unknown) => {
      this.logger.warn({ err: error, build: name }, 'cannot look a build up in Temporal');
      throw new ClientError(`Temporal does not answer: cannot tell whether ${name} exists`, 503);
    });
    if (!found) return undefined;
    if (!this.builds.has(name)) this.foundAt.set(name, Date.now());
    return this.putQueued(found);
  }
}
