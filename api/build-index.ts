/**
 * The API's in-memory index of builds: an informer on the build Deployments, so that every read
 * is served from memory (like runboat's index) and every change is pushed to SSE listeners.
 */
import { EventEmitter } from 'node:events';
import { makeInformer, type V1Deployment } from '@kubernetes/client-node';
import { BUILD_LABEL, type BuildStatus } from '../domain/build.js';
import { buildView, type BuildView } from '../domain/build-view.js';
import { superviseInformer, type KubeClients } from '../lib/kube.js';
import type { Logger } from '../lib/logger.js';

/** Filters of `GET /builds`. */
export interface BuildFilter {
  repo?: string | undefined;
  targetBranch?: string | undefined;
  /** A branch name or `pr<N>`-less PR number as text: matches the target branch or the PR. */
  branch?: string | undefined;
  pr?: number | undefined;
  status?: BuildStatus | undefined;
  name?: string | undefined;
}

/** Events: `upd` (a build appeared or changed) and `del` (a build is gone). */
export interface BuildIndexEvents {
  upd: [BuildView];
  del: [BuildView];
}

/** The index; `start()` resolves once the first list is in memory. */
export class BuildIndex extends EventEmitter<BuildIndexEvents> {
  private readonly builds = new Map<string, BuildView>();
  private synced = false;
  private supervised: { stop(): Promise<void> } | undefined;
  private readonly informer;

  constructor(
    kube: KubeClients,
    namespace: string,
    private readonly buildDomain: string,
    private readonly logger: Logger,
  ) {
    super();
    this.setMaxListeners(0);
    this.informer = makeInformer<V1Deployment>(
      kube.config,
      `/apis/apps/v1/namespaces/${namespace}/deployments`,
      () => kube.apps.listNamespacedDeployment({ namespace, labelSelector: BUILD_LABEL }),
      BUILD_LABEL,
    );
    const put = (deployment: V1Deployment) => {
      const view = buildView(deployment, this.buildDomain);
      this.builds.set(view.name, view);
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
    this.supervised = await superviseInformer(this.informer, (error, retryInMs) =>
      this.logger.warn({ err: error, retryInMs }, 'build index watch failed; restarting'),
    );
    this.synced = true;
  }

  async stop(): Promise<void> {
    await this.supervised?.stop();
  }

  /** Whether the cache has been filled at least once. */
  get isSynced(): boolean {
    return this.synced;
  }

  get(name: string): BuildView | undefined {
    return this.builds.get(name);
  }

  /** Builds matching every given filter, newest first. */
  list(filter: BuildFilter = {}): BuildView[] {
    const repo = filter.repo?.toLowerCase();
    return [...this.builds.values()]
      .filter(
        (build) =>
          (repo === undefined || build.commit_info.repo === repo) &&
          (filter.targetBranch === undefined ||
            build.commit_info.target_branch === filter.targetBranch) &&
          (filter.branch === undefined || build.commit_info.target_branch === filter.branch) &&
          (filter.pr === undefined || build.commit_info.pr === filter.pr) &&
          (filter.status === undefined || build.status === filter.status) &&
          (filter.name === undefined || build.name === filter.name),
      )
      .sort(
        (a, b) => (b.created ?? '').localeCompare(a.created ?? '') || a.name.localeCompare(b.name),
      );
  }
}
