/**
 * The GitHub REST API as far as the orchestrator needs it: commit statuses and branch heads.
 * The base URL is a setting, so tests point it at a fake GitHub on loopback.
 */

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

/** What the orchestrator asks of GitHub. */
export interface GitHubClient {
  postCommitStatus(status: CommitStatus): Promise<void>;
  /** The head commit SHA of a branch, or undefined when the branch does not exist. */
  branchHead(repo: string, branch: string): Promise<string | undefined>;
  /** Every branch of a repo with its head commit. */
  listBranches(repo: string): Promise<{ name: string; sha: string }[]>;
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

/** Options of {@link createGitHubClient}. */
export interface GitHubClientOptions {
  apiUrl: string;
  token?: string | undefined;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number;
}

/** A GitHub client over fetch. */
export function createGitHubClient(options: GitHubClientOptions): GitHubClient {
  const base = options.apiUrl.replace(/\/+$/, '');
  const request = async (method: string, path: string, body?: unknown) => {
    const url = `${base}${path}`;
    const response = await fetch(url, {
      method,
      headers: {
        accept: 'application/vnd.github+json',
        'x-github-api-version': '2022-11-28',
        'user-agent': 'runboat-temporal',
        ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
    return { response, url };
  };
  const repoPath = (repo: string) =>
    repo
      .split('/')
      .map((part) => encodeURIComponent(part))
      .join('/');
  return {
    async postCommitStatus(status) {
      const { response, url } = await request(
        'POST',
        `/repos/${repoPath(status.repo)}/statuses/${encodeURIComponent(status.sha)}`,
        {
          state: status.state,
          description: status.description.slice(0, 140),
          context: status.context ?? 'runboat/build',
          ...(status.targetUrl ? { target_url: status.targetUrl } : {}),
        },
      );
      if (!response.ok) throw new GitHubApiError(response.status, url, await response.text());
    },
    async listBranches(repo) {
      const branches: { name: string; sha: string }[] = [];
      for (let page = 1; ; page++) {
        const { response, url } = await request(
          'GET',
          `/repos/${repoPath(repo)}/branches?per_page=100&page=${page}`,
        );
        if (!response.ok) throw new GitHubApiError(response.status, url, await response.text());
        const data = (await response.json()) as { name: string; commit: { sha: string } }[];
        branches.push(...data.map((branch) => ({ name: branch.name, sha: branch.commit.sha })));
        if (data.length < 100) return branches;
      }
    },
    async branchHead(repo, branch) {
      const { response, url } = await request(
        'GET',
        `/repos/${repoPath(repo)}/branches/${encodeURIComponent(branch)}`,
      );
      if (response.status === 404) return undefined;
      if (!response.ok) throw new GitHubApiError(response.status, url, await response.text());
      const data = (await response.json()) as { commit?: { sha?: string } };
      return data.commit?.sha;
    },
  };
}
