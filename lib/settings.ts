/**
 * The settings of every process, validated at start-up: `RUNBOAT_*` environment variables plus the
 * repos file (YAML). A wrong value stops the process with one message naming the field. Secrets
 * come only from the environment (or files it names) and are never logged.
 * docs/configuration.md is generated from this schema and its comments: `npm run docs:config`.
 */
import { readFileSync, statSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/** A path inside the checkout: relative, no `..`. */
const checkoutPath = z
  .string()
  .min(1)
  .regex(/^(?!\/)(?!(.*\/)?\.\.(\/|$))[\w./-]+$/, 'a relative path inside the checkout (no "..")');

/** An image built of the commit before its init (docs/kubefiles.md, "Image builds"). */
const imageBuildSchema = z.strictObject({
  /** Registry and path the image is pushed to, e.g. `registry.example.com/previews`. */
  registry: z
    .string()
    .regex(
      /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/,
      'a registry host and path, lower-case, e.g. registry.example.com/previews',
    ),
  /** Name of the image under the registry; default the repo as `owner-name`, lower-case. */
  name: z
    .string()
    .regex(/^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/, 'an image name')
    .optional(),
  /** The Dockerfile, a path of the checkout. */
  dockerfile: checkoutPath.default('Dockerfile'),
  /** The build context, a directory of the checkout. */
  context: checkoutPath.default('.'),
  /**
   * A Secret of type `kubernetes.io/dockerconfigjson` in the builds' namespace: the builder's
   * credentials for the registry (mounted as its Docker config).
   */
  pushSecret: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'a Secret name')
    .optional(),
  /** Image of the builder: Kaniko's executor, or one that takes its arguments. */
  builderImage: z.string().min(1).default('gcr.io/kaniko-project/executor:v1.23.2'),
});

/** How the scripts of the default kubefiles fetch and install the build's commit. */
const buildSourceSchema = z.strictObject({
  /** `git` (a shallow fetch of the commit), `tarball` (GitHub's archive) or `auto`. */
  fetch: z.enum(['auto', 'git', 'tarball']).default('auto'),
  /**
   * `addons-path`: the checkout's addons go on the addons path and its requirements.txt is
   * installed; `pip`: its addons are pip-installed; `none`: addons path only.
   */
  install: z.enum(['addons-path', 'pip', 'none']).default('addons-path'),
  /** Addons the database is initialized with; none listed: every addon of the checkout. */
  addons: z.array(z.string().regex(/^\w+$/, 'an addon name')).default([]),
  /** Clone URL; default `https://github.com/<repo>.git`. */
  url: z.string().min(1).optional(),
});

/** One build configuration of a repo. */
const buildConfigSchema = z.strictObject({
  /** Container image `name:tag`; without a tag, `latest`. Not needed with `imageBuild`. */
  image: z.string().min(1).optional(),
  /** Environment variables of the build (not secret: they travel through workflow history). */
  env: z.record(z.string(), z.string()).default({}),
  /** Names of environment variables of the worker whose values become the build's secret env. */
  secretEnv: z.record(z.string(), z.string()).default({}),
  /**
   * Variables of `secretEnv` that pull requests from untrusted forks get all the same: what the app
   * cannot run without (the database password), which a build's own code can read anyway.
   */
  secretEnvForForks: z.array(z.string()).default([]),
  /** Free-form values the kubefiles read (`templateVars.<name>`). */
  templateVars: z.record(z.string(), z.unknown()).default({}),
  /** Directory of the kubefiles; relative paths are relative to the repos file. */
  kubefiles: z.string().optional(),
  /** How the default kubefiles put the build's commit into the build (kubefiles/README.md). */
  source: buildSourceSchema.prefault({}),
  /**
   * Build an image of the commit before the init (a build Job, its own task queue), and run the
   * init Job and the Deployment on it: `<registry>/<name>:<sha>` (docs/kubefiles.md).
   */
  imageBuild: imageBuildSchema.optional(),
});

const regex = z.string().refine(
  (value) => {
    try {
      new RegExp(value);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'not a valid regular expression' },
);

/** The Secret holding a token that may clone a private repo. */
const cloneTokenSchema = z.strictObject({
  /** Name of the Secret. */
  secret: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'a Secret name'),
  /** Key of the token in the Secret. */
  key: z
    .string()
    .regex(/^[-._a-zA-Z0-9]+$/, 'a Secret key')
    .default('token'),
});

const repoConfigSchema = z.strictObject({
  /** Regular expression matched against the whole `owner/name`, case-insensitively. */
  repo: regex,
  /** Regular expression matched against the whole target branch. */
  branch: regex,
  /** The newest build of each matching branch is never evicted, and always exists. */
  sticky: z.boolean().default(false),
  /**
   * Pull requests from forks get the build's `secretEnv` and the clone token only when true
   * (docs/kubefiles.md, "Fork safety").
   */
  trustForks: z.boolean().default(false),
  /**
   * A Secret of the builds' namespace holding a token that may clone the repo (private repos):
   * it reaches only the init Job's environment, as a reference, never through runboat itself.
   */
  cloneToken: cloneTokenSchema.optional(),
  /** Build configurations; the first is used. */
  builds: z
    .array(
      buildConfigSchema.refine((build) => build.image ?? build.imageBuild, {
        message: 'required unless imageBuild is set',
        path: ['image'],
      }),
    )
    .min(1),
});

/** The repos file: which repos and branches get builds, and how. */
export const reposFileSchema = z.array(repoConfigSchema);

/** One entry of the repos file. */
export type RepoConfig = z.infer<typeof repoConfigSchema>;
/** One build configuration of a repo. */
export type BuildConfig = z.infer<typeof buildConfigSchema>;
/** The image build of a build configuration. */
export type ImageBuildConfig = z.infer<typeof imageBuildSchema>;

const positiveInt = z.coerce.number().int().positive();
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => ['true', '1', 'yes'].includes(value));

const envSchema = z.object({
  /** Temporal frontend, `host:port`. */
  RUNBOAT_TEMPORAL_ADDRESS: z.string().default('127.0.0.1:7233'),
  /** Temporal namespace of the build and fleet workflows. */
  RUNBOAT_TEMPORAL_NAMESPACE: z.string().default('default'),
  /**
   * Base URL of the Temporal UI (e.g. `http://temporal-ui:8080`): each build page links its
   * workflow there (`<url>/namespaces/<namespace>/workflows/<build>`); unset, no link.
   */
  RUNBOAT_TEMPORAL_UI_URL: z.url().optional(),
  /** Connect to Temporal over TLS (implied by any of the TLS files or an API key). */
  RUNBOAT_TEMPORAL_TLS: bool.default(false),
  /** PEM file of the CA that signed Temporal's certificate; default: the system's CAs. */
  RUNBOAT_TEMPORAL_TLS_CA_FILE: z.string().min(1).optional(),
  /** PEM file of the client certificate (mTLS), with RUNBOAT_TEMPORAL_TLS_KEY_FILE. */
  RUNBOAT_TEMPORAL_TLS_CERT_FILE: z.string().min(1).optional(),
  /** PEM file of the client certificate's private key (mTLS). */
  RUNBOAT_TEMPORAL_TLS_KEY_FILE: z.string().min(1).optional(),
  /** Name checked against Temporal's certificate (SNI), when not the address' host. */
  RUNBOAT_TEMPORAL_TLS_SERVER_NAME: z.string().min(1).optional(),
  /** API key sent to Temporal (e.g. Temporal Cloud); turns TLS on. */
  RUNBOAT_TEMPORAL_API_KEY: z.string().min(1).optional(),
  /** File holding the API key (instead of RUNBOAT_TEMPORAL_API_KEY). */
  RUNBOAT_TEMPORAL_API_KEY_FILE: z.string().min(1).optional(),
  /** Task queue of the build workflows and their short activities. */
  RUNBOAT_BUILDS_TASK_QUEUE: z.string().default('runboat-builds'),
  /** Task queue of the long init activity; its slots are the init concurrency. */
  RUNBOAT_INIT_TASK_QUEUE: z.string().default('runboat-init'),
  /** Task queue of the image build activity; its slots are the image build concurrency. */
  RUNBOAT_IMAGE_BUILD_TASK_QUEUE: z.string().default('runboat-image-build'),
  /**
   * Roles this worker process plays: `builds`, `init`, `image-build` (comma-separated); the
   * default plays all three (docs/operations.md, "Worker roles").
   */
  RUNBOAT_WORKER_ROLES: z
    .string()
    .default('builds,init,image-build')
    .transform((value) => value.split(',').map((role) => role.trim()))
    .pipe(z.array(z.enum(['builds', 'init', 'image-build'])).min(1)),
  /**
   * Init Jobs running at once in the whole system, whatever the number of init workers (the init
   * slots workflow); also each init worker's own activity slots.
   */
  RUNBOAT_MAX_INITIALIZING: positiveInt.default(2),
  /** Image build slots of this worker: the number of build Jobs it runs at once. */
  RUNBOAT_MAX_IMAGE_BUILDS: positiveInt.default(1),
  /**
   * Workflows a builds worker keeps in memory between their tasks (Temporal's sticky cache); the
   * others replay their history at their next task. Bounds the worker's memory, whatever the
   * number of builds.
   */
  RUNBOAT_MAX_CACHED_WORKFLOWS: positiveInt.min(2).default(250),
  /**
   * Workflow task polls a builds worker keeps open, half on the builds task queue (the first task
   * of every new workflow: webhooks, adoption) and half on its own sticky queue (workflows in its
   * cache). Temporal's default of 10 polls, 2 of them on the task queue, adopted builds at about
   * 22/s after Temporal lost its database (docs/operations.md, "Memory").
   */
  RUNBOAT_WORKFLOW_TASK_POLLS: positiveInt.min(2).max(40).default(20),
  /** Started builds at most; one more stops the least recently scaled started build. */
  RUNBOAT_MAX_STARTED: positiveInt.default(6),
  /** Deployed builds at most; beyond, the oldest stopped or failed ones are undeployed. */
  RUNBOAT_MAX_DEPLOYED: positiveInt.default(50),
  /** Kubernetes namespace of the builds. */
  RUNBOAT_BUILD_NAMESPACE: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
    .default('runboat-builds'),
  /** Builds are served at `https://<slug>.<domain>`. */
  RUNBOAT_BUILD_DOMAIN: z.string().min(1).default('runboat.localhost'),
  /** kubeconfig file; in-cluster or `~/.kube/config` when unset. */
  RUNBOAT_KUBECONFIG: z.string().optional(),
  /** Context of the kubeconfig to use; its current context when unset. */
  RUNBOAT_KUBE_CONTEXT: z.string().optional(),
  /** The repos file (YAML, below): which repos and branches get builds; none: no builds. */
  RUNBOAT_REPOS_FILE: z.string().optional(),
  /** GitHub REST API base; setting it (or a token) turns commit statuses on. */
  RUNBOAT_GITHUB_API_URL: z.url().default('https://api.github.com'),
  /** GitHub token: commit statuses, branch heads of sticky branches and of API triggers. */
  RUNBOAT_GITHUB_TOKEN: z.string().optional(),
  /** GitHub App id: authenticate as the App (with RUNBOAT_GITHUB_APP_PRIVATE_KEY_FILE), not a token. */
  RUNBOAT_GITHUB_APP_ID: z
    .string()
    .regex(/^[0-9]+$/, 'must be the numeric App id')
    .optional(),
  /** File of the GitHub App's private key (PEM), as GitHub generated it. */
  RUNBOAT_GITHUB_APP_PRIVATE_KEY_FILE: z.string().min(1).optional(),
  /**
   * Seconds between two polls of each configured repo's branches and open pull requests, which
   * build new heads and undeploy deleted branches and closed pull requests without any webhook;
   * 0: no polling (docs/operations.md, "Polling").
   */
  RUNBOAT_GITHUB_POLL_SECONDS: z.coerce.number().int().min(0).default(0),
  /**
   * With polling off (webhooks as the trigger): seconds between two reconciliations (the same
   * poll, slower) that catch deliveries GitHub could not make; 0: none.
   */
  RUNBOAT_GITHUB_RECONCILE_SECONDS: z.coerce.number().int().min(0).default(900),
  /**
   * Each build creates a GitHub deployment in a transient environment of its branch or pull
   * request and keeps its status current, so the pull request shows "View deployment"
   * (docs/operations.md, "GitHub").
   */
  RUNBOAT_GITHUB_DEPLOYMENTS: bool.default(false),
  /**
   * GitHub App only: each build keeps a check run whose Start, Stop and Reset buttons act on it
   * (docs/operations.md, "GitHub").
   */
  RUNBOAT_GITHUB_CHECK_RUNS: bool.default(false),
  /**
   * GitHub App only: seconds between two looks at the App's failed webhook deliveries of the
   * last 24 hours, which are asked again (at the worker's start too); 0: none.
   */
  RUNBOAT_GITHUB_REDELIVER_SECONDS: z.coerce.number().int().min(0).default(300),
  /** Public URL of the runboat UI, for the links of commit statuses. */
  RUNBOAT_BASE_URL: z.url().default('http://127.0.0.1:8000'),
  /** Level of the JSON logs (pino) on stdout. */
  RUNBOAT_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  /** Cancel a PR's or branch's builds still queued for init when a newer commit arrives. */
  RUNBOAT_CANCEL_SUPERSEDED: bool.default(false),
  /** Seconds between two adoption rounds (builds found in Kubernetes without a workflow). */
  RUNBOAT_ADOPT_INTERVAL_SECONDS: z.coerce.number().positive().default(30),
  /**
   * Most seconds between two adoption rounds that list every running build workflow; the rounds
   * between them look only at the Deployments new since the previous round and at the workflows
   * closed since then.
   */
  RUNBOAT_ADOPT_LIST_SECONDS: z.coerce.number().positive().default(600),
  /** Seconds between two checks that every sticky branch head has a build. */
  RUNBOAT_STICKY_INTERVAL_SECONDS: z.coerce.number().positive().default(300),
  /** Cleanup Jobs run for one undeploy before the build shows `cleanup-failed`. */
  RUNBOAT_CLEANUP_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(4),
  /** Seconds before the second cleanup attempt; doubled before each further one. */
  RUNBOAT_CLEANUP_RETRY_SECONDS: z.coerce.number().positive().default(5),
  /** Workers announce a Worker Deployment Version and Temporal routes by it (docs/upgrades.md). */
  RUNBOAT_WORKER_VERSIONING: bool.default(false),
  /** Name of the Worker Deployment: one per installation (no `.`). */
  RUNBOAT_DEPLOYMENT_NAME: z
    .string()
    .regex(/^[^.]+$/, 'must not contain "."')
    .default('runboat'),
  /** Build id of this worker's version (e.g. the image tag); default `<version>-<git sha>`. */
  RUNBOAT_BUILD_ID: z.string().min(1).max(255).optional(),
  /** Worker: interface of /healthz, /readyz and /metrics. */
  RUNBOAT_WORKER_METRICS_HOST: z.string().default('0.0.0.0'),
  /** Worker: port of /healthz, /readyz and /metrics; 0 takes a free one (logged). */
  RUNBOAT_WORKER_METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9464),
  /** API: interface it listens on. */
  RUNBOAT_API_HOST: z.string().default('127.0.0.1'),
  /** API: port of the REST API, the UI and the webhook; 0 takes a free one. */
  RUNBOAT_API_PORT: z.coerce.number().int().min(0).max(65535).default(8000),
  /** Seconds the API waits for a build to take a start, stop, reset or undeploy (then 503). */
  RUNBOAT_UPDATE_TIMEOUT_SECONDS: z.coerce.number().positive().default(30),
  /**
   * Seconds the API, on SIGTERM, keeps answering the requests in flight before it closes their
   * connections (docs/operations.md, "Shutdown").
   */
  RUNBOAT_SHUTDOWN_GRACE_SECONDS: z.coerce.number().positive().default(20),
  /** Secret of the GitHub webhook; required unless RUNBOAT_WEBHOOK_INSECURE is set. */
  RUNBOAT_WEBHOOK_SECRET: z.string().min(1).optional(),
  /** Development only: accept unsigned webhook deliveries. */
  RUNBOAT_WEBHOOK_INSECURE: bool.default(false),
  /** Webhook deliveries handled at once; one more is answered 503 with `retry-after`. */
  RUNBOAT_WEBHOOK_MAX_CONCURRENT: positiveInt.default(32),
  /** Admin credential: the HTTP Basic user (with RUNBOAT_ADMIN_PASSWORD); or a token, or both. */
  RUNBOAT_ADMIN_USER: z.string().min(1).optional(),
  /** Admin credential: the HTTP Basic password of RUNBOAT_ADMIN_USER. */
  RUNBOAT_ADMIN_PASSWORD: z.string().min(1).optional(),
  /** Admin credential: a bearer token (at least 16 characters). */
  RUNBOAT_ADMIN_TOKEN: z.string().min(16).optional(),
  /** Let anyone start and stop builds (runboat's way, for testers); reset and undeploy stay admin. */
  RUNBOAT_PUBLIC_START_STOP: bool.default(false),
  /**
   * Key that signs the UI's admin sessions (at least 32 characters); the same on every API
   * replica. Unset: a random key per process, so sessions end when the API restarts.
   */
  RUNBOAT_SESSION_SECRET: z.string().min(32).optional(),
  /** Hours an admin session of the UI lasts after its login. */
  RUNBOAT_SESSION_HOURS: z.coerce.number().positive().default(12),
  /** Build event streams (`GET /api/v1/build-events`) open at once, all clients together. */
  RUNBOAT_EVENTS_MAX_STREAMS: z.coerce.number().int().positive().default(1000),
  /** Build event streams open at once from one client address (beyond: 503, `retry-after`). */
  RUNBOAT_EVENTS_MAX_STREAMS_PER_CLIENT: z.coerce.number().int().positive().default(20),
  /** Bytes a build event stream may hold for a client that does not read, before it is dropped. */
  RUNBOAT_EVENTS_MAX_BUFFER_BYTES: z.coerce.number().int().min(1024).default(16777216),
  /** Seconds a build event stream may hold unsent bytes before its client is dropped. */
  RUNBOAT_EVENTS_STALL_SECONDS: z.coerce.number().positive().default(60),
  /** Seconds between two heartbeats (comment lines) of a build event stream. */
  RUNBOAT_EVENTS_HEARTBEAT_SECONDS: z.coerce.number().positive().default(15),
});

/** Validated settings. */
export type Settings = z.infer<typeof envSchema> & { repos: RepoConfig[]; reposDir: string };

/** A configuration that cannot be used; the message names the field. */
export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SettingsError';
  }
}

function describe(error: z.ZodError, where: string): string {
  const issue = error.issues[0];
  if (!issue) return `${where}: invalid`;
  const path = issue.path.map(String).join('.');
  return `${where}${path ? ` ${path}` : ''}: ${issue.message}`;
}

/** Reads and validates a repos file. */
export function loadReposFile(path: string): RepoConfig[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new SettingsError(`RUNBOAT_REPOS_FILE=${path}: ${(error as Error).message}`);
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (error) {
    throw new SettingsError(`${path}: not valid YAML: ${(error as Error).message}`);
  }
  const parsed = reposFileSchema.safeParse(data ?? []);
  if (!parsed.success) throw new SettingsError(describe(parsed.error, path));
  return parsed.data;
}

/** Validates the environment (and the repos file it names). */
export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) throw new SettingsError(describe(parsed.error, 'environment'));
  const { RUNBOAT_ADMIN_USER: user, RUNBOAT_ADMIN_PASSWORD: password } = parsed.data;
  if ((user === undefined) !== (password === undefined)) {
    throw new SettingsError(
      'environment RUNBOAT_ADMIN_USER and RUNBOAT_ADMIN_PASSWORD: set both or neither',
    );
  }
  if (parsed.data.RUNBOAT_GITHUB_CHECK_RUNS && !parsed.data.RUNBOAT_GITHUB_APP_ID) {
    throw new SettingsError(
      'environment RUNBOAT_GITHUB_CHECK_RUNS: check runs with buttons need a GitHub App (RUNBOAT_GITHUB_APP_ID)',
    );
  }
  const reposFile = parsed.data.RUNBOAT_REPOS_FILE;
  const repos = reposFile ? loadReposFile(reposFile) : [];
  const reposDir = reposFile ? reposFile.replace(/\/[^/]*$/, '') || '.' : process.cwd();
  return { ...parsed.data, repos, reposDir };
}

/**
 * The repos file as it is now, for processes that read it at each use (a reset picks up an edit):
 * read again only when the file changed (its mtime, size or inode), and a bad edit keeps the last
 * good configuration, reported once through `onError` (docs/configuration.md).
 */
export function reposFileReader(
  path: string,
  initial: RepoConfig[],
  onError: (message: string) => void,
): () => RepoConfig[] {
  let current = initial;
  let signature: string | undefined;
  const changed = (): boolean => {
    let next: string;
    try {
      const stat = statSync(path);
      next = `${stat.mtimeMs}:${stat.size}:${stat.ino}`;
    } catch (error) {
      next = `missing:${(error as Error).message}`;
    }
    if (next === signature) return false;
    signature = next;
    return true;
  };
  changed();
  return () => {
    if (!changed()) return current;
    try {
      current = loadReposFile(path);
    } catch (error) {
      onError(`${(error as Error).message}; keeping the last good configuration`);
    }
    return current;
  };
}

/** Each entry's patterns, compiled once. */
const compiled = new WeakMap<RepoConfig, { repo: RegExp; branch: RegExp }>();

/**
 * The first repo entry whose patterns match the whole repo and branch, if any. `.` matches any
 * character, line breaks included, so that `.*` means every branch.
 */
export function findRepoConfig(
  repos: readonly RepoConfig[],
  repo: string,
  branch: string,
): RepoConfig | undefined {
  return repos.find((entry) => {
    let patterns = compiled.get(entry);
    if (!patterns) {
      patterns = {
        repo: new RegExp(`^(?:${entry.repo})$`, 'is'),
        branch: new RegExp(`^(?:${entry.branch})$`, 's'),
      };
      compiled.set(entry, patterns);
    }
    return patterns.repo.test(repo) && patterns.branch.test(branch);
  });
}
