/**
 * What a build is: the commit it deploys, its status, and the Kubernetes contract (labels,
 * annotations, finalizer) shared with the Python runboat so that its namespaces can be adopted.
 * The contract and the status rules: docs/architecture.md, "The Kubernetes contract".
 */

/** The commit a build deploys. */
export interface CommitInfo {
  /** `owner/name`, lower-case. */
  repo: string;
  /** The branch pushed to, or the base branch of the pull request. */
  targetBranch: string;
  /** Pull request number; null for a branch build. */
  pr: number | null;
  /** Full 40-character commit SHA. */
  gitCommit: string;
  /**
   * Pull requests: the repo the head commit comes from (`owner/name`, lower-case); a fork when it
   * is not `repo`. Null or absent when unknown: such a pull request is treated as a fork.
   */
  headRepo?: string | null;
  /** The commit's message (its first line, at most 200 characters), when the trigger knew it. */
  message?: string;
  /** The commit's author (a name or a GitHub login), when the trigger knew it. */
  author?: string;
}

/** A pull request whose head is not known to come from the repo itself (docs/kubefiles.md). */
export function isFromFork(commit: CommitInfo): boolean {
  return commit.pr !== null && (commit.headRepo ?? '').toLowerCase() !== commit.repo.toLowerCase();
}

/** Status of a build, derived from its Deployment exactly as runboat does (plus cleanup-failed). */
export type BuildStatus =
  /** Asked for (its workflow exists) but not deployed yet: no worker has taken it so far. */
  | 'queued'
  | 'todo'
  /** Its image is being built (repo entries with `imageBuild`), before the init. */
  | 'building'
  | 'initializing'
  | 'failed'
  | 'stopping'
  | 'stopped'
  | 'starting'
  | 'started'
  | 'undeploying'
  | 'cleanup-failed';

/** Every build status, in lifecycle order. */
export const buildStatuses: readonly BuildStatus[] = [
  'queued',
  'todo',
  'building',
  'initializing',
  'failed',
  'stopping',
  'stopped',
  'starting',
  'started',
  'undeploying',
  'cleanup-failed',
];

/** Value of the `runboat/init-status` annotation. */
export type InitStatus = 'todo' | 'started' | 'succeeded' | 'failed';

/** Label on every object of a build; its value is the build name. */
export const BUILD_LABEL = 'runboat/build';
/** Label on the Deployment mirroring the build status, for `kubectl get deploy -L runboat/status`. */
export const STATUS_LABEL = 'runboat/status';
/** Label on Jobs: what the Job does. */
export const JOB_KIND_LABEL = 'runboat/job-kind';
/** Finalizer on the Deployment: no path may delete a build without its cleanup Job. */
export const CLEANUP_FINALIZER = 'runboat/cleanup';

/** Annotations on the Deployment (names shared with the Python runboat). */
export const annotations = {
  repo: 'runboat/repo',
  targetBranch: 'runboat/target-branch',
  pr: 'runboat/pr',
  gitCommit: 'runboat/git-commit',
  initStatus: 'runboat/init-status',
  lastScaled: 'runboat/last-scaled',
  /** Why the last init or cleanup failed (ours; runboat has no such annotation). */
  failureReason: 'runboat/failure-reason',
  /** `failed` once cleanup gave up (ours). */
  cleanupStatus: 'runboat/cleanup-status',
  /** Pull requests: the repo of the head commit (ours; a fork when it is not the repo). */
  headRepo: 'runboat/head-repo',
  /** Builds with an image build: `building`, `built` or `failed` (ours). */
  imageStatus: 'runboat/image-status',
  /** The commit's message, one line of at most 200 characters ({@link commitNote}; ours). */
  commitMessage: 'runboat/commit-message',
  /** The commit's author, one line of at most 200 characters ({@link commitNote}; ours). */
  commitAuthor: 'runboat/commit-author',
} as const;

/** C0 and C1 controls, DEL, non-characters, and the marks that reorder text on screen. */
const UNSHOWN =
  // eslint-disable-next-line no-control-regex -- control characters are what it finds
  /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff]/g;

/** The longest commit message or author a build keeps. */
export const COMMIT_NOTE_MAX = 200;

/**
 * A commit's message or author as a build keeps it (annotations, cards): its first non-empty line,
 * without control or bidirectional-override characters, spaces collapsed, at most
 * {@link COMMIT_NOTE_MAX} characters (code points; `…` marks a cut). Empty when there is none.
 */
export function commitNote(text: string | null | undefined): string {
  if (typeof text !== 'string') return '';
  const line =
    text
      .split(/\r\n|[\n\r\v\f\u0085\u2028\u2029]/)
      .map((part) => part.replace(UNSHOWN, ' ').replace(/\s+/g, ' ').trim())
      .find((part) => part !== '') ?? '';
  // Lone surrogates are no text: U+FFFD, as a UTF-8 encoder writes them.
  const points = Array.from(
    line
      .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
      .normalize('NFC'),
  );
  if (points.length <= COMMIT_NOTE_MAX) return points.join('');
  return `${points
    .slice(0, COMMIT_NOTE_MAX - 1)
    .join('')
    .trimEnd()}…`;
}

/**
 * The configuration of one build, resolved from the repos file. It travels through workflow
 * history, so it holds no secret: only the names of the worker's environment variables that do.
 */
export interface ResolvedBuild {
  image: { name: string; tag: string };
  env: Record<string, string>;
  /** Build variable name → name of the worker environment variable holding its value. */
  secretEnvFrom: Record<string, string>;
  templateVars: Record<string, unknown>;
  kubefilesDir: string;
  deployLink: string;
  /** Where the scripts fetch the commit from and what they install; absent in older histories. */
  source?: BuildSource;
  /** Whether the kubefiles have `start` and `stop` hooks; absent in older histories (then: ask). */
  hooks?: { start: boolean; stop: boolean };
  /** The image built before the init; absent: the configured image is used as it is. */
  imageBuild?: ResolvedImageBuild;
}

/** How the build's commit reaches the build (kubefiles context `source`, docs/kubefiles.md). */
export interface BuildSource {
  fetch: 'auto' | 'git' | 'tarball';
  install: 'addons-path' | 'pip' | 'none';
  /** Comma-separated addons to initialize; empty: every addon of the checkout. */
  addons: string;
  /** Clone URL. */
  url: string;
  /** GitHub's archive of the commit. */
  tarballUrl: string;
  /** The Secret (name and key) whose token may clone the repo; null: none, or withheld. */
  cloneToken: { secret: string; key: string } | null;
  /** False for a pull request from a fork whose repo entry does not trust forks. */
  trusted: boolean;
}

/** The identity of a build, as the workflow passes it to every activity. */
export interface BuildRef {
  name: string;
  slug: string;
  commit: CommitInfo;
}

/** Kinds of Job a build runs. */
export type JobKind = 'initialize' | 'cleanup' | 'build';

/**
 * The image build of a build (repo entries with `imageBuild`, docs/kubefiles.md): what the build
 * Job builds from the checkout, and where it pushes it.
 */
export interface ResolvedImageBuild {
  /** `<registry>/<name>:<sha>`: what the build pushes, the init Job and the Deployment run. */
  ref: string;
  registry: string;
  name: string;
  /** Path of the Dockerfile in the checkout. */
  dockerfile: string;
  /** Directory of the checkout sent to the builder as its context. */
  context: string;
  /** Secret (type dockerconfigjson) with the registry credentials; null: none. */
  pushSecret: string | null;
  builderImage: string;
}

/** What the Deployment of a build says, as far as the status is concerned. */
export interface DeploymentView {
  deletionTimestamp?: string | Date | undefined;
  replicas: number;
  readyReplicas: number;
  annotations: Record<string, string | undefined>;
  /** The `runboat/status` label: `undeploying` from the moment an undeploy is asked for. */
  statusLabel?: string | undefined;
}

/** Derives the build status from its Deployment (same rules as runboat, plus cleanup-failed). */
export function deriveStatus(view: DeploymentView): BuildStatus {
  if (view.annotations[annotations.cleanupStatus] === 'failed') return 'cleanup-failed';
  // The label is written when the undeploy is asked for, before the Deployment is deleted (the
  // cleanup Job runs first): from then on the build is undeploying, whatever its replicas say.
  if (view.deletionTimestamp || view.statusLabel === 'undeploying') return 'undeploying';
  switch (view.annotations[annotations.initStatus] as InitStatus | undefined) {
    case 'todo':
    case undefined:
      return view.annotations[annotations.imageStatus] === 'building' ? 'building' : 'todo';
    case 'started':
      return 'initializing';
    case 'failed':
      return 'failed';
    case 'succeeded':
      break;
  }
  if (view.replicas === 0) return view.readyReplicas > 0 ? 'stopping' : 'stopped';
  return view.readyReplicas >= view.replicas ? 'started' : 'starting';
}
