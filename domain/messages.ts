/**
 * The messages of a build workflow, shared by the workflow and its callers (API, watcher, tests):
 * its input, the updates that change it, the query that reads it and the drift signal.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { BuildStatus, CommitInfo, InitStatus, ResolvedBuild } from './build.js';
import type { FleetChange } from './fleet.js';

/** Why a build was asked for. */
export interface BuildTrigger {
  kind: 'webhook' | 'api' | 'sticky' | 'adopted' | 'poll';
  /** GitHub delivery id, API request id… */
  id?: string;
}

/** What the workflow knows of its build; the answer of every update and of the status query. */
export interface BuildState {
  name: string;
  slug: string;
  commit: CommitInfo;
  status: BuildStatus;
  initStatus: InitStatus;
  /** Init attempts so far; names the init Job (`<name>-init-<n>`). */
  initGeneration: number;
  cleanupGeneration: number;
  /** Image builds so far (entries with `imageBuild`); names the build Job (`<name>-build-<n>`). */
  buildGeneration?: number;
  /** Why the last image build, init or cleanup failed. */
  failureReason: string | null;
  lastScaled: string | null;
  deployLink: string;
}

/** Input of `buildWorkflow`; `state` is carried over by continue-as-new and adoption. */
export interface BuildWorkflowInput {
  commit: CommitInfo;
  trigger: BuildTrigger;
  state?: BuildState;
  /** The resolved configuration, carried over by continue-as-new. */
  config?: ResolvedBuild | undefined;
  /** Task queue of the init activity (default `runboat-init`). */
  initTaskQueue?: string;
  /** Task queue of the image build activity (default `runboat-image-build`). */
  imageBuildTaskQueue?: string;
  /** The fleet workflow to tell when the build is deployed or started (none: no limits). */
  fleetWorkflowId?: string;
  /** Once deployed, undeploy older builds of the same branch or PR still queued for init. */
  cancelSuperseded?: boolean;
  /** Continue-as-new once history has this many events (default: when Temporal suggests it). */
  maxHistoryEvents?: number;
  /** Cleanup Jobs run for one undeploy before the build shows cleanup-failed (default 4). */
  cleanupAttempts?: number;
  /** Seconds before the second cleanup attempt, doubled before each further one (default 5). */
  cleanupRetrySeconds?: number;
}

/** Scale the build to 1 replica. Valid from stopped, stopping, starting, started. */
export const startUpdate = defineUpdate<BuildState>('start');
/** Scale the build to 0 replicas. Valid from started, starting, stopping, stopped. */
export const stopUpdate = defineUpdate<BuildState>('stop');
/** Run the init again from scratch (runboat's redeploy). Valid unless undeploying. */
export const resetUpdate = defineUpdate<BuildState>('reset');
/** Clean up and delete the build. Valid from any state; again after a failed cleanup. */
export const undeployUpdate = defineUpdate<BuildState>('undeploy');
/** The build's state as the workflow knows it. */
export const stateQuery = defineQuery<BuildState>('state');

/** What the watcher saw change in Kubernetes behind the workflow's back. */
export interface DriftEvent {
  kind: 'deployment-deleting' | 'deployment-gone' | 'scaled' | 'init-job-gone';
  /** For `scaled`: the replicas seen. */
  replicas?: number;
}

/** Kubernetes drifted from what the workflow applied. */
export const driftSignal = defineSignal<[DriftEvent]>('drift');

/** The `type` of the failure an update fails with when its transition is not allowed (HTTP 409). */
export const INVALID_TRANSITION = 'InvalidTransition';

/**
 * The statuses from which the workflow takes each update (an undeploy: from any). The API asks a
 * refused start or stop again while the build it lists is in one of these (api/commands.ts).
 */
export const allowedFrom: Record<'start' | 'stop' | 'reset', readonly BuildStatus[]> = {
  start: ['stopped', 'stopping', 'starting', 'started'],
  stop: ['stopped', 'stopping', 'starting', 'started'],
  reset: [
    'todo',
    'building',
    'initializing',
    'failed',
    'stopped',
    'stopping',
    'starting',
    'started',
  ],
};

/** Sent by the init activity when it begins: the build is initializing from now on. */
export const initStartedSignal = defineSignal('initStarted');

/** Default task queues (settings may rename them). */
export const defaultTaskQueues = {
  builds: 'runboat-builds',
  init: 'runboat-init',
  imageBuild: 'runboat-image-build',
} as const;

/** The fleet's limits, sent to it at start and whenever a worker starts with other settings. */
export interface FleetLimits {
  maxStarted: number;
  maxDeployed: number;
}

/** Input of `fleetWorkflow`. */
export interface FleetWorkflowInput {
  limits: FleetLimits;
  /** Seconds between two recounts when nothing signals (default 60). */
  recountSeconds?: number;
  /** Seconds between two checks that every sticky branch head has a build (default 300). */
  stickySeconds?: number;
  /** What the previous run still counted, handed over by continue-as-new. */
  carried?: FleetCarried;
  /**
   * Continue-as-new once the history has more events than this (default: past
   * `SINGLETON_HISTORY_EVENTS`, or when Temporal suggests it; tests set it low).
   */
  maxHistoryEvents?: number;
}

/**
 * The fleet's memory across continue-as-new (times are workflow times): the evictions asked for
 * that the cache did not show yet, and the changes builds told that it did not show yet. Without
 * them the next run would ask again, or miss a start beyond the limit until the next change.
 */
export interface FleetCarried {
  inFlight: { build: string; kind: 'stop' | 'undeploy'; at: number }[];
  told: { change: FleetChange; at: number }[];
}

/**
 * A build was deployed or started: the fleet recounts (debounced). The build says what changed,
 * so that the fleet counts it even before its watch shows it (runs from before said nothing).
 */
export const fleetChangedSignal = defineSignal<[FleetChange?]>('fleetChanged');
/** New limits for the fleet. */
export const fleetLimitsSignal = defineSignal<[FleetLimits]>('fleetLimits');
/**
 * Asks a build to make room: `stop` it or `undeploy` it (the fleet), or `supersede` it (a newer
 * commit of its branch or PR came: it goes if its init has not started yet).
 */
export const evictSignal = defineSignal<['stop' | 'undeploy' | 'supersede']>('evict');

/** Input of `initSlotsWorkflow`: the global init limit, and its state across continue-as-new. */
export interface InitSlotsInput {
  /** Init Jobs at most, across every init worker (`RUNBOAT_MAX_INITIALIZING`). */
  limit: number;
  /** Builds holding a slot. */
  holders?: InitSlotTicket[];
  /** Builds waiting for a slot, first come first served. */
  waiting?: InitSlotTicket[];
  /** Seconds between two checks that the holders' workflows still run (default 60). */
  checkSeconds?: number;
  /**
   * Continue-as-new once history has more events than this (default: `SINGLETON_HISTORY_EVENTS`
   * of domain/fleet.ts, or sooner when Temporal suggests it; the worker leaves it unset, tests
   * set it low).
   */
  maxHistoryEvents?: number;
}

/**
 * One request for a slot: the build and the number of its request, so that a grant that crossed
 * a release on the way is not taken for the grant of a later request.
 */
export interface InitSlotTicket {
  build: string;
  ticket: number;
}

/** What the init slots hold now. */
export interface InitSlotsState {
  limit: number;
  holders: string[];
  waiting: string[];
}

/**
 * A build asks for an init slot; `force` takes one at once, above the limit if need be (an init
 * adopted while its Job already runs).
 */
export const initSlotRequestSignal =
  defineSignal<[InitSlotTicket & { force?: boolean }]>('initSlotRequest');
/** A build gives its slot back (its init ended, or it stopped waiting). */
export const initSlotReleaseSignal = defineSignal<[string]>('initSlotRelease');
/** A new global init limit, from a worker that starts with other settings. */
export const initSlotsLimitSignal = defineSignal<[number]>('initSlotsLimit');
/** The slots' state: limit, holders, waiting. */
export const initSlotsQuery = defineQuery<InitSlotsState>('initSlots');
/** Sent to a build workflow: its init may run now (the ticket of the request granted). */
export const initSlotGrantedSignal = defineSignal<[number]>('initSlotGranted');

/** Id of the init slots workflow of an init task queue (one global init limit per queue). */
export function initSlotsWorkflowId(initTaskQueue: string): string {
  return `runboat-init-slots-${initTaskQueue}`;
}

/** Id of the fleet workflow of a builds task queue (one fleet per deployment of runboat). */
export function fleetWorkflowId(buildsTaskQueue: string): string {
  return `runboat-fleet-${buildsTaskQueue}`;
}
