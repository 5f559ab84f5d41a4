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

/** What the orchestrator asks of GitHub. */
export interface GitHubClient {
  postCommitStatus(status: CommitStatus): Promise<void>;
  /** The head commit SHA of a branch, or undefined when the branch does not exist. */
  branchHead(repo: string, branch: string): Promise<string | undefined>;
  /** Every branch of a repo with its head commit (one request per page, not retried on 5xx). */
  listBranches(repo: string): Promise<{ name: string; sha: string }[]>;
  /** Every open pull request of a repo (one request per page, not retried on 5xx). */
  listOpenPullRequests(repo: string): Promise<PullRequestHead[]>;
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

/** Octokit's error as ours: an HTTP answer keeps its status; a network error stays transient. */
function asGitHubError(error: unknown): unknown {
  const failed = error as {
    status?: unknown;
    response?: { url?: string; data?: unknown };
    request?: { url?: string };
    message?: string;
  };
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
    return octokit;
  };

  const app = options.app;
  let forRepo: (repo: string) => Promise<RunboatOctokit>;
  if (app) {
    // The App itself (a JWT) only finds installations; each owner's installation makes the calls.
    const appOctokit = octokitFor({
      authStrategy: createAppAuth,
      auth: { appId: app.appId, privateKey: app.privateKey },
    });
    const installations = new Map<string, Promise<RunboatOctokit>>();
    forRepo = (repo) => {
      const owner = ownerAndName(repo).owner.toLowerCase();
      let client = installations.get(owner);
      if (!client) {
        client = (async () => {
          const { data } = await appOctokit.request('GET /repos/{owner}/{repo}/installation', {
            ...ownerAndName(repo),
            request: { retries },
          });
          log?.info({ owner, installation: data.id }, 'GitHub App installation found');
          return octokitFor({
            authStrategy: createAppAuth,
            auth: { appId: app.appId, privateKey: app.privateKey, installationId: data.id },
          });
        })();
        // A failure is not kept: the App may be installed in a moment.
        client.catch(() => installations.delete(owner));
        installations.set(owner, client);
      }
      return client;
    };
  } else {
    const octokit = octokitFor(options.token ? { auth: options.token } : {});
    forRepo = () => Promise.resolve(octokit);
  }

  return {
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
