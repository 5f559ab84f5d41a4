/**
 * The GitHub REST API as far as the orchestrator needs it: commit statuses, branch heads, open
 * pull requests. Octokit does the HTTP: pagination (Link headers), retries of 5xx and network
 * errors, primary and secondary rate limits (it waits `retry-after` or the reset time), and auth by
 * a token or as a GitHub App (an installation token per repo owner, resolved once and cached). GET
 * answers are kept with their ETag and asked again conditionally, so that an unchanged listing
 * costs one 304 per page and no rate limit (docs/operations.md, "GitHub"). The base URL is a
 * setting, so tests point it at a fake GitHub on loopback.
 */
import { readFileSync } from 'node:fs';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/core';
import { paginateRest } from '@octokit/plugin-paginate-rest';
import { retry } from '@octokit/plugin-retry';
import { throttling, type ThrottlingOptions } from '@octokit/plugin-throttling';
import type { Logger } from './logger.js';

/** State of a commit status. */
export type CommitStatusState = 'pending' | 'success' | 'failure' | 'error';

/** One commit status to post. */
export interface CommitStatus {
  repo: string;
  sha: string;
  state: CommitStatusState;
  description: string;
  targetUrl?: string | undefined;
  /** Defaults to `runboat/build`. */
  context?: string;
}

/** An open pull request's head, as a build of it needs. */
export interface PullRequestHead {
  number: number;
  /** The branch it targets. */
  baseRef: string;
  sha: string;
  /** `owner/name` its head commit comes from, lower-case; null when that fork was deleted. */
  headRepo: string | null;
}

/** A deployment status state GitHub knows. */
export type DeploymentState = 'queued' | 'in_progress' | 'success' | 'failure' | 'inactive';

/** A deployment to create: a build of a commit in its preview environment. */
export interface NewDeployment {
  repo: string;
  sha: string;
  /** The environment: one per branch or pull request. */
  environment: string;
  description: string;
  /** Kept by GitHub with the deployment; `build` finds it again. */
  payload: { build: string };
}

/** A deployment as found again. */
export interface FoundDeployment {
  id: number;
  /** The build that created it (from its payload), if any. */
  build: string | undefined;
}

/** A deployment status to post. */
export interface DeploymentStatus {
  state: DeploymentState;
  description: string;
  environmentUrl?: string | undefined;
  logUrl?: string | undefined;
}

/** A button of a check run: its identifier comes back in a `requested_action` delivery. */
export interface CheckRunAction {
  label: string;
  description: string;
  identifier: string;
}

/** A check run as the orchestrator writes it. */
export interface CheckRunState {
  name: string;
  /** The build, so a `requested_action` delivery names it. */
  externalId: string;
  detailsUrl: string;
  status: 'queued' | 'in_progress' | 'completed';
  conclusion?: 'success' | 'failure' | 'neutral' | undefined;
  title: string;
  summary: string;
  actions: CheckRunAction[];
}

/** One delivery of the GitHub App's webhook, as GitHub lists them. */
export interface HookDelivery {
  id: number;
  guid: string;
  deliveredAt: Date;
  redelivery: boolean;
  /** The HTTP status the receiver answered; 0 when it could not be reached. */
  statusCode: number;
  event: string;
  action: string | null;
}

/** What the orchestrator asks of GitHub. */
export interface GitHubClient {
  /** Whether it acts as a GitHub App (check runs, hook deliveries). */
  readonly isApp: boolean;
  postCommitStatus(status: CommitStatus): Promise<void>;
  /** The head commit SHA of a branch, or undefined when the branch does not exist. */
  branchHead(repo: string, branch: string): Promise<string | undefined>;
  /** Every branch of a repo with its head commit (one request per page, not retried on 5xx). */
  listBranches(repo: string): Promise<{ name: string; sha: string }[]>;
  /** Every open pull request of a repo (one request per page, not retried on 5xx). */
  listOpenPullRequests(repo: string): Promise<PullRequestHead[]>;
  /** The deployments of a commit in an environment, newest first. */
  findDeployments(repo: string, sha: string, environment: string): Promise<FoundDeployment[]>;
  createDeployment(deployment: NewDeployment): Promise<number>;
  postDeploymentStatus(repo: string, id: number, status: DeploymentStatus): Promise<void>;
  /** The check runs of a commit with this name: their ids and external ids. */
  findCheckRuns(
    repo: string,
    sha: string,
    name: string,
  ): Promise<{ id: number; externalId: string | null }[]>;
  createCheckRun(repo: string, sha: string, run: CheckRunState): Promise<number>;
  updateCheckRun(repo: string, id: number, run: CheckRunState): Promise<void>;
  /** The App's installation id for the repo's owner; undefined without an App or installation. */
  installationId(repo: string): Promise<number | undefined>;
  /** The App's hook deliveries newer than `since`, newest first (App only). */
  listHookDeliveries(since: Date): Promise<HookDelivery[]>;
  /** Asks GitHub to deliver one of the App's hook deliveries again (App only). */
  redeliverHookDelivery(id: number): Promise<void>;
}

/** A GitHub answer that was not a success. */
export class GitHubApiError extends Error {
  constructor(
    readonly status: number,
    readonly url: string,
    body: string,
  ) {
    super(`GitHub answered ${status} for ${url}: ${body.slice(0, 200)}`);
    this.name = 'GitHubApiError';
  }
}

/**
 * Whether asking again in a moment may succeed: GitHub's 5xx and 429, a timeout or a network
 * error. A 401, 403 or 404 (wrong token, no access, repo renamed) only an operator can fix.
 */
export function isTransientGitHubError(error: unknown): boolean {
  if (error instanceof GitHubApiError) return error.status >= 500 || error.status === 429;
  return true;
}

/** A GitHub App: its id and its private key (PEM). */
export interface GitHubAppCredentials {
  appId: string;
  privateKey: string;
}

/** Options of {@link createGitHubClient}. */
export interface GitHubClientOptions {
  apiUrl: string;
  /** A personal or fine-grained token; ignored when `app` is given. */
  token?: string | undefined;
  /** Authenticate as this GitHub App, with the installation of each repo's owner. */
  app?: GitHubAppCredentials | undefined;
  /** Per-request timeout (default 10 s); a wait for a rate limit is not counted in it. */
  timeoutMs?: number;
  /** Retries of a 5xx or network error on single requests (default 2; listings: none). */
  retries?: number;
  /** Longest rate-limit wait (seconds) the client sits out before asking again (default 60). */
  maxRateLimitWaitSeconds?: number;
  /** Seconds a rate limit is waited per unit of `retry-after` (tests shorten it; default 1000). */
  retryAfterBaseMs?: number;
  /** GET answers kept for conditional requests (default 5000). */
  conditionalCacheSize?: number;
  logger?: Logger | undefined;
}

/** Octokit with the plugins the client relies on. */
const RunboatOctokit = Octokit.plugin(paginateRest, retry, throttling);
type RunboatOctokit = InstanceType<typeof RunboatOctokit>;

/**
 * Writes go out as they come: the build workflow waits for its commit statuses, so pacing every
 * write of the process one second apart (the throttling plugin's default) would queue every build
 * behind every other; a secondary rate limit is still waited out when GitHub answers one.
 */
const unpacedWrites = {
  key: () => ({ schedule: (_options: unknown, task: () => Promise<unknown>) => task() }),
} as unknown as NonNullable<ThrottlingOptions['write']>;

interface CachedAnswer {
  etag: string;
  response: unknown;
}

/**
 * Keeps GET answers with their ETag and asks again with `if-none-match`: a 304 answers with the
 * kept response (and costs no rate limit). A small LRU of the newest answers.
 */
function conditionalRequests(octokit: RunboatOctokit, size: number): void {
  const cache = new Map<string, CachedAnswer>();
  octokit.hook.wrap('request', async (request, options) => {
    // Octokit's plugins count retries on this object; one shared by calls would carry the count of
    // one call into the next (longer and fewer retries each time).
    options.request = { ...options.request };
    if (options.method !== 'GET') return request(options);
    const { url } = octokit.request.endpoint(options);
    const cached = cache.get(url);
    if (cached) options.headers['if-none-match'] = cached.etag;
    try {
      const response = await request(options);
      const etag = response.headers.etag;
      cache.delete(url);
      if (etag) {
        cache.set(url, { etag, response });
        if (cache.size > size) cache.delete(cache.keys().next().value as string);
      }
      return response;
    } catch (error) {
      if (cached && (error as { status?: unknown }).status === 304) {
        cache.delete(url);
        cache.set(url, cached);
        return cached.response as Awaited<ReturnType<typeof request>>;
      }
      throw error;
    }
  });
}

/**
 * Asks GitHub nothing while a rate limit it answered is on: a limit the client did not sit out
 * (longer than it waits) fails every later call of the same credentials at once, with GitHub's
 * status, until the reset time (primary) or `retry-after` (secondary) has passed. GitHub asks
 * integrations not to call while limited, on pain of being banned; the callers retry later.
 */
function holdOffWhileLimited(octokit: RunboatOctokit, baseMs: number, log?: Logger): void {
  const limited = { until: 0, status: 403 };
  octokit.hook.wrap('request', async (request, options) => {
    if (Date.now() < limited.until) {
      const { url } = octokit.request.endpoint(options);
      throw new GitHubApiError(
        limited.status,
        url,
        `rate limited: not asked before ${new Date(limited.until).toISOString()}`,
      );
    }
    try {
      return await request(options);
    } catch (error) {
      const failed = error as {
        status?: unknown;
        response?: { headers?: Record<string, unknown> };
      };
      const headers = failed.response?.headers ?? {};
      const status = failed.status;
      if (status === 403 || status === 429) {
        const retryAfter = Number(headers['retry-after']);
        const reset = Number(headers['x-ratelimit-reset']);
        let seconds: number | undefined;
        if (retryAfter > 0) seconds = retryAfter;
        else if (headers['x-ratelimit-remaining'] === '0' && reset > 0) {
          seconds = Math.max(Math.ceil(reset - Date.now() / 1000), 0) + 1;
        }
        if (seconds !== undefined) {
          limited.until = Math.max(limited.until, Date.now() + seconds * baseMs);
          limited.status = status;
          log?.warn(
            { status, until: new Date(limited.until).toISOString() },
            'rate limited: no request to GitHub until then',
          );
        }
      }
      throw error;
    }
  });
}

/** Octokit's error as ours: an HTTP answer keeps its status; a network error stays transient. */
function asGitHubError(error: unknown): unknown {
  const failed = error as {
    status?: unknown;
    response?: { url?: string; data?: unknown };
    request?: { url?: string };
    message?: string;
  };
  if (error instanceof GitHubApiError) return error;
  if (typeof failed.status !== 'number' || failed.response === undefined) {
    return error instanceof Error ? new Error(`GitHub unreachable: ${error.message}`) : error;
  }
  const data = failed.response.data as { message?: unknown } | undefined;
  const body = typeof data?.message === 'string' ? data.message : (failed.message ?? '');
  return new GitHubApiError(failed.status, failed.response.url ?? failed.request?.url ?? '', body);
}

async function github<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw asGitHubError(error);
  }
}

/** The fields of a listed pull request that a build needs. */
interface PullAnswer {
  number: number;
  base: { ref: string };
  head: { sha: string; repo: { full_name: string } | null };
}

/**
 * The request of a listing's pages: one request per page, no retry of a 5xx, since every caller
 * (a poll, the sticky check) asks again on its own schedule and counts its attempts.
 */
function listing(octokit: RunboatOctokit) {
  return octokit.request.defaults({ method: 'GET', request: { retries: 0 } });
}

/** Endpoint options of a listing (typed as a route string by the plugin's overloads). */
function pageOptions(options: { url: string } & Record<string, unknown>): string {
  return options as unknown as string;
}

function ownerAndName(repo: string): { owner: string; repo: string } {
  const [owner = '', name = ''] = repo.split('/');
  return { owner, repo: name };
}

/** A GitHub client over Octokit; one per process, shared by all its callers. */
export function createGitHubClient(options: GitHubClientOptions): GitHubClient {
  const baseUrl = options.apiUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 10_000;
  const retries = options.retries ?? 2;
  const maxWait = options.maxRateLimitWaitSeconds ?? 60;
  const log = options.logger?.child({ component: 'github' });

  // Sits out a rate limit that ends soon enough; a longer one fails, and the caller (an activity
  // or a poll) asks again later instead of holding a slot for an hour.
  const onLimit =
    (kind: string) =>
    (retryAfter: number, request: { method: string; url: string }, _o: unknown, count: number) => {
      const wait = retryAfter <= maxWait && count < 3;
      log?.warn({ kind, retryAfter, method: request.method, url: request.url, wait }, 'rate limit');
      return wait;
    };

  const octokitFor = (auth: Record<string, unknown>): RunboatOctokit => {
    const octokit = new RunboatOctokit({
      ...auth,
      baseUrl,
      userAgent: 'runboat-temporal',
      request: {
        // Each attempt its own timeout: a retry after a timeout gets a fresh one.
        fetch: (url: string, init: RequestInit) =>
          fetch(url, {
            ...init,
            signal: init.signal
              ? AbortSignal.any([init.signal, AbortSignal.timeout(timeoutMs)])
              : AbortSignal.timeout(timeoutMs),
          }),
      },
      retry: { retries, doNotRetry: [304, 400, 401, 403, 404, 410, 422, 429, 451] },
      throttle: {
        onRateLimit: onLimit('primary'),
        onSecondaryRateLimit: onLimit('secondary'),
        write: unpacedWrites,
        ...(options.retryAfterBaseMs === undefined
          ? {}
          : { retryAfterBaseValue: options.retryAfterBaseMs }),
      },
    });
    conditionalRequests(octokit, options.conditionalCacheSize ?? 5000);
    holdOffWhileLimited(octokit, options.retryAfterBaseMs ?? 1000, log);
    return octokit;
  };

  const app = options.app;
  let forRepo: (repo: string) => Promise<RunboatOctokit>;
  let installationOf: (repo: string) => Promise<number | undefined> = () =>
    Promise.resolve(undefined);
  let appOnly: () => RunboatOctokit = () => {
    throw new Error('hook deliveries need a GitHub App (RUNBOAT_GITHUB_APP_ID)');
  };
  if (app) {
    // The App itself (a JWT) only finds installations; each owner's installation makes the calls.
    const appOctokit = octokitFor({
      authStrategy: createAppAuth,
      auth: { appId: app.appId, privateKey: app.privateKey },
    });
    appOnly = () => appOctokit;
    const installations = new Map<string, Promise<{ id: number; octokit: RunboatOctokit }>>();
    const installation = (repo: string) => {
      const owner = ownerAndName(repo).owner.toLowerCase();
      let found = installations.get(owner);
      if (!found) {
        found = (async () => {
          const { data } = await appOctokit.request('GET /repos/{owner}/{repo}/installation', {
            ...ownerAndName(repo),
            request: { retries },
          });
          log?.info({ owner, installation: data.id }, 'GitHub App installation found');
          const octokit = octokitFor({
            authStrategy: createAppAuth,
            auth: { appId: app.appId, privateKey: app.privateKey, installationId: data.id },
          });
          return { id: data.id, octokit };
        })();
        // A failure is not kept: the App may be installed in a moment.
        found.catch(() => installations.delete(owner));
        installations.set(owner, found);
      }
      return found;
    };
    forRepo = async (repo) => (await installation(repo)).octokit;
    installationOf = async (repo) => {
      try {
        return (await github(() => installation(repo))).id;
      } catch (error) {
        if (error instanceof GitHubApiError && error.status === 404) return undefined;
        throw error;
      }
    };
  } else {
    const octokit = octokitFor(options.token ? { auth: options.token } : {});
    forRepo = () => Promise.resolve(octokit);
  }

  return {
    isApp: app !== undefined,
    ...previewCalls(forRepo),
    installationId: installationOf,
    ...deliveryCalls(() => appOnly()),
    postCommitStatus: (status) =>
      github(async () => {
        const octokit = await forRepo(status.repo);
        await octokit.request('POST /repos/{owner}/{repo}/statuses/{sha}', {
          ...ownerAndName(status.repo),
          sha: status.sha,
          state: status.state,
          description: status.description.slice(0, 140),
          context: status.context ?? 'runboat/build',
          ...(status.targetUrl ? { target_url: status.targetUrl } : {}),
        });
      }),
    listBranches: (repo) =>
      github(async () => {
        const octokit = await forRepo(repo);
        const branches = (await octokit.paginate(
          listing(octokit),
          pageOptions({
            url: '/repos/{owner}/{repo}/branches',
            ...ownerAndName(repo),
            per_page: 100,
          }),
        )) as { name: string; commit: { sha: string } }[];
        return branches.map((branch) => ({ name: branch.name, sha: branch.commit.sha }));
      }),
    listOpenPullRequests: (repo) =>
      github(async () => {
        const octokit = await forRepo(repo);
        const pulls = (await octokit.paginate(
          listing(octokit),
          pageOptions({
            url: '/repos/{owner}/{repo}/pulls',
            ...ownerAndName(repo),
            state: 'open',
            per_page: 100,
          }),
        )) as PullAnswer[];
        return pulls.map((pull) => ({
          number: pull.number,
          baseRef: pull.base.ref,
          sha: pull.head.sha.toLowerCase(),
          headRepo: pull.head.repo?.full_name.toLowerCase() ?? null,
        }));
      }),
    branchHead: async (repo, branch) => {
      try {
        return await github(async () => {
          const octokit = await forRepo(repo);
          const { data } = await octokit.request('GET /repos/{owner}/{repo}/branches/{branch}', {
            ...ownerAndName(repo),
            branch,
          });
          return data.commit.sha;
        });
      } catch (error) {
        if (error instanceof GitHubApiError && error.status === 404) return undefined;
        throw error;
      }
    },
  };
}

/** The fields of a listed deployment the client reads. */
interface DeploymentAnswer {
  id: number;
  payload: unknown;
}

/** A check run as the API wants it written. */
function checkRunBody(run: CheckRunState): Record<string, unknown> {
  return {
    name: run.name,
    external_id: run.externalId,
    details_url: run.detailsUrl,
    status: run.status,
    ...(run.status === 'completed' ? { conclusion: run.conclusion ?? 'neutral' } : {}),
    output: { title: run.title.slice(0, 255), summary: run.summary.slice(0, 65_000) },
    actions: run.actions,
  };
}

/** Deployments, their statuses and check runs: what the pull request shows of a build. */
function previewCalls(forRepo: (repo: string) => Promise<RunboatOctokit>) {
  return {
    findDeployments: (repo: string, sha: string, environment: string) =>
      github(async () => {
        const octokit = await forRepo(repo);
        const { data } = (await octokit.request('GET /repos/{owner}/{repo}/deployments', {
          ...ownerAndName(repo),
          sha,
          environment,
          per_page: 100,
        })) as { data: DeploymentAnswer[] };
        return data.map((deployment) => {
          const payload = deployment.payload as { build?: unknown } | null;
          return {
            id: deployment.id,
            build: typeof payload?.build === 'string' ? payload.build : undefined,
          };
        });
      }),
    createDeployment: (deployment: NewDeployment) =>
      github(async () => {
        const octokit = await forRepo(deployment.repo);
        const { data } = await octokit.request('POST /repos/{owner}/{repo}/deployments', {
          ...ownerAndName(deployment.repo),
          ref: deployment.sha,
          task: 'deploy',
          // A preview needs no merge of the base and no green statuses first.
          auto_merge: false,
          required_contexts: [],
          environment: deployment.environment,
          description: deployment.description.slice(0, 140),
          transient_environment: true,
          production_environment: false,
          payload: deployment.payload,
        });
        return (data as { id: number }).id;
      }),
    postDeploymentStatus: (repo: string, id: number, status: DeploymentStatus) =>
      github(async () => {
        const octokit = await forRepo(repo);
        await octokit.request('POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses', {
          ...ownerAndName(repo),
          deployment_id: id,
          state: status.state,
          description: status.description.slice(0, 140),
          ...(status.environmentUrl ? { environment_url: status.environmentUrl } : {}),
          ...(status.logUrl ? { log_url: status.logUrl } : {}),
        });
      }),
    findCheckRuns: (repo: string, sha: string, name: string) =>
      github(async () => {
        const octokit = await forRepo(repo);
        const { data } = await octokit.request(
          'GET /repos/{owner}/{repo}/commits/{ref}/check-runs',
          { ...ownerAndName(repo), ref: sha, check_name: name, filter: 'all', per_page: 100 },
        );
        return data.check_runs.map((run) => ({ id: Number(run.id), externalId: run.external_id }));
      }),
    createCheckRun: (repo: string, sha: string, run: CheckRunState) =>
      github(async () => {
        const octokit = await forRepo(repo);
        const { data } = await octokit.request('POST /repos/{owner}/{repo}/check-runs', {
          ...ownerAndName(repo),
          head_sha: sha,
          ...(checkRunBody(run) as { name: string }),
        });
        return Number(data.id);
      }),
    updateCheckRun: (repo: string, id: number, run: CheckRunState) =>
      github(async () => {
        const octokit = await forRepo(repo);
        await octokit.request('PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}', {
          ...ownerAndName(repo),
          check_run_id: id,
          ...(checkRunBody(run) as { name: string }),
        });
      }),
  };
}

/** The App's hook deliveries: listed (newest first, by cursor pages) and redelivered. */
function deliveryCalls(appOctokit: () => RunboatOctokit) {
  interface DeliveryAnswer {
    id: number;
    guid: string;
    delivered_at: string;
    redelivery: boolean;
    status_code: number;
    event: string;
    action: string | null;
  }
  return {
    listHookDeliveries: (since: Date) =>
      github(async () => {
        const octokit = appOctokit();
        const found: HookDelivery[] = [];
        await octokit.paginate(
          listing(octokit),
          pageOptions({ url: '/app/hook/deliveries', per_page: 100 }),
          (response, done) => {
            for (const item of response.data as unknown as DeliveryAnswer[]) {
              const deliveredAt = new Date(item.delivered_at);
              // Newest first: past the window, the rest is older still.
              if (deliveredAt < since) {
                done();
                break;
              }
              found.push({
                id: item.id,
                guid: item.guid,
                deliveredAt,
                redelivery: item.redelivery,
                statusCode: item.status_code,
                event: item.event,
                action: item.action,
              });
            }
            return [];
          },
        );
        return found;
      }),
    redeliverHookDelivery: (id: number) =>
      github(async () => {
        await appOctokit().request('POST /app/hook/deliveries/{delivery_id}/attempts', {
          delivery_id: id,
        });
      }),
  };
}

/** The settings {@link createGitHubClientFromSettings} reads. */
export interface GitHubSettings {
  RUNBOAT_GITHUB_API_URL: string;
  RUNBOAT_GITHUB_TOKEN?: string | undefined;
  RUNBOAT_GITHUB_APP_ID?: string | undefined;
  RUNBOAT_GITHUB_APP_PRIVATE_KEY_FILE?: string | undefined;
}

/**
 * The one GitHub client of a process, from its settings: as the App when an App id is set, else
 * with the token; none when neither a credential nor an explicit API URL is set (no GitHub).
 */
export function createGitHubClientFromSettings(
  settings: GitHubSettings,
  options: { apiUrlSet: boolean; logger?: Logger | undefined },
): GitHubClient | undefined {
  const appId = settings.RUNBOAT_GITHUB_APP_ID;
  const keyFile = settings.RUNBOAT_GITHUB_APP_PRIVATE_KEY_FILE;
  if (Boolean(appId) !== Boolean(keyFile)) {
    throw new Error(
      'RUNBOAT_GITHUB_APP_ID and RUNBOAT_GITHUB_APP_PRIVATE_KEY_FILE: set both, or neither',
    );
  }
  if (appId && keyFile) {
    return createGitHubClient({
      apiUrl: settings.RUNBOAT_GITHUB_API_URL,
      app: { appId, privateKey: readFileSync(keyFile, 'utf8') },
      logger: options.logger,
    });
  }
  if (!settings.RUNBOAT_GITHUB_TOKEN && !options.apiUrlSet) return undefined;
  return createGitHubClient({
    apiUrl: settings.RUNBOAT_GITHUB_API_URL,
    token: settings.RUNBOAT_GITHUB_TOKEN,
    logger: options.logger,
  });
}
