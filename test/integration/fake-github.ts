/**
 * A fake GitHub REST endpoint on loopback, standing in for the one part of the system that cannot
 * run here. It answers the way GitHub does where the client depends on it: commit statuses, branch
 * heads, branches and open pull requests in pages of at most 100 with `Link` headers, ETags and
 * 304 on `if-none-match` (a 304 costs no rate limit), rate-limit headers on every answer and the
 * primary (403, `x-ratelimit-remaining: 0`) and secondary (403/429 with `retry-after`) limits, and
 * GitHub App auth: a JWT signed with the App's key finds a repo's installation and exchanges it for
 * an installation token, which is then the only credential the repo's routes accept. Webhook
 * deliveries of the App: `deliver` POSTs a signed event to a receiver and records its answer (0: no
 * connection), `GET /app/hook/deliveries` lists them newest first in cursor pages and
 * `POST /app/hook/deliveries/{id}/attempts` delivers one again, both with the App's JWT.
 */
import {
  createHash,
  createHmac,
  createPublicKey,
  randomBytes,
  randomUUID,
  verify,
  type KeyObject,
} from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A commit status as the fake GitHub received it. */
export interface ReceivedStatus {
  repo: string;
  sha: string;
  state: string;
  description: string;
  context: string;
  targetUrl: string | undefined;
}

/** An open pull request of the fake GitHub. */
export interface FakePullRequest {
  base: string;
  sha: string;
  /** `owner/name` of the head; null for a deleted fork. Default: the repo itself. */
  headRepo?: string | null;
}

/** One request the fake GitHub answered. */
export interface FakeRequest {
  method: string;
  path: string;
  status: number;
  at: number;
}

/** A rate limit the next API request(s) meet. */
export interface FakeRateLimit {
  kind: 'primary' | 'secondary';
  /** Default 403. */
  status?: 403 | 429;
  /** Seconds until it lifts. */
  seconds: number;
}

/** One attempt of a webhook delivery of the App, as GitHub lists it. */
export interface FakeHookDelivery {
  id: number;
  /** Shared by a delivery and its redeliveries. */
  guid: string;
  event: string;
  action: string | null;
  /** The receiver's answer; 0 when it could not be reached. */
  status_code: number;
  redelivery: boolean;
  delivered_at: string;
}

/** Where a webhook delivery goes: the receiver's URL and the secret it is signed with. */
export interface FakeHookTarget {
  url: string;
  secret: string;
}

/** The GitHub App the fake knows, for App auth. */
export interface FakeApp {
  id: string;
  /** The App's public key (PEM): JWTs are verified with it. */
  publicKey: string;
  /** Repo owner (lower-case) → installation id. */
  installations: Map<string, number>;
}

/** A deployment the fake GitHub holds, with every status posted to it. */
export interface FakeDeployment {
  id: number;
  repo: string;
  ref: string;
  environment: string;
  transient: boolean;
  production: boolean;
  payload: unknown;
  statuses: { state: string; description: string; environmentUrl?: string; logUrl?: string }[];
}

/** A check run the fake GitHub holds, with each state written to it. */
export interface FakeCheckRun {
  id: number;
  repo: string;
  headSha: string;
  name: string;
  externalId: string | null;
  /** Each body created or patched, in order; the last is the check run now. */
  writes: Record<string, unknown>[];
}

/** A running fake GitHub. */
export interface FakeGitHub {
  deployments: FakeDeployment[];
  checkRuns: FakeCheckRun[];
  url: string;
  statuses: ReceivedStatus[];
  /** `owner/repo` → branch → head SHA. */
  heads: Map<string, Map<string, string>>;
  /** `owner/repo` → pull request number → its head; only open ones are listed. */
  pulls: Map<string, Map<number, FakePullRequest>>;
  /**
   * `owner/repo` → HTTP status its branches routes answer instead of the heads (an outage, a
   * wrong token, a renamed repo); delete the entry to heal.
   */
  branchErrors: Map<string, number>;
  /** Every request on the branches routes, in order, with the error it got from `branchErrors`. */
  branchRequests: { repo: string; path: string; error: number | undefined; at: number }[];
  /** Every request, in order, with the status answered. */
  requests: FakeRequest[];
  /** Commit SHA → milliseconds to wait before answering a commit status of it (a slow GitHub). */
  statusDelays: Map<string, number>;
  /** Rate limits met by the next requests, one each, in order. */
  rateLimits: FakeRateLimit[];
  /** Requests counted against the rate limit (not 304s, not the App's own). */
  rateLimitUsed(): number;
  /** Set to require GitHub App auth. */
  app: FakeApp | undefined;
  /** Installation tokens issued so far. */
  issuedTokens: { token: string; installation: number }[];
  statusesOf(sha: string): ReceivedStatus[];
  /** Every attempt of the App's webhook deliveries, oldest first. */
  hookDeliveries: FakeHookDelivery[];
  /**
   * Delivers an event as GitHub does (signed `x-hub-signature-256`, `x-github-event`,
   * `x-github-delivery`) and records the attempt; `guid` makes it an attempt of an earlier delivery.
   */
  deliver(
    event: string,
    payload: unknown,
    target: FakeHookTarget,
    guid?: string,
  ): Promise<FakeHookDelivery>;
  close(): Promise<void>;
}

const PAGE_MAX = 100;
const RATE_LIMIT = 5000;

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => resolve(body));
    request.on('error', reject);
  });
}

function base64urlJson(part: string | undefined): Record<string, unknown> | undefined {
  try {
    return JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8')) as Record<
      string,
      unknown
    >;
  } catch {
    return undefined;
  }
}

/** Whether a JWT is the App's: RS256 by its key, issued by its id, not expired. */
function jwtIsValid(jwt: string, app: FakeApp, key: KeyObject): boolean {
  const [header, payload, signature] = jwt.split('.');
  if (!header || !payload || !signature) return false;
  if (base64urlJson(header)?.alg !== 'RS256') return false;
  const signed = verify(
    'sha256',
    Buffer.from(`${header}.${payload}`),
    key,
    Buffer.from(signature, 'base64url'),
  );
  const claims = base64urlJson(payload);
  const now = Math.floor(Date.now() / 1000);
  return (
    signed &&
    String(claims?.iss) === app.id &&
    typeof claims?.exp === 'number' &&
    claims.exp > now &&
    typeof claims.iat === 'number' &&
    claims.iat <= now + 60
  );
}

/** Starts a fake GitHub on a free port of 127.0.0.1. */
export async function startFakeGitHub(): Promise<FakeGitHub> {
  const statuses: ReceivedStatus[] = [];
  const heads = new Map<string, Map<string, string>>();
  const pulls = new Map<string, Map<number, FakePullRequest>>();
  const branchErrors = new Map<string, number>();
  const branchRequests: FakeGitHub['branchRequests'] = [];
  const requests: FakeRequest[] = [];
  const statusDelays = new Map<string, number>();
  const rateLimits: FakeRateLimit[] = [];
  const issuedTokens: FakeGitHub['issuedTokens'] = [];
  const deployments: FakeDeployment[] = [];
  const checkRuns: FakeCheckRun[] = [];
  let used = 0;
  let resetAt = Math.floor(Date.now() / 1000) + 3600;
  const state: { app: FakeApp | undefined; appKey: KeyObject | undefined; keyOf?: string } = {
    app: undefined,
    appKey: undefined,
  };
  const appKey = (app: FakeApp): KeyObject => {
    if (state.keyOf !== app.publicKey || !state.appKey) {
      state.appKey = createPublicKey(app.publicKey);
      state.keyOf = app.publicKey;
    }
    return state.appKey;
  };
  let url = '';

  // Webhook deliveries of the App: each attempt, and what it sent where (for redeliveries).
  const hookDeliveries: FakeHookDelivery[] = [];
  const hookSent = new Map<number, { target: FakeHookTarget; body: string }>();
  const hookSend = async (
    event: string,
    body: string,
    target: FakeHookTarget,
    guid: string,
    redelivery: boolean,
  ): Promise<FakeHookDelivery> => {
    let status: number;
    try {
      const answer = await fetch(target.url, {
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'GitHub-Hookshot/fake',
          'x-github-event': event,
          'x-github-delivery': guid,
          'x-hub-signature-256': `sha256=${createHmac('sha256', target.secret).update(body).digest('hex')}`,
        },
        // GitHub gives up on a receiver after 10 seconds.
        signal: AbortSignal.timeout(10_000),
      });
      await answer.arrayBuffer();
      status = answer.status;
    } catch {
      status = 0;
    }
    let action: string | null = null;
    try {
      const parsed = JSON.parse(body) as { action?: unknown };
      if (typeof parsed.action === 'string') action = parsed.action;
    } catch {
      // Not JSON: no action.
    }
    const delivery: FakeHookDelivery = {
      id: hookDeliveries.length + 1,
      guid,
      event,
      action,
      status_code: status,
      redelivery,
      delivered_at: new Date().toISOString(),
    };
    hookDeliveries.push(delivery);
    hookSent.set(delivery.id, { target, body });
    return delivery;
  };

  const send = (
    response: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) => {
    response
      .writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers })
      .end(body === undefined ? undefined : JSON.stringify(body));
  };

  const limitHeaders = () => ({
    'x-ratelimit-limit': String(RATE_LIMIT),
    'x-ratelimit-remaining': String(Math.max(RATE_LIMIT - used, 0)),
    'x-ratelimit-reset': String(resetAt),
    'x-ratelimit-used': String(used),
    'x-ratelimit-resource': 'core',
  });

  /** A listing in pages, as GitHub pages it: `Link` with next/last (and prev/first), an ETag. */
  const sendPage = <T>(
    request: IncomingMessage,
    response: ServerResponse,
    address: URL,
    items: T[],
  ) => {
    const perPage = Math.min(Number(address.searchParams.get('per_page') ?? 30) || 30, PAGE_MAX);
    const page = Math.max(Number(address.searchParams.get('page') ?? 1) || 1, 1);
    const last = Math.max(Math.ceil(items.length / perPage), 1);
    const pageUrl = (n: number) => {
      const next = new URL(address.pathname + address.search, url);
      next.searchParams.set('per_page', String(perPage));
      next.searchParams.set('page', String(n));
      return next.toString();
    };
    const links: string[] = [];
    if (page < last)
      links.push(`<${pageUrl(page + 1)}>; rel="next"`, `<${pageUrl(last)}>; rel="last"`);
    if (page > 1) links.push(`<${pageUrl(page - 1)}>; rel="prev"`, `<${pageUrl(1)}>; rel="first"`);
    const body = items.slice((page - 1) * perPage, page * perPage);
    sendConditional(request, response, body, links.length ? { link: links.join(', ') } : {});
  };

  /** 200 with an ETag, or 304 when the client's ETag matches (not counted as a request). */
  const sendConditional = (
    request: IncomingMessage,
    response: ServerResponse,
    body: unknown,
    headers: Record<string, string> = {},
  ): number => {
    const text = JSON.stringify(body);
    const etag = `W/"${createHash('sha1').update(text).digest('hex')}"`;
    if (request.headers['if-none-match'] === etag) {
      response.writeHead(304, { etag, ...limitHeaders(), ...headers }).end();
      return 304;
    }
    used++;
    response
      .writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        etag,
        ...limitHeaders(),
        ...headers,
      })
      .end(text);
    return 200;
  };

  /** The owner an App-authenticated request may act on, or the refusal it got. */
  const installationAuth = (request: IncomingMessage, response: ServerResponse, repo: string) => {
    const app = state.app;
    if (!app) return true;
    const auth = request.headers.authorization ?? '';
    const token = auth.replace(/^(token|bearer)\s+/i, '');
    const issued = issuedTokens.find((t) => t.token === token);
    const owner = repo.split('/')[0]?.toLowerCase() ?? '';
    if (!issued || app.installations.get(owner) !== issued.installation) {
      send(response, 401, { message: 'Bad credentials' });
      return false;
    }
    return true;
  };

  const appAuth = (request: IncomingMessage, response: ServerResponse): FakeApp | undefined => {
    const app = state.app;
    const auth = request.headers.authorization ?? '';
    const jwt = /^bearer\s+/i.test(auth) ? auth.replace(/^bearer\s+/i, '') : '';
    if (!app || !jwtIsValid(jwt, app, appKey(app))) {
      send(response, 401, {
        message: 'A JSON web token could not be decoded',
      });
      return undefined;
    }
    return app;
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<number> => {
    const address = new URL(request.url ?? '/', 'http://github.test');
    const parts = address.pathname.split('/').map(decodeURIComponent);
    const method = request.method ?? 'GET';

    // The App's own routes: authenticated by its JWT.
    if (method === 'GET' && parts[1] === 'repos' && parts[4] === 'installation') {
      if (!appAuth(request, response)) return 401;
      const owner = (parts[2] ?? '').toLowerCase();
      const id = state.app?.installations.get(owner);
      if (id === undefined) {
        send(response, 404, { message: 'Not Found' });
        return 404;
      }
      send(response, 200, { id, account: { login: parts[2] }, app_id: Number(state.app?.id) });
      return 200;
    }
    if (method === 'POST' && parts[1] === 'app' && parts[2] === 'installations') {
      const app = appAuth(request, response);
      if (!app) return 401;
      const installation = Number(parts[3]);
      if (![...app.installations.values()].includes(installation)) {
        send(response, 404, { message: 'Not Found' });
        return 404;
      }
      const token = `ghs_${randomBytes(18).toString('hex')}`;
      issuedTokens.push({ token, installation });
      send(response, 201, {
        token,
        expires_at: new Date(Date.now() + 3600_000).toISOString(),
        permissions: { statuses: 'write', contents: 'read', pull_requests: 'read' },
        repository_selection: 'all',
      });
      return 201;
    }

    // /app/hook/deliveries: newest first, in pages of `per_page` after `cursor` (an id).
    if (method === 'GET' && address.pathname === '/app/hook/deliveries') {
      if (!appAuth(request, response)) return 401;
      const perPage = Math.min(Number(address.searchParams.get('per_page') ?? 30) || 30, PAGE_MAX);
      const cursor = Number(address.searchParams.get('cursor') ?? Infinity) || Infinity;
      const after = [...hookDeliveries].reverse().filter((d) => d.id < cursor);
      const page = after.slice(0, perPage);
      const last = page.at(-1);
      const headers: Record<string, string> = {};
      if (last && after.length > perPage) {
        const next = new URL('/app/hook/deliveries', url);
        next.searchParams.set('per_page', String(perPage));
        next.searchParams.set('cursor', String(last.id));
        headers.link = `<${next.toString()}>; rel="next"`;
      }
      send(
        response,
        200,
        page.map((d) => ({
          ...d,
          status: d.status_code === 0 ? 'failed to connect to host' : String(d.status_code),
          duration: 0.01,
          installation_id: null,
          repository_id: null,
        })),
        headers,
      );
      return 200;
    }
    // /app/hook/deliveries/{id}/attempts: accepted, then delivered again with the same guid.
    if (
      method === 'POST' &&
      parts[1] === 'app' &&
      parts[3] === 'deliveries' &&
      parts[5] === 'attempts'
    ) {
      if (!appAuth(request, response)) return 401;
      const original = hookDeliveries.find((d) => d.id === Number(parts[4]));
      const sent = hookSent.get(Number(parts[4]));
      if (!original || !sent) {
        send(response, 404, { message: 'Not Found' });
        return 404;
      }
      send(response, 202, {});
      void hookSend(original.event, sent.body, sent.target, original.guid, true);
      return 202;
    }

    if (parts[1] !== 'repos') {
      send(response, 404, { message: 'Not Found' });
      return 404;
    }
    const repo = `${parts[2]}/${parts[3]}`;
    if (!installationAuth(request, response, repo)) return 401;

    const limit = rateLimits.shift();
    if (limit) {
      const status = limit.status ?? 403;
      if (limit.kind === 'primary') {
        resetAt = Math.floor(Date.now() / 1000) + limit.seconds;
        send(
          response,
          status,
          { message: `API rate limit exceeded for installation ID 1.` },
          { ...limitHeaders(), 'x-ratelimit-remaining': '0' },
        );
      } else {
        send(
          response,
          status,
          { message: 'You have exceeded a secondary rate limit. Please wait a few minutes.' },
          { ...limitHeaders(), 'retry-after': String(limit.seconds) },
        );
      }
      return status;
    }

    // /repos/{owner}/{repo}/statuses/{sha}
    if (method === 'POST' && parts[4] === 'statuses') {
      const body = JSON.parse(await readBody(request)) as Record<string, string>;
      const delay = statusDelays.get(parts[5] ?? '');
      if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
      statuses.push({
        repo,
        sha: parts[5] ?? '',
        state: body.state ?? '',
        description: body.description ?? '',
        context: body.context ?? '',
        targetUrl: body.target_url,
      });
      used++;
      send(response, 201, {}, limitHeaders());
      return 201;
    }
    if (method === 'GET' && parts[4] === 'branches') {
      const error = branchErrors.get(repo);
      branchRequests.push({ repo, path: address.pathname, error, at: Date.now() });
      if (error !== undefined) {
        send(response, error, { message: `fake GitHub answers ${error}` });
        return error;
      }
      const branches = [...(heads.get(repo) ?? new Map<string, string>())].sort(([a], [b]) =>
        a < b ? -1 : a > b ? 1 : 0,
      );
      // /repos/{owner}/{repo}/branches
      if (parts.length === 5) {
        sendPage(
          request,
          response,
          address,
          branches.map(([name, sha]) => ({ name, commit: { sha }, protected: false })),
        );
        return response.statusCode;
      }
      // /repos/{owner}/{repo}/branches/{branch}
      const name = parts.slice(5).join('/');
      const sha = heads.get(repo)?.get(name);
      if (!sha) {
        send(response, 404, { message: 'Branch not found' });
        return 404;
      }
      return sendConditional(request, response, { name, commit: { sha } });
    }
    // /repos/{owner}/{repo}/pulls?state=open
    if (method === 'GET' && parts[4] === 'pulls' && parts.length === 5) {
      const open = [...(pulls.get(repo) ?? new Map<number, FakePullRequest>())]
        .sort(([a], [b]) => b - a)
        .map(([number, pull]) => {
          const headRepo = pull.headRepo === undefined ? repo : pull.headRepo;
          return {
            number,
            state: 'open',
            base: { ref: pull.base, repo: { full_name: repo } },
            head: { sha: pull.sha, repo: headRepo === null ? null : { full_name: headRepo } },
          };
        });
      sendPage(request, response, address, open);
      return response.statusCode;
    }
    const preview = await previewRoutes(request, response, method, parts, repo, address);
    if (preview !== undefined) return preview;
    send(response, 404, { message: 'Not Found' });
    return 404;
  };

  /** Deployments, their statuses and check runs, as GitHub answers them. */
  const previewRoutes = async (
    request: IncomingMessage,
    response: ServerResponse,
    method: string,
    parts: string[],
    repo: string,
    address: URL,
  ): Promise<number | undefined> => {
    const json = async () => JSON.parse(await readBody(request)) as Record<string, unknown>;
    if (parts[4] === 'deployments' && parts.length === 5 && method === 'POST') {
      const body = await json();
      const deployment: FakeDeployment = {
        id: deployments.length + 1,
        repo,
        ref: String(body.ref),
        environment: String(body.environment ?? 'production'),
        transient: body.transient_environment === true,
        production: body.production_environment !== false,
        payload: body.payload ?? {},
        statuses: [],
      };
      deployments.push(deployment);
      used++;
      send(response, 201, { id: deployment.id, sha: deployment.ref, payload: deployment.payload });
      return 201;
    }
    if (parts[4] === 'deployments' && parts.length === 5 && method === 'GET') {
      const sha = address.searchParams.get('sha');
      const environment = address.searchParams.get('environment');
      const found = deployments
        .filter((d) => d.repo === repo && (!sha || d.ref === sha))
        .filter((d) => !environment || d.environment === environment)
        .reverse()
        .map((d) => ({ id: d.id, sha: d.ref, environment: d.environment, payload: d.payload }));
      return sendConditional(request, response, found);
    }
    if (parts[4] === 'deployments' && parts[6] === 'statuses' && method === 'POST') {
      const deployment = deployments.find((d) => d.repo === repo && d.id === Number(parts[5]));
      if (!deployment) {
        send(response, 404, { message: 'Not Found' });
        return 404;
      }
      const body = await json();
      deployment.statuses.push({
        state: String(body.state),
        description: String(body.description ?? ''),
        ...(typeof body.environment_url === 'string'
          ? { environmentUrl: body.environment_url }
          : {}),
        ...(typeof body.log_url === 'string' ? { logUrl: body.log_url } : {}),
      });
      used++;
      send(response, 201, { state: body.state });
      return 201;
    }
    if (parts[4] === 'check-runs' && parts.length === 5 && method === 'POST') {
      const body = await json();
      const run: FakeCheckRun = {
        id: checkRuns.length + 1,
        repo,
        headSha: String(body.head_sha),
        name: String(body.name),
        externalId: typeof body.external_id === 'string' ? body.external_id : null,
        writes: [body],
      };
      checkRuns.push(run);
      used++;
      send(response, 201, { id: run.id, name: run.name, external_id: run.externalId });
      return 201;
    }
    if (parts[4] === 'check-runs' && parts.length === 6 && method === 'PATCH') {
      const run = checkRuns.find((r) => r.repo === repo && r.id === Number(parts[5]));
      if (!run) {
        send(response, 404, { message: 'Not Found' });
        return 404;
      }
      run.writes.push(await json());
      used++;
      send(response, 200, { id: run.id });
      return 200;
    }
    // /repos/{owner}/{repo}/commits/{ref}/check-runs
    if (parts[4] === 'commits' && parts[6] === 'check-runs' && method === 'GET') {
      const name = address.searchParams.get('check_name');
      const runs = checkRuns
        .filter((r) => r.repo === repo && r.headSha === parts[5] && (!name || r.name === name))
        .map((r) => ({ id: r.id, name: r.name, external_id: r.externalId }));
      return sendConditional(request, response, { total_count: runs.length, check_runs: runs });
    }
    return undefined;
  };

  const server = createServer((request, response) => {
    const at = Date.now();
    void handle(request, response).then(
      (status) =>
        requests.push({
          method: request.method ?? '',
          path: request.url ?? '',
          status,
          at,
        }),
      (error: unknown) => {
        send(response, 500, { message: String(error) });
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  url = `http://127.0.0.1:${port}`;
  return {
    url,
    deployments,
    checkRuns,
    statuses,
    heads,
    pulls,
    branchErrors,
    branchRequests,
    requests,
    statusDelays,
    rateLimits,
    rateLimitUsed: () => used,
    get app() {
      return state.app;
    },
    set app(app: FakeApp | undefined) {
      state.app = app;
    },
    issuedTokens,
    statusesOf: (sha) => statuses.filter((status) => status.sha === sha),
    hookDeliveries,
    deliver: (event, payload, target, guid) =>
      hookSend(
        event,
        typeof payload === 'string' ? payload : JSON.stringify(payload),
        target,
        guid ?? randomUUID(),
        guid !== undefined,
      ),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
