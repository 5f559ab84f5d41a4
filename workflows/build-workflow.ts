/**
 * One workflow per build, for as long as the build lives (docs/architecture.md): deploy, initialize,
 * then serve start/stop/reset/undeploy until undeployed. Every transition is mirrored onto the
 * build's Deployment by the activities and into the workflow's search attributes here.
 */
import {
  ActivityCancellationType,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import type { ActivityInterfaceFor } from '@temporalio/workflow';
import type { BuildActivities, InitOutcome, Mirror } from '../activities/index.js';
import type { BuildRef, BuildStatus, JobKind, ResolvedBuild } from '../domain/build.js';
import {
  defaultTaskQueues,
  driftSignal,
  evictSignal,
  fleetChangedSignal,
  initSlotGrantedSignal,
  initSlotReleaseSignal,
  initSlotsWorkflowId,
  initStartedSignal,
  INVALID_TRANSITION,
  allowedFrom,
  resetUpdate,
  startUpdate,
  stateQuery,
  stopUpdate,
  undeployUpdate,
  type BuildState,
  type BuildWorkflowInput,
} from '../domain/messages.js';
import { failureReason, IMAGE_BUILD_FAILED } from '../domain/failures.js';
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

/**
 * One cleanup attempt (one Job). Errors on the way (the API server away) are retried here; a
 * failed Job is not: the workflow runs a fresh Job for each of its attempts.
 */
const cleanupActivities = proxyActivities<BuildActivities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '20 seconds',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '30s',
    maximumAttempts: 10,
  },
});

/** Commit statuses: best effort, they never hold a build up. */
const statuses = proxyActivities<BuildActivities>({
  startToCloseTimeout: '20 seconds',
  retry: { initialInterval: '1s', maximumAttempts: 5 },
});

/**
 * Patch: an init waits for a slot of the global init limit (workflows/init-slots-workflow.ts);
 * runs from before it relied on the init workers' own slots (docs/upgrades.md).
 */
const GLOBAL_INIT_LIMIT = 'global-init-limit';

/**
 * Patch: a build's transitions take fewer round trips through Temporal (docs/upgrades.md):
 * resolving its configuration, applying its deployment objects and finding its queued siblings
 * are local activities; commit statuses are reported in order but no longer hold the build up;
 * an init gives its slot back as soon as it ends, with its outcome's mirror, not after the
 * outcome's commit status. Runs from before take the old path.
 */
const FAST_TRANSITIONS = 'fast-transitions';

/**
 * Patch: a build tells the fleet what changed (its status and last-scaled time), so that the
 * fleet counts a start before its watch shows it (docs/upgrades.md). Runs from before said
 * nothing.
 */
const FLEET_TOLD_WHAT = 'fleet-told-what';

/**
 * Patch: a build whose init activity reports that it gave the init slot back itself sends no
 * release of its own (docs/upgrades.md). Runs from before, and every other ending of an init,
 * release from the workflow.
 */
const INIT_RELEASES_SLOT = 'init-releases-slot';

/**
 * Patch: a start whose configuration the workflow does not hold yet (an adopted build's first)
 * resolves it and scales in one local activity (docs/upgrades.md). Runs from before resolve it
 * in one local activity and scale in another.
 */
const START_RESOLVES_CONFIG = 'start-resolves-config';

type ActionKind = 'start' | 'stop' | 'reset' | 'undeploy';

interface Action {
  kind: ActionKind;
  done: boolean;
  error?: string;
}

function invalidTransition(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: INVALID_TRANSITION, message, nonRetryable: true });
}

/** State and behaviour of one build; the workflow function only wires it. */
class Build {
  readonly state: BuildState;
  private config: ResolvedBuild | undefined;
  private readonly actions: Action[] = [];
  private readonly init: ActivityInterfaceFor<BuildActivities>;
  /** The ticket of the last init slot granted (see `awaitInitSlot`). */
  private grantedTicket: number | null = null;
  private readonly imageBuilder: ActivityInterfaceFor<BuildActivities>;
  /** The commit statuses not reported yet, in order (see `report`). */
  private reporting: Promise<void> = Promise.resolve();

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
      // A cancelled init deletes its own Job before it ends: wait for that, so that the next
      // init never runs beside it (docs/failures.md).
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute' },
    });
    // The image build: its own task queue and slots, cancelled and awaited like the init.
    this.imageBuilder = proxyActivities<BuildActivities>({
      taskQueue: input.imageBuildTaskQueue ?? defaultTaskQueues.imageBuild,
      startToCloseTimeout: '24 hours',
      heartbeatTimeout: '20 seconds',
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute' },
    });
  }

  private get ref(): BuildRef {
    return { name: this.state.name, slug: this.state.slug, commit: this.state.commit };
  }

  private pendingOf(...kinds: ActionKind[]): boolean {
    return this.actions.some((action) => kinds.includes(action.kind));
  }

  /** An undeploy was asked for and has not ended in cleanup-failed. */
  private get undeploying(): boolean {
    return this.state.status === 'undeploying' || this.pendingOf('undeploy');
  }

  /** The status to show: once an undeploy is asked for, nothing else until it ends. */
  private shown(status: BuildStatus): BuildStatus {
    return this.pendingOf('undeploy') && status !== 'cleanup-failed' ? 'undeploying' : status;
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
    setHandler(initSlotGrantedSignal, (ticket) => {
      this.grantedTicket = ticket;
    });
    setHandler(initStartedSignal, () => {
      if (this.state.status === 'todo') {
        this.state.initStatus = 'started';
        this.setStatus('initializing');
      }
    });
    setHandler(evictSignal, async (kind) => {
      // The fleet counted from the cluster; by now the build may have moved on: re-check.
      if (this.actions.length > 0) return;
      if (kind === 'stop' && ['started', 'starting'].includes(this.state.status)) {
        this.actions.push({ kind: 'stop', done: false });
      }
      if (kind === 'undeploy' && ['stopped', 'failed'].includes(this.state.status)) {
        log.info('evicted', { build: this.state.name });
        await this.queueUndeploy();
      }
      if (kind === 'supersede' && this.state.status === 'todo') {
        log.info('superseded while queued for init', { build: this.state.name });
        await this.queueUndeploy();
      }
    });
    setHandler(driftSignal, async (event) => {
      log.info('drift', { build: this.state.name, event });
      const gone = event.kind === 'deployment-deleting' || event.kind === 'deployment-gone';
      if (gone && !this.undeploying) {
        // Someone deleted the Deployment: the finalizer holds it until the cleanup has run.
        await this.queueUndeploy();
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

  /** Refuses at once (HTTP 409) what the build cannot do now; an undeploy is always taken. */
  private validate(kind: ActionKind): void {
    if (kind === 'undeploy') return;
    if (this.undeploying) {
      throw invalidTransition(`cannot ${kind} build ${this.state.name}: it is being undeployed`);
    }
    if (!allowedFrom[kind].includes(this.state.status)) {
      throw invalidTransition(
        `cannot ${kind} build ${this.state.name}: it is ${this.state.status}`,
      );
    }
  }

  /** Nothing to do: stop a stopped build, start a started one. Answered at once, no change. */
  private isNoOp(kind: ActionKind): boolean {
    if (this.pendingOf('start', 'stop', 'reset')) return false;
    if (kind === 'start') return ['started', 'starting'].includes(this.state.status);
    if (kind === 'stop') return this.state.status === 'stopped';
    return false;
  }

  private async request(kind: ActionKind): Promise<BuildState> {
    if (kind === 'undeploy') {
      // Asked again while undeploying: the answer is what is under way.
      if (!this.undeploying) await this.queueUndeploy();
      return this.state;
    }
    if (this.isNoOp(kind)) return this.state;
    const action: Action = { kind, done: false };
    this.actions.push(action);
    await condition(() => action.done);
    if (action.error) throw invalidTransition(action.error);
    return this.state;
  }

  /**
   * Queues the undeploy and shows it at once (status, search attribute, Deployment label), for
   * the whole cleanup: the actions queued before it are refused, since it ends them anyway.
   */
  private async queueUndeploy(): Promise<void> {
    for (const queued of this.actions.splice(0)) {
      queued.done = true;
      queued.error = `cannot ${queued.kind} build ${this.state.name}: it is being undeployed`;
    }
    this.actions.push({ kind: 'undeploy', done: false });
    this.setStatus('undeploying');
    await this.mirror({ status: 'undeploying', cleanupStatus: '' });
  }

  private setStatus(status: BuildStatus): void {
    this.state.status = this.shown(status);
    upsertSearchAttributes([{ key: keys.status, value: this.state.status }]);
    // What the Temporal UI shows as the workflow's current details.
    const reason = this.state.failureReason;
    setCurrentDetails(
      `**${this.state.status}**` +
        (reason && ['failed', 'cleanup-failed'].includes(this.state.status) ? `: ${reason}` : ''),
    );
  }

  /** Mirrors onto the Deployment; a failure to mirror is logged, never the build's end. */
  private async mirror(mirror: Mirror): Promise<void> {
    const shown = mirror.status ? { ...mirror, status: this.shown(mirror.status) } : mirror;
    try {
      await local.mirror(this.state.name, shown);
    } catch (error) {
      if (isCancellation(error)) throw error;
      log.warn('not mirrored', { build: this.state.name, reason: failureReason(error) });
    }
  }

  /**
   * Activities that run as local activities with FAST_TRANSITIONS, as regular ones before. A
   * local activity also closes the window in which Kubernetes showed a transition the workflow's
   * state did not have yet: no update is taken between the two.
   */
  private get quick(): ActivityInterfaceFor<BuildActivities> {
    return patched(FAST_TRANSITIONS) ? local : short;
  }

  /**
   * A start's configuration and scale in one local activity, when the configuration is not held
   * yet and the kubefiles have no start hook; false when the start takes the usual path.
   */
  private async scaleUpResolving(): Promise<boolean> {
    if (this.config || this.quick !== local || !patched(START_RESOLVES_CONFIG)) return false;
    const outcome = await local.resolveAndScaleUp.executeWithOptions(
      { summary: 'resolve the configuration and scale to 1' },
      [this.ref, this.shown('starting')],
    );
    this.hold(outcome.config);
    if (!('lastScaled' in outcome)) return false;
    this.state.lastScaled = outcome.lastScaled ?? null;
    return true;
  }

  private async configuration(): Promise<ResolvedBuild> {
    return this.hold(this.config ?? (await this.quick.resolveBuildConfig(this.ref)));
  }

  /** Keeps the build's configuration, and the deploy link it gives. */
  private hold(config: ResolvedBuild): ResolvedBuild {
    this.config = config;
    this.state.deployLink = config.deployLink;
    return config;
  }

  private shouldContinueAsNew(): boolean {
    const info = workflowInfo();
    const limit = this.input.maxHistoryEvents;
    return info.continueAsNewSuggested || (limit !== undefined && info.historyLength > limit);
  }

  async run(): Promise<BuildState> {
    try {
      if (!this.input.state) await this.deploy();
      else if (this.input.trigger.kind === 'adopted') await this.adopt();
    } catch (error) {
      await this.failed(error, 'build');
    }
    for (;;) {
      const action = this.actions.shift();
      if (action) {
        try {
          if (await this.perform(action)) break;
        } catch (error) {
          await this.failed(error, 'build');
        } finally {
          action.done = true;
        }
        continue;
      }
      if (['todo', 'building', 'initializing'].includes(this.state.status)) {
        try {
          await this.initialize();
        } catch (error) {
          await this.failed(error, 'init-log');
        }
        continue;
      }
      if (this.shouldContinueAsNew()) {
        await condition(allHandlersFinished);
        await this.reporting;
        // Asked for meanwhile (an undeploy while the last commit status went out): done here,
        // never carried over as a status without its action.
        if (this.actions.length === 0 && allHandlersFinished()) {
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
    await this.reporting;
    return this.state;
  }

  /**
   * A build never fails its workflow: an error no retry can fix (invalid kubefiles, a missing
   * secret, a repo gone from the repos file, a refused manifest) becomes status `failed` with
   * its root cause, mirrored and reported, and the build keeps serving reset and undeploy.
   */
  private async failed(error: unknown, link: 'build' | 'init-log'): Promise<void> {
    if (isCancellation(error)) throw error;
    const reason = failureReason(error);
    log.error('build failed', { build: this.state.name, reason });
    this.state.failureReason = reason;
    this.state.initStatus = 'failed';
    await this.mirror({ status: 'failed', initStatus: 'failed', failureReason: reason });
    this.setStatus('failed');
    await this.report('failure', reason.slice(0, 120), link);
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
    // A Deployment left by the Python runboat has no status label: without one, the watcher
    // cannot tell a scale by hand from the workflow's own.
    await this.mirror({ status: this.state.status });
    if (this.state.status === 'undeploying') this.actions.push({ kind: 'undeploy', done: false });
    if (this.state.status === 'starting') await this.awaitReady();
  }

  private async deploy(): Promise<void> {
    this.upsertCommitAttributes();
    const config = await this.configuration();
    await this.quick.deploy.executeWithOptions({ summary: 'apply the deployment kubefiles' }, [
      this.ref,
      config,
    ]);
    this.setStatus('todo');
    await this.notifyFleet();
    if (this.input.cancelSuperseded) await this.supersedeQueued();
    await this.report('pending', 'queued for initialization', 'build');
  }

  /** Asks the older builds of this branch or PR that still wait for init to go. */
  private async supersedeQueued(): Promise<void> {
    for (const name of await this.quick.queuedSiblings(this.ref)) {
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
      const fleet = getExternalWorkflowHandle(this.input.fleetWorkflowId);
      if (patched(FLEET_TOLD_WHAT)) {
        await fleet.signal(fleetChangedSignal, {
          build: this.state.name,
          status: this.state.status,
          lastScaled: this.state.lastScaled ?? '',
        });
      } else await fleet.signal(fleetChangedSignal);
    } catch (error) {
      log.warn('fleet not told', { build: this.state.name, error: String(error) });
    }
  }

  /**
   * Reports a commit status. With FAST_TRANSITIONS it returns at once: the statuses go out one
   * after the other, in the order asked, while the build goes on.
   */
  private async report(
    state: 'pending' | 'success' | 'failure',
    description: string,
    link: 'live' | 'build' | 'init-log' | 'build-log',
  ): Promise<void> {
    if (!patched(FAST_TRANSITIONS)) return this.postStatus(state, description, link);
    this.reporting = this.reporting
      .then(() => this.postStatus(state, description, link))
      .catch(() => undefined);
  }

  private async postStatus(
    state: 'pending' | 'success' | 'failure',
    description: string,
    link: 'live' | 'build' | 'init-log' | 'build-log',
  ): Promise<void> {
    try {
      await statuses.postCommitStatus(this.ref, state, description, link);
    } catch (error) {
      if (isCancellation(error)) throw error;
      log.warn('commit status not reported', { build: this.state.name, error: String(error) });
    }
  }

  /**
   * Runs the init Job; a reset or undeploy meanwhile cancels it, waits until the activity has
   * deleted its Job, and kills any Job left.
   */
  private async initialize(): Promise<void> {
    // The init activity reports `initializing` itself: the statuses asked before it go first, or
    // GitHub would see them out of order (and two writers would each create a check run).
    await this.reporting;
    const config = await this.configuration();
    // An init under way (adopted) already has its image.
    if (config.imageBuild && this.state.status !== 'initializing') {
      if (!(await this.buildImage(config))) return;
    }
    const limited = patched(GLOBAL_INIT_LIMIT);
    if (limited && !(await this.awaitInitSlot())) return;
    let released: Promise<void> | undefined;
    try {
      const generation = ++this.state.initGeneration;
      const outcome = await this.unlessInterrupted('initialize', () =>
        this.init.initialize.executeWithOptions(
          { summary: `init Job ${this.state.name}-init-${generation}` },
          [this.ref, config, generation],
        ),
      );
      if (outcome === undefined) return;
      if (limited) {
        if (this.slotGivenBackByInit(outcome)) released = Promise.resolve();
        // The Job has ended: the next queued init may start while this outcome is mirrored.
        else if (patched(FAST_TRANSITIONS)) released = this.releaseInitSlot();
      }
      if ('error' in outcome) {
        await this.initEnded(false, failureReason(outcome.error));
        return;
      }
      await this.initEnded(outcome.result.succeeded, outcome.result.reason);
    } finally {
      if (limited) await (released ?? this.releaseInitSlot());
    }
  }

  /**
   * Runs a Job's activity (the init, the image build) to its end, unless a reset or an undeploy
   * comes first: then it cancels the activity, waits until it has deleted its Job, kills any Job
   * of that kind left, and answers undefined.
   */
  private async unlessInterrupted<T>(
    kind: JobKind,
    start: () => Promise<T>,
  ): Promise<{ result: T } | { error: unknown } | undefined> {
    const scope = new CancellationScope();
    const running = scope.run(start);
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
      await short.killJobs(this.state.name, kind);
    }
    return outcome;
  }

  /**
   * Waits for a slot of the global init limit, unless a reset or an undeploy comes first (then
   * the request is withdrawn). An init adopted while its Job runs takes its slot at once. True
   * once granted.
   */
  private async awaitInitSlot(): Promise<boolean> {
    const ticket = this.state.initGeneration + 1;
    const adopted = this.state.status === 'initializing';
    await local.requestInitSlot(this.state.name, ticket, adopted);
    await condition(() => this.grantedTicket === ticket || this.pendingOf('reset', 'undeploy'));
    if (this.grantedTicket === ticket) return true;
    await this.releaseInitSlot();
    return false;
  }

  /**
   * Whether the init activity gave the slot back itself and Temporal took it (its outcome says
   * so): then a release from here would be one more signal and workflow task of the init slots
   * workflow for nothing. A failed activity, or an outcome without the fact (a worker from
   * before it), leaves the release to this workflow.
   */
  private slotGivenBackByInit(outcome: { result: InitOutcome } | { error: unknown }): boolean {
    return (
      'result' in outcome && outcome.result.slotReleased === true && patched(INIT_RELEASES_SLOT)
    );
  }

  /** Gives the init slot back (or withdraws the request); the slots may be gone: no matter. */
  private async releaseInitSlot(): Promise<void> {
    const id = initSlotsWorkflowId(this.input.initTaskQueue ?? defaultTaskQueues.init);
    await CancellationScope.nonCancellable(async () => {
      try {
        await getExternalWorkflowHandle(id).signal(initSlotReleaseSignal, this.state.name);
      } catch (error) {
        log.warn('init slot not released', { build: this.state.name, error: String(error) });
      }
    });
  }

  /**
   * Builds the build's image before its init (repo entries with `imageBuild`): `building` until
   * the build Job ends. A reset or undeploy meanwhile cancels it, waits until the activity has
   * deleted its Job, and kills any build Job left. True when the init may run.
   */
  private async buildImage(config: ResolvedBuild): Promise<boolean> {
    const generation = (this.state.buildGeneration ?? 0) + 1;
    this.state.buildGeneration = generation;
    await this.mirror({ status: 'building', imageStatus: 'building' });
    this.setStatus('building');
    await this.report('pending', 'building image', 'build');
    const outcome = await this.unlessInterrupted('build', () =>
      this.imageBuilder.buildImage.executeWithOptions(
        { summary: `build Job ${this.state.name}-build-${generation}` },
        [this.ref, config, generation],
      ),
    );
    if (outcome === undefined) return false;
    if ('error' in outcome || !outcome.result.succeeded) {
      const reason =
        'error' in outcome
          ? failureReason(outcome.error)
          : `${IMAGE_BUILD_FAILED}: build Job ${outcome.result.jobName ?? '?'} failed: ${outcome.result.reason ?? 'unknown'}`;
      log.error('image build failed', { build: this.state.name, reason });
      this.state.initStatus = 'failed';
      this.state.failureReason = reason;
      await this.quick.mirror(this.state.name, {
        status: this.shown('failed'),
        initStatus: 'failed',
        imageStatus: 'failed',
        failureReason: reason,
      });
      this.setStatus('failed');
      await this.report('failure', reason.slice(0, 120), 'build-log');
      return false;
    }
    log.info('image ready', { build: this.state.name, image: outcome.result.ref });
    await local.mirror(this.state.name, { status: this.shown('todo'), imageStatus: 'built' });
    this.setStatus('todo');
    return true;
  }

  private async initEnded(succeeded: boolean, reason: string | null): Promise<void> {
    this.state.initStatus = succeeded ? 'succeeded' : 'failed';
    if (succeeded) {
      this.state.failureReason = null;
      await local.mirror(this.state.name, {
        status: this.shown('stopped'),
        initStatus: 'succeeded',
        failureReason: '',
      });
      this.setStatus('stopped');
      await this.report('success', 'ready: start it from its page', 'live');
    } else {
      const failureReason = reason ?? 'init failed';
      this.state.failureReason = failureReason;
      // Local: no update is taken between the mirror and the state (see `quick`).
      await this.quick.mirror(this.state.name, {
        status: this.shown('failed'),
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
        if (!(await this.scaleUpResolving())) {
          const config = await this.configuration();
          if (config.hooks?.start !== false) await short.applyHook(this.ref, config, 'start');
          this.state.lastScaled = await local.scale.executeWithOptions({ summary: 'scale to 1' }, [
            this.state.name,
            1,
            this.shown('starting'),
          ]);
        }
        this.setStatus('starting');
        done();
        await this.notifyFleet();
        await this.awaitReady();
        return false;
      }
      case 'stop': {
        this.state.lastScaled = await local.scale.executeWithOptions({ summary: 'scale to 0' }, [
          this.state.name,
          0,
          this.shown('stopped'),
        ]);
        const config = await this.configuration();
        if (config.hooks?.stop !== false) await short.applyHook(this.ref, config, 'stop');
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
    const ready = scope.run(() =>
      waiting.awaitReady.executeWithOptions({ summary: 'wait for a ready pod' }, [this.state.name]),
    );
    const outcome = await Promise.race([
      ready,
      condition(() => this.actions.length > 0).then(() => 'interrupted' as const),
    ]);
    if (outcome === 'interrupted') {
      scope.cancel();
      await ready.catch(() => undefined);
    } else if (outcome) {
      await local.mirror(this.state.name, { status: this.shown('started') });
      this.setStatus('started');
    }
  }

  /** Runs the init again from scratch, with the configuration as it is now. */
  private async reset(): Promise<void> {
    await short.killJobs(this.state.name, 'initialize');
    const previous = this.config;
    this.config = undefined;
    let config: ResolvedBuild;
    try {
      config = await this.configuration();
    } catch (error) {
      // The repo left the repos file: the build keeps what its undeploy needs.
      this.config = previous;
      throw error;
    }
    // Re-applying the deployment mode sets replicas 0 and init-status todo again.
    await short.deploy.executeWithOptions({ summary: 'apply the deployment kubefiles again' }, [
      this.ref,
      config,
    ]);
    await this.quick.mirror(this.state.name, {
      status: 'todo',
      failureReason: '',
      cleanupStatus: '',
    });
    this.state.initStatus = 'todo';
    this.state.failureReason = null;
    this.setStatus('todo');
    await this.report('pending', 'queued for initialization', 'build');
  }

  /**
   * Stops, drops the database through the cleanup Job (a fresh Job per attempt, with backoff),
   * deletes everything. What keeps failing ends `cleanup-failed` with its root cause; a later
   * undeploy tries again. True once the build is gone.
   */
  private async undeploy(): Promise<boolean> {
    this.setStatus('undeploying');
    try {
      await short.mirror(this.state.name, { status: 'undeploying', cleanupStatus: '' });
      await short.killJobs(this.state.name, 'initialize');
      await short.scale(this.state.name, 0, 'undeploying');
      // The cleanup activity reports the build undeployed: after every status asked before.
      await this.reporting;
      await this.cleanup();
      await waiting.deleteBuildObjects.executeWithOptions(
        { summary: "delete the build's objects, then its finalizer" },
        [this.state.name],
      );
      return true;
    } catch (error) {
      if (isCancellation(error)) throw error;
      const reason = failureReason(error);
      this.state.failureReason = reason;
      log.error('cleanup failed', { build: this.state.name, reason });
      await this.mirror({
        status: 'cleanup-failed',
        cleanupStatus: 'failed',
        failureReason: reason,
      });
      this.setStatus('cleanup-failed');
      return false;
    }
  }

  private async cleanup(): Promise<void> {
    const attempts = this.input.cleanupAttempts ?? 4;
    let delay = (this.input.cleanupRetrySeconds ?? 5) * 1000;
    for (let attempt = 1; ; attempt++) {
      try {
        const generation = ++this.state.cleanupGeneration;
        await cleanupActivities.cleanup.executeWithOptions(
          { summary: `cleanup Job ${this.state.name}-cleanup-${generation}` },
          [this.ref, this.config ?? null, generation],
        );
        return;
      } catch (error) {
        if (isCancellation(error) || attempt >= attempts) throw error;
        log.warn('cleanup attempt failed', {
          build: this.state.name,
          attempt,
          reason: failureReason(error),
        });
        await sleep(delay);
        delay *= 2;
      }
    }
  }
}

/** The workflow of one build; its id is the build name. */
export async function buildWorkflow(input: BuildWorkflowInput): Promise<BuildState> {
  const build = new Build(input);
  build.register();
  return build.run();
}
