/**
 * GitHub webhook deliveries for tests: payloads shaped like the ones GitHub sends (only the
 * fields a receiver could plausibly read, but with their real names and types), signed the way
 * GitHub signs them, and posted over real HTTP. Shared by the unit and integration tests.
 */
import { createHash, createHmac, randomUUID } from 'node:crypto';

/** A JSON payload as GitHub sends it. */
export type GitHubPayload = Record<string, unknown>;

/** What a receiver answered. */
export interface DeliveryResponse {
  status: number;
  /** The parsed JSON body, or the text when it is not JSON. */
  body: unknown;
}

/** `sha256=<hex>`: HMAC SHA-256 of the exact body with the secret, as in `X-Hub-Signature-256`. */
export function signPayload(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** A 40-digit commit SHA derived from a seed, so that tests can name commits. */
export function commitSha(seed: string): string {
  return createHash('sha1').update(seed).digest('hex');
}

/** `after` of a push that deleted its branch. */
export const NULL_SHA = '0'.repeat(40);

function user(login: string): GitHubPayload {
  const id = parseInt(commitSha(login).slice(0, 7), 16);
  return {
    login,
    id,
    node_id: `MDQ6VXNlcj${id}`,
    avatar_url: `https://avatars.githubusercontent.com/u/${id}?v=4`,
    url: `https://api.github.com/users/${login}`,
    html_url: `https://github.com/${login}`,
    type: 'User',
    site_admin: false,
  };
}

function repository(fullName: string): GitHubPayload {
  const [owner = 'acme', name = 'widgets'] = fullName.split('/');
  const id = parseInt(commitSha(fullName).slice(0, 8), 16);
  return {
    id,
    node_id: `R_kgDO${id}`,
    name,
    full_name: fullName,
    private: false,
    owner: { ...user(owner), type: 'Organization' },
    html_url: `https://github.com/${fullName}`,
    description: null,
    fork: false,
    url: `https://api.github.com/repos/${fullName}`,
    clone_url: `https://github.com/${fullName}.git`,
    default_branch: 'main',
    visibility: 'public',
  };
}

/** Options of {@link pushPayload}. */
export interface PushOptions {
  /** `owner/name`, as GitHub spells it (case included); default `Acme/Widgets`. */
  repo?: string;
  /** Branch pushed to; ignored when `ref` is given. Default `main`. */
  branch?: string;
  /** The full ref, e.g. `refs/tags/v1.0`; default `refs/heads/<branch>`. */
  ref?: string;
  /** New head; default a SHA derived from the ref, or forty zeros when deleted. */
  after?: string;
  before?: string;
  /** The push deleted the ref. */
  deleted?: boolean;
  /** The push created the ref. */
  created?: boolean;
}

/** A `push` event payload. */
export function pushPayload(options: PushOptions = {}): GitHubPayload {
  const repo = options.repo ?? 'Acme/Widgets';
  const ref = options.ref ?? `refs/heads/${options.branch ?? 'main'}`;
  const deleted = options.deleted ?? false;
  const created = options.created ?? false;
  const after = options.after ?? (deleted ? NULL_SHA : commitSha(`${repo} ${ref} after`));
  const before = options.before ?? (created ? NULL_SHA : commitSha(`${repo} ${ref} before`));
  const pusher = user('octocat');
  const headCommit = deleted
    ? null
    : {
        id: after,
        tree_id: commitSha(`${after} tree`),
        distinct: true,
        message: 'Fix the widget',
        timestamp: '2024-05-04T10:20:30+02:00',
        url: `https://github.com/${repo}/commit/${after}`,
        author: { name: 'Octo Cat', email: 'octocat@example.com', username: 'octocat' },
        committer: { name: 'Octo Cat', email: 'octocat@example.com', username: 'octocat' },
        added: [],
        removed: [],
        modified: ['README.md'],
      };
  return {
    ref,
    before,
    after,
    repository: repository(repo),
    pusher: { name: 'octocat', email: 'octocat@example.com' },
    sender: pusher,
    created,
    deleted,
    forced: false,
    base_ref: null,
    compare: `https://github.com/${repo}/compare/${before.slice(0, 12)}...${after.slice(0, 12)}`,
    commits: headCommit ? [headCommit] : [],
    head_commit: headCommit,
  };
}

/** Options of {@link pullRequestPayload}. */
export interface PullRequestOptions {
  /** Base repo `owner/name`; default `Acme/Widgets`. */
  repo?: string;
  /** `opened`, `synchronize`, `reopened`, `closed`, `labeled`…; default `opened`. */
  action?: string;
  /** Default 42. */
  number?: number;
  /** Branch the pull request targets; default `main`. */
  baseRef?: string;
  /** Branch of the pull request; default `feature/widget`. */
  headRef?: string;
  /** Head commit; default a SHA derived from the repo, number and head branch. */
  headSha?: string;
  /** Repo the head branch lives in (a fork); default the base repo. */
  headRepo?: string;
  /** For `closed`: whether it was merged. */
  merged?: boolean;
}

/** A `pull_request` event payload. */
export function pullRequestPayload(options: PullRequestOptions = {}): GitHubPayload {
  const repo = options.repo ?? 'Acme/Widgets';
  const action = options.action ?? 'opened';
  const number = options.number ?? 42;
  const baseRef = options.baseRef ?? 'main';
  const headRef = options.headRef ?? 'feature/widget';
  const headSha = options.headSha ?? commitSha(`${repo} #${number} ${headRef}`);
  const headRepo = options.headRepo ?? repo;
  const closed = action === 'closed';
  const merged = closed && (options.merged ?? false);
  const author = user('octocat');
  const id = parseInt(commitSha(`${repo}#${number}`).slice(0, 8), 16);
  return {
    action,
    number,
    pull_request: {
      url: `https://api.github.com/repos/${repo}/pulls/${number}`,
      id,
      node_id: `PR_kwDO${id}`,
      html_url: `https://github.com/${repo}/pull/${number}`,
      number,
      state: closed ? 'closed' : 'open',
      locked: false,
      title: 'Make the widget spin',
      user: author,
      body: null,
      created_at: '2024-05-04T08:00:00Z',
      updated_at: '2024-05-04T08:20:30Z',
      closed_at: closed ? '2024-05-04T08:20:30Z' : null,
      merged_at: merged ? '2024-05-04T08:20:30Z' : null,
      merge_commit_sha: merged ? commitSha(`${headSha} merge`) : null,
      draft: false,
      head: {
        label: `${headRepo.split('/')[0]}:${headRef}`,
        ref: headRef,
        sha: headSha,
        user: author,
        repo: repository(headRepo),
      },
      base: {
        label: `${repo.split('/')[0]}:${baseRef}`,
        ref: baseRef,
        sha: commitSha(`${repo} ${baseRef}`),
        user: user(repo.split('/')[0] ?? 'acme'),
        repo: repository(repo),
      },
      merged,
      mergeable: null,
      commits: 1,
      additions: 3,
      deletions: 1,
      changed_files: 1,
    },
    repository: repository(repo),
    sender: author,
  };
}

/** Options of {@link deletePayload}. */
export interface DeleteOptions {
  /** Default `Acme/Widgets`. */
  repo?: string;
  /** The short ref name (GitHub sends no `refs/heads/` here); default `feature/widget`. */
  ref?: string;
  /** Default `branch`. */
  refType?: 'branch' | 'tag';
}

/** A `delete` event payload (a branch or tag was deleted). */
export function deletePayload(options: DeleteOptions = {}): GitHubPayload {
  const repo = options.repo ?? 'Acme/Widgets';
  return {
    ref: options.ref ?? 'feature/widget',
    ref_type: options.refType ?? 'branch',
    pusher_type: 'user',
    repository: repository(repo),
    sender: user('octocat'),
  };
}

/** Options of {@link checkRunPayload}. */
export interface CheckRunOptions {
  /** Default `Acme/Widgets`. */
  repo?: string;
  /** Default `requested_action`. */
  action?: string;
  /** The button pressed (`start`, `stop`, `reset`). */
  identifier: string;
  /** The build the check run belongs to. */
  externalId: string;
  headSha: string;
  /** The App's installation the delivery comes from. */
  installation: number;
}

/** A `check_run` event payload: a button of a check run pressed (GitHub App deliveries only). */
export function checkRunPayload(options: CheckRunOptions): GitHubPayload {
  const repo = options.repo ?? 'Acme/Widgets';
  return {
    action: options.action ?? 'requested_action',
    check_run: {
      id: parseInt(commitSha(options.externalId).slice(0, 8), 16),
      name: 'runboat',
      head_sha: options.headSha,
      external_id: options.externalId,
      status: 'completed',
      conclusion: 'success',
    },
    requested_action: { identifier: options.identifier },
    installation: { id: options.installation, node_id: `MDIz${options.installation}` },
    repository: repository(repo),
    sender: user('octocat'),
  };
}

/** A `ping` event payload, as GitHub sends when a hook is created. */
export function pingPayload(repo = 'Acme/Widgets'): GitHubPayload {
  return {
    zen: 'Keep it logically awesome.',
    hook_id: 123456789,
    hook: {
      type: 'Repository',
      id: 123456789,
      name: 'web',
      active: true,
      events: ['push', 'pull_request', 'delete'],
      config: {
        content_type: 'json',
        insecure_ssl: '0',
        url: 'https://runboat.example/webhooks/github',
      },
      updated_at: '2024-05-04T08:00:00Z',
      created_at: '2024-05-04T08:00:00Z',
    },
    repository: repository(repo),
    sender: user('octocat'),
  };
}

/** POSTs a body with exactly these headers; for deliveries GitHub would never make. */
export async function postDelivery(
  url: string,
  body: string | Uint8Array,
  headers: Record<string, string>,
): Promise<DeliveryResponse> {
  const response = await fetch(url, { method: 'POST', body, headers });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: the caller sees the text.
  }
  return { status: response.status, body: parsed };
}

/**
 * Delivers an event as GitHub does: JSON body, `X-GitHub-Event`, `X-GitHub-Delivery` and the
 * signature of the exact bytes sent. A string payload is sent as is; without a secret the
 * delivery goes unsigned.
 */
export function deliver(
  url: string,
  event: string,
  payload: GitHubPayload | string,
  secret: string | undefined,
  deliveryId: string = randomUUID(),
): Promise<DeliveryResponse> {
  const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/test',
    'x-github-event': event,
    'x-github-delivery': deliveryId,
    'x-github-hook-id': '123456789',
  };
  if (secret !== undefined) headers['x-hub-signature-256'] = signPayload(body, secret);
  return postDelivery(url, body, headers);
}
