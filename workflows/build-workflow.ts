/**
 * One workflow per build, for as long as the build lives (DESIGN.md §5): deploy, initialize,
 * then serve start/stop/reset/undeploy until undeployed. Every transition is mirrored onto the
 * build's Deployment by the activities and into the workflow's search attributes here.
 */
import {
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import type { BuildActivities } from '../activities/index.js';
import type { BuildRef, BuildStatus, ResolvedBuild } from '../domain/build.js';
import {
  defaultTaskQueues,
  driftSignal,
  evictSignal,
  fleetChangedSignal,
  initStartedSignal,
  INVALID_TRANSITION,
  resetUpdate,
  startUpdate,
  stateQuery,
  stopUpdate,
  undeployUpdate,
  type BuildState,
  type BuildWorkflowInput,
} from '../domain/messages.js';
import { buildName, buildSlug } from '../domain/names.js';
import { buildSearchAttributeKeys as keys } from '../domain/search-attributes.js';

/**
 * Short Kubernetes calls: retried until the API server answers (4xx are non-retryable), at most
 * 10 s apart so that a build goes on soon after an outage.
 */
const short = proxyActivities<BuildActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
});

/**
 * The transitions a user waits for (mirror an init outcome, scale): local activities, run by the
 * worker that runs the workflow, without a round trip through a task queue.
 */
const local = proxyLocalActivities<BuildActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '10s' },
});

/** Waits on Kubernetes (readiness, deletion): heartbeats, cancellable. */
const waiting = proxyActivities<BuildActivities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '20 seconds',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

/** The cleanup Job: a few attempts with backoff, then the build shows cleanup-failed. */
const cleanupActivities = proxyActivities<BuildActivities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '20 seconds',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumAttempts: 4 },
});

/** Commit statuses: best effort, they never hold a build up. */
const statuses = proxyActivities<BuildActivities>({
  startToCloseTimeout: '20 seconds',
  retry: { initialInterval: '1s', maximumAttempts: 5 },
});

type ActionKind = 'start' | 'stop' | 'reset' | 'undeploy';

interface Action {
  kind: ActionKind;
  done: boolean;
  error?: string;
}

/** Statuses from which each update is allowed. */
const allowedFrom: Record<ActionKind, readonly BuildStatus[]> = {
  start: ['stopped', 'stopping', 'starting', 'started'],
  stop: ['stopped', 'stopping', 'starting', 'started'],
  reset: ['todo', 'initializing', 'failed', 'stopped', 'stopping', 'starting', 'started'],
  undeploy: [
    'todo',
    'initializing',
    'failed',
    'stopped',
    'stopping',
    'starting',
    'started',
    'undeploying',
    'cleanup-failed',
  ],
};

function invalidTransition(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: INVALID_TRANSITION, message, nonRetryable: true });
}

/** State and behaviour of one build; the workflow function only wires it. */
class Build {
  readonly state: BuildState;
  private config: ResolvedBuild | undefined;
  private readonly actions: Action[] = [];
  private readonly init: BuildActivities;

  constructor(private readonly input: BuildWorkflowInput) {
    const name = buildName(input.commit);
    this.state = input.state ?? {
      name,
      slug: buildSlug(input.commit),
      commit: input.commit,
      status: 'todo',
      initStatus: 'todo',
      initGeneration: 0,
      cleanupGeneration: 0,
      failureReason: null,
      lastScaled: null,
      deployLink: '',
    };
    this.config = input.config;
    this.init = proxyActivities<BuildActivities>({
      taskQueue: input.initTaskQueue ?? defaultTaskQueues.init,
      // The Job's own deadline bounds the init; the heartbeat notices a dead worker.
      startToCloseTimeout: '24 hours',
      heartbeatTimeout: '20 seconds',
      retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute' },
    });
  }

  private get ref(): BuildRef {
    return { name: this.state.name, slug: this.state.slug, commit: this.state.commit };
  }

  private pendingOf(...kinds: ActionKind[]): boolean {
    return this.actions.some((action) => kinds.includes(action.kind));
  }

  register(): void {
    setHandler(stateQuery, () => this.state);
    for (const [update, kind] of [
      [startUpdate, 'start'],
      [stopUpdate, 'stop'],
      [resetUpdate, 'reset'],
      [undeployUpdate, 'undeploy'],
    ] as const) {
      setHandler(update, (): Promise<BuildState> => this.request(kind), {
        validator: () => this.validate(kind),
      });
    }
    setHandler(initStartedSignal, () => {
      if (this.state.status === 'todo') {
        this.state.initStatus = 'started';
        this.setStatus('initializing');
      }
    });
    setHandler(evictSignal, (kind) => {
      // The fleet counted from the cluster; by now the build may have moved on: re-check.
      if (this.actions.length > 0) return;
      if (kind === 'stop' && ['started', 'starting'].includes(this.state.status)) {
        this.actions.push({ kind: 'stop', done: false });
      }
      if (kind === 'undeploy' && ['stopped', 'failed'].includes(this.state.status)) {
        log.info('evicted', { build: this.state.name });
        this.actions.push({ kind: 'undeploy', done: false });
      }
      if (kind === 'supersede' && this.state.status === 'todo') {
        log.info('superseded while queued for init', { build: this.state.name });
        this.actions.push({ kind: 'undeploy', done: false });
      }
    });
    setHandler(driftSignal, (event) => {
      log.info('drift', { build: this.state.name, event });
      const gone = event.kind === 'deployment-deleting' || event.kind === 'deployment-gone';
      if (gone && this.state.status !== 'undeploying' && !this.pendingOf('undeploy')) {
        // Someone deleted the Deployment: the finalizer holds it until the cleanup has run.
        this.actions.push({ kind: 'undeploy', done: false });
      }
      if (event.kind === 'scaled' && this.actions.length === 0) {
        // Scaled by hand: taken as a start or a stop, so that the limits, the mirror and
        // last-scaled follow what the operator did.
        const running = ['started', 'starting'].includes(this.state.status);
        if ((event.replicas ?? 0) > 0 && this.state.status === 'stopped') {
          this.actions.push({ kind: 'start', done: false });
        } else if ((event.replicas ?? 0) === 0 && running) {
          this.actions.push({ kind: 'stop', done: false });
        }
      }
    });
  }

  private validate(kind: ActionKind): void {
    if (
      this.pendingOf('undeploy') ||
      (this.state.status === 'undeploying' && kind !== 'undeploy')
    ) {
      throw invalidTransition(`cannot ${kind} build ${this.state.name}: it is being undeployed`);
    }
    if (!allowedFrom[kind].includes(this.state.status)) {
      throw invalidTransition(
        `cannot ${kind} build ${this.state.name}: it is ${this.state.status}`,
      );
    }
  }

  private async request(kind: ActionKind): Promise<BuildState> {
    const action: Action = { kind, done: false };
    this.actions.push(action);
    await condition(() => action.done);
    if (action.error) throw invalidTransition(action.error);
    return this.state;
  }

  private setStatus(status: BuildStatus): void {
    this.state.status = status;
    upsertSearchAttributes([{ key: keys.status, value: status }]);
  }

  private async configuration(): Promise<ResolvedBuild> {
    this.config ??= await short.resolveBuildConfig(this.ref);
    this.state.deployLink = this.config.deployLink;
    return this.config;
  }

  private shouldContinueAsNew(): boolean {
    const info = workflowInfo();
    const limit = this.input.maxHistoryEvents;
    return info.continueAsNewSuggested || (limit !== undefined && info.historyLength > limit);
  }

  async run(): Promise<BuildState> {
    if (!this.input.state) await this.deploy();
    else if (this.input.trigger.kind === 'adopted') await this.adopt();
    for (;;) {
      const action = this.actions.shift();
      if (action) {
        const ended = await this.perform(action);
        if (ended) break;
        continue;
      }
      if (this.state.status === 'todo' || this.state.status === 'initializing') {
        await this.initialize();
        continue;
      }
      if (this.shouldContinueAsNew()) {
        await condition(allHandlersFinished);
        if (this.actions.length === 0) {
          return continueAsNew<typeof buildWorkflow>({
            ...this.input,
            state: this.state,
            config: this.config,
          });
        }
        continue;
      }
      await condition(() => this.actions.length > 0 || this.shouldContinueAsNew());
    }
    await condition(allHandlersFinished);
    return this.state;
  }

  /** Applies the deployment objects: the build is visible at once, queued for init. */
  private upsertCommitAttributes(): void {
    const { commit } = this.state;
    const attributes: SearchAttributeUpdatePair[] = [
      { key: keys.repo, value: commit.repo },
      { key: keys.targetBranch, value: commit.targetBranch },
      { key: keys.commit, value: commit.gitCommit },
      { key: keys.status, value: this.state.status },
    ];
    if (commit.pr !== null) attributes.push({ key: keys.pr, value: commit.pr });
    upsertSearchAttributes(attributes);
  }

  /**
   * Takes over a build found in Kubernetes with no workflow, in the state its Deployment shows:
   * an undeploy under way goes on, a start under way is awaited, an init under way is adopted by
   * the init activity (same Job name), anything else waits for requests.
   */
  private async adopt(): Promise<void> {
    log.info('adopting build', { build: this.state.name, status: this.state.status });
    this.upsertCommitAttributes();
    if (this.state.status === 'undeploying') this.actions.push({ kind: 'undeploy', done: false });
    if (this.state.status === 'starting') await this.awaitReady();
  }

  private async deploy(): Promise<void> {
    this.upsertCommitAttributes();
    const config = await this.configuration();
    await short.deploy(this.ref, config);
    this.setStatus('todo');
    await this.notifyFleet();
    if (this.input.cancelSuperseded) await this.supersedeQueued();
    await this.report('pending', 'queued for initialization', 'build');
  }

  /** Asks the older builds of this branch or PR that still wait for init to go. */
  private async supersedeQueued(): Promise<void> {
    for (const name of await short.queuedSiblings(this.ref)) {
      await getExternalWorkflowHandle(name)
        .signal(evictSignal, 'supersede')
        .catch((error: unknown) =>
          log.warn('not superseded', { build: name, error: String(error) }),
        );
    }
  }

  /** Tells the fleet to recount; a missing fleet means no limits, not a failure. */
  private async notifyFleet(): Promise<void> {
    if (!this.input.fleetWorkflowId) return;
    try {
      await getExternalWorkflowHandle(this.input.fleetWorkflowId).signal(fleetChangedSignal);
    } catch (error) {
      log.warn('fleet not told', { build: this.state.name, error: String(error) });
    }
  }

  private async report(
    state: 'pending' | 'success' | 'failure',
    description: string,
    link: 'live' | 'build' | 'init-log',
  ): Promise<void> {
    try {
      await statuses.postCommitStatus(this.ref, state, description, link);
    } catch (error) {
      log.warn('commit status not reported', { build: this.state.name, error: String(error) });
    }
  }

  /** Runs the init Job; a reset or undeploy meanwhile cancels it and kills the Job. */
  private async initialize(): Promise<void> {
    const config = await this.configuration();
    const generation = ++this.state.initGeneration;
    const scope = new CancellationScope();
    const running = scope.run(() => this.init.initialize(this.ref, config, generation));
    const interrupted = condition(() => this.pendingOf('reset', 'undeploy'));
    const outcome = await Promise.race([
      running.then(
        (result) => ({ result }),
        (error: unknown) => ({ error }),
      ),
      interrupted.then(() => undefined),
    ]);
    if (outcome === undefined) {
      scope.cancel();
      await running.catch(() => undefined);
      await short.killJobs(this.state.name, 'initialize');
      return;
    }
    if ('error' in outcome) {
      const reason = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
      await this.initEnded(false, reason);
      return;
    }
    await this.initEnded(outcome.result.succeeded, outcome.result.reason);
  }

  private async initEnded(succeeded: boolean, reason: string | null): Promise<void> {
    this.state.initStatus = succeeded ? 'succeeded' : 'failed';
    if (succeeded) {
      this.state.failureReason = null;
      await local.mirror(this.state.name, {
        status: 'stopped',
        initStatus: 'succeeded',
        failureReason: '',
      });
      this.setStatus('stopped');
      await this.report('success', 'ready: start it from its page', 'live');
    } else {
      const failureReason = reason ?? 'init failed';
      this.state.failureReason = failureReason;
      await short.mirror(this.state.name, {
        status: 'failed',
        initStatus: 'failed',
        failureReason,
      });
      this.setStatus('failed');
      await this.report('failure', failureReason.slice(0, 120), 'init-log');
    }
  }

  /** Performs one requested action; true when the build is gone. */
  private async perform(action: Action): Promise<boolean> {
    const done = (error?: string) => {
      action.done = true;
      if (error) action.error = error;
    };
    if (action.kind !== 'undeploy' && !allowedFrom[action.kind].includes(this.state.status)) {
      done(`cannot ${action.kind} build ${this.state.name}: it is ${this.state.status}`);
      return false;
    }
    switch (action.kind) {
      case 'start': {
        await short.applyHook(this.ref, await this.configuration(), 'start');
        this.state.lastScaled = await local.scale(this.state.name, 1);
        this.setStatus('starting');
        done();
        await this.notifyFleet();
        await this.awaitReady();
        return false;
      }
      case 'stop': {
        this.state.lastScaled = await local.scale(this.state.name, 0);
        await short.applyHook(this.ref, await this.configuration(), 'stop');
        this.setStatus('stopped');
        done();
        return false;
      }
      case 'reset': {
        await this.reset();
        done();
        return false;
      }
      case 'undeploy': {
        const gone = await this.undeploy();
        done();
        return gone;
      }
    }
  }

  /** Waits for a ready pod, unless another action comes first. */
  private async awaitReady(): Promise<void> {
    const scope = new CancellationScope();
    const ready = scope.run(() => waiting.awaitReady(this.state.name));
    const outcome = await Promise.race([
      ready,
      condition(() => this.actions.length > 0).then(() => 'interrupted' as const),
    ]);
    if (outcome === 'interrupted') {
      scope.cancel();
      await ready.catch(() => undefined);
    } else if (outcome) {
      this.setStatus('started');
    }
  }

  /** Runs the init again from scratch, with the configuration as it is now. */
  private async reset(): Promise<void> {
    await short.killJobs(this.state.name, 'initialize');
    this.config = undefined;
    const config = await this.configuration();
    // Re-applying the deployment mode sets replicas 0 and init-status todo again.
    await short.deploy(this.ref, config);
    await short.mirror(this.state.name, { status: 'todo', failureReason: '', cleanupStatus: '' });
    this.state.initStatus = 'todo';
    this.state.failureReason = null;
    this.setStatus('todo');
    await this.report('pending', 'queued for initialization', 'build');
  }

  /** Stops, drops the database through the cleanup Job, deletes everything. */
  private async undeploy(): Promise<boolean> {
    this.setStatus('undeploying');
    await short.mirror(this.state.name, { status: 'undeploying' });
    await short.killJobs(this.state.name, 'initialize');
    await short.scale(this.state.name, 0);
    const config = await this.configuration();
    try {
      await cleanupActivities.cleanup(this.ref, config, ++this.state.cleanupGeneration);
    } catch (error) {
      this.state.failureReason = error instanceof Error ? error.message : String(error);
      log.error('cleanup failed', { build: this.state.name, reason: this.state.failureReason });
      await short.mirror(this.state.name, {
        status: 'cleanup-failed',
        cleanupStatus: 'failed',
        failureReason: this.state.failureReason,
      });
      this.setStatus('cleanup-failed');
      return false;
    }
    await waiting.deleteBuildObjects(this.state.name);
    return true;
  }
}

/** The workflow of one build; its id is the build name. */
export async function buildWorkflow(input: BuildWorkflowInput): Promise<BuildState> {
  const build = new Build(input);
  build.register();
  return build.run();
}
