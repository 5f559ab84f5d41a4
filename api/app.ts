/**
 * The Koa application: REST API at /api/v1 (paths of runboat), server-sent build events, the
 * GitHub webhook, health, readiness and metrics. Reads come from the build index (an informer
 * cache); writes go to Temporal through the build commands. It never changes Kubernetes.
 * How the API fits in: docs/architecture.md; its failure answers: docs/failures.md.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Readable } from 'node:stream';
import { PassThrough } from 'node:stream';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { isGrpcServiceError } from '@temporalio/client';
import Koa from 'koa';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { buildStatuses, type BuildStatus } from '../domain/build.js';
import type { BuildView } from '../domain/build-view.js';
import { LogUnavailableError } from '../lib/build-logs.js';
import { BuildNotFoundError, ClientError, UnauthorizedError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { RepoConfig } from '../lib/settings.js';
import type { BuildFilter, BuildIndex } from './build-index.js';
import { matchesSearch, pageOf, parseSearch } from './build-search.js';
import type { BuildCommands, Transition } from './commands.js';
import type { Timelines } from './timeline.js';
import { openApiDocument } from './openapi-document.js';
import {
  buildFilterQuery,
  buildListQuery,
  buildLogQuery,
  initLogQuery,
  parseBody,
  parseQuery,
  triggerBranchBody,
  triggerPrBody,
} from './schemas.js';
import { countStatuses, SummaryFeed } from './fleet-summary.js';
import { STARTING_ANSWER } from './starting.js';
import { adminAuth, createSessions, type RequestAuth, type Sessions } from './session.js';
import type { WorkerStatus } from './worker-status.js';

/**
 * Where the build logs come from. A log that cannot be read rejects with a
 * {@link LogUnavailableError}, answered with its status (502/503) and reason.
 */
export interface LogSource {
  /** The kept tail of the last init Job's log, or undefined when none was kept. */
  initLog(name: string): Promise<string | undefined>;
  /** The kept tail of the last cleanup Job's log, or undefined when none was kept. */
  cleanupLog(name: string): Promise<string | undefined>;
  /** The kept tail of the last image build's log, or undefined when none was kept. */
  imageBuildLog(name: string): Promise<string | undefined>;
  /** The running build's log, streamed; destroying the stream ends its request upstream. */
  buildLog(name: string, options: { follow: boolean; tail: number }): Promise<Readable>;
  /** The log of the init Job's pod while it runs, streamed (the build page follows it). */
  liveInitLog?(name: string, options: { follow: boolean; tail: number }): Promise<Readable>;
}

/** Runs a log route; a log that cannot be read answers its status with the reason. */
async function answeringLogErrors(ctx: Koa.Context, route: () => Promise<void>): Promise<void> {
  try {
    await route();
  } catch (error) {
    if (!(error instanceof LogUnavailableError)) throw error;
    ctx.status = error.status;
    ctx.body = { error: error.message };
    if (error.status === 503) ctx.set('retry-after', '5');
  }
}

/**
 * Answers a streamed log. A client that goes away ends the stream, and with it the request to
 * Kubernetes: an abandoned follow must not hold a connection open upstream. A shutdown ends the
 * answer cleanly, so that a followed log does not hold it.
 */
function sendLogStream(ctx: Koa.Context, stream: Readable, stopping: AbortSignal | undefined) {
  const end = () => stream.destroy();
  if (ctx.req.socket.destroyed) end();
  ctx.res.once('close', end);
  ctx.req.socket.setTimeout(0);
  // Through a pass-through that a shutdown can end (the source's errors still reach the response).
  const body = new PassThrough();
  stream.on('error', (error) => body.destroy(error));
  stream.pipe(body);
  endOnShutdown(ctx, stopping, () => {
    stream.unpipe(body);
    end();
    body.end();
  });
  ctx.type = 'text/plain; charset=utf-8';
  ctx.body = body;
}

/** Settings the API reads. */
export interface ApiSettings {
  repos: () => readonly RepoConfig[];
  maxStarted: number;
  maxDeployed: number;
  /** The global init limit, shown as the init slots of the fleet summary. */
  maxInitializing?: number;
  admin: { user?: string | undefined; password?: string | undefined; token?: string | undefined };
  /** Whether anyone may start and stop builds; reset and undeploy always need the admin. */
  publicStartStop: boolean;
  /** Bounds of the build events streams (docs/operations.md, "Build event streams"). */
  events?: Partial<EventStreamLimits>;
}

/** Bounds of the build events streams (server-sent events). */
export interface EventStreamLimits {
  /** Streams open at once, all clients together. */
  maxStreams: number;
  /** Streams open at once from one client address. */
  maxStreamsPerClient: number;
  /** Bytes a stream may hold for a client that does not read before it is dropped. */
  maxBufferBytes: number;
  /** How long a stream may hold unsent bytes (its client reads none) before it is dropped. */
  stallMs: number;
  /** Interval of the heartbeat comment lines. */
  heartbeatMs: number;
}

/** The defaults of {@link EventStreamLimits} (the settings RUNBOAT_EVENTS_*). */
export const defaultEventStreamLimits: EventStreamLimits = {
  maxStreams: 1000,
  maxStreamsPerClient: 20,
  maxBufferBytes: 16 * 1024 * 1024,
  stallMs: 60_000,
  heartbeatMs: 15_000,
};

/** Paths answered before the build index is loaded: health, readiness and metrics. */
const ANSWERED_WHILE_LOADING = new Set(['/healthz', '/readyz', '/metrics']);

/** Builds per write of a build events stream's first replay of every build. */
const REPLAY_CHUNK = 256;

/** gRPC codes of a Temporal that cannot be reached or did not answer in time. */
const GRPC_UNAVAILABLE = 14;
const GRPC_DEADLINE_EXCEEDED = 4;

/** An HTTP error a Koa middleware threw for its client to read (http-errors, `expose`). */
function exposedHttpError(error: unknown): error is Error & { status: number } {
  const { status, expose } = error as { status?: unknown; expose?: unknown };
  return (
    error instanceof Error &&
    expose === true &&
    typeof status === 'number' &&
    status >= 400 &&
    status < 500
  );
}

/** Whether an error (or one of its causes) says that Temporal cannot be reached. */
export function temporalUnreachable(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; current && depth < 8; depth++) {
    if (
      isGrpcServiceError(current) &&
      (current.code === GRPC_UNAVAILABLE || current.code === GRPC_DEADLINE_EXCEEDED)
    ) {
      return true;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** What `createApp` needs. */
export interface AppDeps {
  index: Pick<BuildIndex, 'list' | 'all' | 'get' | 'find' | 'on' | 'off' | 'isSynced'> &
    Partial<Pick<BuildIndex, 'counts'>>;
  commands: BuildCommands;
  logs: LogSource;
  /** Timelines of builds from their workflows' histories (GET /api/v1/builds/{name}/timeline). */
  timelines?: Pick<Timelines, 'timeline'>;
  settings: ApiSettings;
  /** Whether workers poll the builds and init task queues (for /api/v1/status). */
  workers?: () => Promise<WorkerStatus>;
  /** The fleet summary, shared with the UI; default: one of the app's own, from the settings. */
  summary?: SummaryFeed;
  /** Whether Temporal answers (for /readyz). */
  temporalReady: () => Promise<boolean>;
  logger: Logger;
  metrics: Registry;
  /** Signs the UI's admin sessions; without it, a random key (sessions end with the process). */
  sessions?: Sessions;
  /** Extra middleware mounted before the API routes (webhook, UI). */
  extra?: Koa.Middleware[];
  /**
   * Aborted when the process begins to shut down: /readyz answers 503 and long streams (build
   * events, followed logs) end (docs/operations.md, "Shutdown").
   */
  stopping?: AbortSignal;
}

/** Runs `end` when the process begins to shut down (at once if it has), until the response closes. */
function endOnShutdown(ctx: Koa.Context, stopping: AbortSignal | undefined, end: () => void): void {
  if (!stopping) return;
  if (stopping.aborted) {
    queueMicrotask(end);
    return;
  }
  stopping.addEventListener('abort', end, { once: true });
  ctx.res.once('close', () => stopping.removeEventListener('abort', end));
}

/**
 * The route label of a path no router matched: the webhook and the UI's static files are answered
 * by middleware of their own (`extra`), without a router pattern.
 */
export function extraRoute(path: string): string {
  if (path === '/webhooks/github') return '/webhooks/github';
  if (path.startsWith('/static/')) return '/static/*';
  return 'unmatched';
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Constant-time equality of two secrets (digests first, so lengths do not leak). */
export function secretEquals(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** Whether the request carries the admin credential (HTTP Basic or bearer token). */
export function isAdmin(header: string | undefined, admin: ApiSettings['admin']): boolean {
  if (!header) return false;
  const [scheme, value = ''] = header.split(' ', 2);
  if (scheme?.toLowerCase() === 'bearer' && admin.token) return secretEquals(value, admin.token);
  if (scheme?.toLowerCase() === 'basic' && admin.user && admin.password) {
    const decoded = Buffer.from(value, 'base64').toString();
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    const userOk = secretEquals(decoded.slice(0, colon), admin.user);
    const passwordOk = secretEquals(decoded.slice(colon + 1), admin.password);
    return userOk && passwordOk;
  }
  return false;
}

/** The build filters of a query (api/schemas.ts), or a 400 naming the bad one. */
function parseFilter(query: Koa.Context['query']): BuildFilter {
  const filter = parseQuery(buildFilterQuery, query);
  return {
    repo: filter.repo,
    targetBranch: filter.target_branch,
    branch: filter.branch,
    pr: filter.pr,
    status: filter.status,
    name: filter.name,
  };
}

/**
 * Parses the small JSON body of the API's own POSTs (@koa/bodyparser) into `ctx.request.body`,
 * whatever its content type (scripts often send none); a bad one is a 400, a big one a 413.
 */
const jsonBody = bodyParser({
  enableTypes: ['json'],
  detectJSON: () => true,
  jsonLimit: '64kb',
  onError(error: Error & { status?: number }) {
    if (error.status === 413) throw new ClientError('body too large', 413);
    throw new ClientError('body: not valid JSON');
  },
});

/**
 * The JSON of a build as UTF-8 bytes, made once per view: the index makes a new view for every
 * change, so a view's JSON never changes, and a list or an event stream of thousands of builds
 * copies bytes already made instead of serialising (and encoding) every build again.
 */
const viewJsonCache = new WeakMap<BuildView, Buffer>();
function viewJson(build: BuildView): Buffer {
  let json = viewJsonCache.get(build);
  if (json === undefined) {
    json = Buffer.from(JSON.stringify(build));
    viewJsonCache.set(build, json);
  }
  return json;
}

/** `parts` joined by `separator`, between `open` and `close`, copied once into one buffer. */
function joinBytes(open: Buffer, parts: readonly Buffer[], separator: Buffer, close: Buffer) {
  let length = open.length + close.length + Math.max(0, parts.length - 1) * separator.length;
  for (const part of parts) length += part.length;
  const out = Buffer.allocUnsafe(length);
  let at = open.copy(out, 0);
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) at += separator.copy(out, at);
    at += parts[i]!.copy(out, at);
  }
  close.copy(out, at);
  return out;
}

const OPEN_LIST = Buffer.from('[');
const COMMA = Buffer.from(',');
const CLOSE_LIST = Buffer.from(']');
/** A build event of the events stream: `event: <name>`, then the build's JSON as its data. */
const EVENT_START = {
  upd: Buffer.from('event: upd\ndata: '),
  del: Buffer.from('event: del\ndata: '),
};
const EVENT_END = Buffer.from('\n\n');
const REPLAY_SEPARATOR = Buffer.from('\n\nevent: upd\ndata: ');

/**
 * A list of builds as the JSON body of an answer, in bytes: a list of 1,000 builds is one copy of
 * their kept JSON, where joining strings and encoding the result took ten times as long.
 */
function sendBuilds(ctx: Koa.Context, builds: readonly BuildView[]): void {
  ctx.type = 'application/json';
  ctx.body = joinBytes(OPEN_LIST, builds.map(viewJson), COMMA, CLOSE_LIST);
}

/** Creates the application. */
export function createApp(deps: AppDeps): Koa {
  const { index, commands, settings } = deps;
  const log = deps.logger.child({ component: 'api' });
  const app = new Koa();
  app.proxy = true;
  app.on('error', (error: NodeJS.ErrnoException) => {
    // A client closing a stream (a browser tab left open on build events) is not a failure.
    if (error.code === 'ERR_STREAM_PREMATURE_CLOSE' || error.code === 'ECONNRESET') return;
    log.error({ err: error }, 'response failed');
  });

  const requests = new Counter({
    name: 'runboat_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [deps.metrics],
  });
  const durations = new Histogram({
    name: 'runboat_http_request_duration_seconds',
    help: 'HTTP request duration by route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [deps.metrics],
  });

  // Errors: a ClientError answers its status with its message; anything else is a logged 500.
  app.use(async (ctx, next) => {
    const started = performance.now();
    ctx.state.requestId = ctx.get('x-request-id') || randomUUID();
    ctx.set('x-request-id', String(ctx.state.requestId));
    try {
      await next();
    } catch (error) {
      if (error instanceof ClientError) {
        ctx.status = error.status;
        ctx.body = { error: error.message };
        // Not Basic: a browser asked for Basic credentials keeps sending them, cross-site forms
        // included. People log in on /login; scripts send a bearer token (or Basic unasked).
        if (error instanceof UnauthorizedError)
          ctx.set('www-authenticate', 'Bearer realm="runboat"');
      } else if (exposedHttpError(error)) {
        // What a library middleware refused (the static files: a path leaving their directory).
        ctx.status = error.status;
        ctx.body = { error: error.message };
      } else if (temporalUnreachable(error)) {
        log.warn(
          { err: error, request: ctx.state.requestId, path: ctx.path },
          'Temporal unreachable',
        );
        ctx.status = 503;
        ctx.set('retry-after', '5');
        ctx.body = {
          error:
            'Temporal does not answer: builds cannot be asked for or changed now; try again later',
          request: ctx.state.requestId,
        };
      } else {
        log.error({ err: error, request: ctx.state.requestId, path: ctx.path }, 'request failed');
        ctx.status = 500;
        ctx.body = { error: 'internal error', request: ctx.state.requestId };
      }
    } finally {
      // The route pattern, never the raw path: a label per URL would grow without bound.
      const matched = (ctx as Koa.Context & { _matchedRoute?: string | RegExp })._matchedRoute;
      const route = matched === undefined ? extraRoute(ctx.path) : String(matched);
      requests.inc({ method: ctx.method, route, status: String(ctx.status) });
      durations.observe({ method: ctx.method, route }, (performance.now() - started) / 1000);
    }
  });

  // Until the index holds every build (the first list, a few seconds after a start): a list
  // would miss builds, and a webhook could not find the builds of a deleted branch. The process
  // answers meanwhile, so that a restart is seen at once (docs/operations.md, "The API at scale").
  app.use((ctx, next) => {
    if (index.isSynced || ANSWERED_WHILE_LOADING.has(ctx.path)) return next();
    ctx.status = 503;
    ctx.set('retry-after', '1');
    ctx.body = STARTING_ANSWER;
  });
  app.use(
    adminAuth({
      sessions:
        deps.sessions ?? createSessions({ ttlMs: 12 * 3600_000, baseUrl: 'http://127.0.0.1:8000' }),
      isAdmin: (header) => isAdmin(header, settings.admin),
      exempt: (path) => path.startsWith('/webhooks/'),
    }),
  );
  for (const middleware of deps.extra ?? []) app.use(middleware);

  const router = new Router();
  // One computation of the fleet summary for every page open (docs/ui.md, "Fleet summary").
  const summary =
    deps.summary ??
    new SummaryFeed(index, {
      maxStarted: settings.maxStarted,
      maxDeployed: settings.maxDeployed,
      maxInitializing: settings.maxInitializing,
    });

  const requireAdmin = (ctx: Koa.Context) => {
    if (!(ctx.state.auth as RequestAuth | undefined)?.admin) {
      throw new UnauthorizedError();
    }
  };
  const buildOr404 = (name: string): BuildView => {
    const build = index.get(name);
    if (build) return build;
    const pending = index.all({ name })[0];
    // Failed before its Deployment existed: its workflow serves reset and undeploy.
    if (pending?.status === 'failed') return pending;
    // A queued build's workflow waits for a worker: an update sent now would wait as long.
    if (pending) {
      throw new ClientError(
        `build ${name} is queued: it is not deployed yet (it waits for a worker)`,
        409,
      );
    }
    throw new BuildNotFoundError(name);
  };

  router.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });
  router.get('/readyz', async (ctx) => {
    if (deps.stopping?.aborted) {
      // A load balancer stops sending here while the requests in flight are answered.
      ctx.status = 503;
      ctx.body = { ready: false, stopping: true };
      return;
    }
    const cache = index.isSynced;
    const temporal = await deps.temporalReady().catch(() => false);
    ctx.status = cache && temporal ? 200 : 503;
    ctx.body = { ready: cache && temporal, cache, temporal };
  });
  router.get('/metrics', async (ctx) => {
    ctx.type = deps.metrics.contentType;
    ctx.body = await deps.metrics.metrics();
  });

  const openApi = openApiDocument({ publicStartStop: settings.publicStartStop });
  router.get('/api/v1/openapi.json', (ctx) => {
    ctx.body = openApi;
  });
  router.get('/api/v1/status', async (ctx) => {
    // Counts kept by the index as builds change: no pass over 10,000 builds per request.
    const kept = index.counts?.() ?? countStatuses(index.all());
    const counts = Object.fromEntries(
      buildStatuses.map((status) => [status, kept.get(status) ?? 0]),
    ) as Record<BuildStatus, number>;
    let total = 0;
    for (const count of kept.values()) total += count;
    ctx.body = {
      deployed: total - counts.queued,
      counts,
      limits: {
        max_started: settings.maxStarted,
        max_deployed: settings.maxDeployed,
        ...(settings.maxInitializing === undefined
          ? {}
          : { max_initializing: settings.maxInitializing }),
      },
      summary: summary.figures(),
      ...(deps.workers ? { workers: await deps.workers() } : {}),
    };
  });
  router.get('/api/v1/repos', (ctx) => {
    ctx.body = settings.repos().map((entry) => ({
      repo: entry.repo,
      branch: entry.branch,
      sticky: entry.sticky,
    }));
  });
  router.get('/api/v1/builds', (ctx) => {
    // Search and pages (docs/ui.md, "Search" and "Pages"): without per_page, every build.
    const { q, per_page: perPage, page: asked = 1 } = parseQuery(buildListQuery, ctx.query);
    const query = parseSearch(q);
    const filtered = index.all(parseFilter(ctx.query));
    const matching =
      query.length === 0 ? filtered : filtered.filter((b) => matchesSearch(b, query));
    if (perPage === undefined) {
      ctx.set('x-total-count', String(matching.length));
      sendBuilds(ctx, matching);
      return;
    }
    const page = pageOf(matching, asked, perPage);
    ctx.set('x-total-count', String(page.total));
    const link = (n: number, rel: string) => {
      const url = new URL(ctx.originalUrl, 'http://x');
      url.searchParams.set('page', String(n));
      return `<${url.pathname}${url.search}>; rel="${rel}"`;
    };
    const links = [
      ...(page.page > 1 ? [link(page.page - 1, 'prev')] : []),
      ...(page.page < page.pages ? [link(page.page + 1, 'next')] : []),
      link(page.pages, 'last'),
    ];
    ctx.set('link', links.join(', '));
    sendBuilds(ctx, page.items);
  });
  router.delete('/api/v1/builds', async (ctx) => {
    requireAdmin(ctx);
    const filter = parseFilter(ctx.query);
    if (Object.values(filter).every((value) => value === undefined)) {
      throw new ClientError('give at least one filter (repo, target_branch, branch, pr, status)');
    }
    const names: string[] = [];
    for (const build of index.list(filter)) {
      await commands.transition(build.name, 'undeploy').then(
        () => names.push(build.name),
        (error: unknown) => {
          if (!(error instanceof ClientError)) throw error;
        },
      );
    }
    ctx.status = 202;
    ctx.body = { undeploying: names };
  });
  // The credential before the body: an anonymous request is a 401, whatever it sends.
  const adminOnly = (ctx: Koa.Context, next: Koa.Next) => {
    requireAdmin(ctx);
    return next();
  };
  router.post('/api/v1/builds/trigger/branch', adminOnly, jsonBody, async (ctx) => {
    const { repo, branch, sha: given } = parseBody(triggerBranchBody, ctx.request.body);
    const sha = given ?? (await commands.branchHead(repo, branch));
    if (!sha) throw new ClientError(`${repo} ${branch}: branch head not found`, 404);
    const name = await commands.trigger(
      { repo, targetBranch: branch, pr: null, gitCommit: sha },
      { kind: 'api', id: String(ctx.state.requestId) },
    );
    ctx.status = 202;
    ctx.body = { build: name };
  });
  router.post('/api/v1/builds/trigger/pr', adminOnly, jsonBody, async (ctx) => {
    const body = parseBody(triggerPrBody, ctx.request.body);
    const name = await commands.trigger(
      {
        repo: body.repo,
        targetBranch: body.target_branch,
        pr: body.pr,
        gitCommit: body.sha,
        // The repo of the PR's head commit; unknown, the PR is treated as a fork (no secrets).
        headRepo: body.head_repo ?? null,
      },
      { kind: 'api', id: String(ctx.state.requestId) },
    );
    ctx.status = 202;
    ctx.body = { build: name };
  });
  const limits = { ...defaultEventStreamLimits, ...settings.events };
  const openStreams = new Map<string, number>();
  let streamsOpen = 0;
  new Gauge({
    name: 'runboat_build_event_streams',
    help: 'Build event streams (server-sent events) open now',
    registers: [deps.metrics],
    collect() {
      this.set(streamsOpen);
    },
  });
  const streamsRefused = new Counter({
    name: 'runboat_build_event_streams_refused_total',
    help: 'Build event streams refused (cap) or dropped (a client that does not read)',
    labelNames: ['reason'] as const,
    registers: [deps.metrics],
  });
  router.get('/api/v1/build-events', (ctx) => {
    // The caps (docs/operations.md, "Build event streams"): a page left open in many tabs, or a
    // client opening streams in a loop, cannot take every socket of the API.
    const client = ctx.ip;
    const mine = openStreams.get(client) ?? 0;
    if (streamsOpen >= limits.maxStreams || mine >= limits.maxStreamsPerClient) {
      const total = streamsOpen >= limits.maxStreams;
      streamsRefused.inc({ reason: total ? 'total' : 'client' });
      ctx.status = 503;
      ctx.set('retry-after', '10');
      ctx.body = {
        error: total
          ? `too many build event streams open (${limits.maxStreams}): try again later`
          : `too many build event streams open from ${client} (${limits.maxStreamsPerClient}): close some pages, or try again later`,
      };
      return;
    }
    streamsOpen++;
    openStreams.set(client, mine + 1);
    const stream = new PassThrough();
    ctx.req.socket.setTimeout(0);
    ctx.req.socket.setNoDelay(true);
    ctx.set({ 'cache-control': 'no-cache', connection: 'keep-alive' });
    ctx.type = 'text/event-stream';
    ctx.body = stream;
    // Bytes held for this client: a client that does not read is dropped once it holds too
    // many, or holds some for too long, never buffered without end.
    let pendingSince: number | undefined;
    const drop = (reason: string) => {
      streamsRefused.inc({ reason: 'slow' });
      log.warn({ client, reason }, 'build events client dropped: it does not read');
      stream.destroy();
      ctx.res.destroy();
    };
    const held = () => stream.writableLength + stream.readableLength + ctx.res.writableLength;
    const write = (text: string | Buffer) => {
      if (stream.destroyed || stream.writableEnded) return;
      // What is still unsent of the writes before: the last one is always in flight.
      const unsent = held();
      if (unsent === 0) pendingSince = undefined;
      else pendingSince ??= Date.now();
      if (unsent + text.length > limits.maxBufferBytes) {
        drop(`${unsent + text.length} bytes unsent`);
      } else if (pendingSince !== undefined && Date.now() - pendingSince > limits.stallMs) {
        drop(`bytes unsent for ${Math.round((Date.now() - pendingSince) / 1000)} s`);
      } else {
        stream.write(text);
      }
    };
    ctx.res.on('drain', () => {
      if (held() === 0) pendingSince = undefined;
    });
    const event = (name: 'upd' | 'del', build: BuildView) =>
      Buffer.concat([EVENT_START[name], viewJson(build), EVENT_END]);
    const send = (name: 'upd' | 'del') => (build: BuildView) => write(event(name, build));
    const onUpd = send('upd');
    const onDel = send('del');
    const onSummary = (figures: unknown) =>
      write(`event: summary\ndata: ${JSON.stringify(figures)}\n\n`);
    index.on('upd', onUpd);
    index.on('del', onDel);
    summary.on('summary', onSummary);
    write('retry: 2000\n\n');
    // Every build once, in writes of a few hundred events rather than one write per build.
    const builds = index.all();
    for (let start = 0; start < builds.length; start += REPLAY_CHUNK) {
      write(
        joinBytes(
          EVENT_START.upd,
          builds.slice(start, start + REPLAY_CHUNK).map(viewJson),
          REPLAY_SEPARATOR,
          EVENT_END,
        ),
      );
    }
    onSummary(summary.figures());
    // A comment line: proxies and browsers see the stream alive between build events.
    const heartbeat = setInterval(() => write(': heartbeat\n\n'), limits.heartbeatMs);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      index.off('upd', onUpd);
      index.off('del', onDel);
      summary.off('summary', onSummary);
      streamsOpen--;
      const left = (openStreams.get(client) ?? 1) - 1;
      if (left > 0) openStreams.set(client, left);
      else openStreams.delete(client);
    };
    ctx.req.on('close', close);
    ctx.res.on('close', close);
    stream.on('error', close);
    stream.on('close', close);
    // The client reconnects (to another replica) after `retry`.
    endOnShutdown(ctx, deps.stopping, () => stream.end());
  });
  router.get('/api/v1/builds/:name', async (ctx) => {
    const name = ctx.params.name ?? '';
    ctx.body = (await index.find(name)) ?? buildOr404(name);
  });
  const liveInit = (ctx: Koa.Context, build: BuildView) =>
    parseQuery(initLogQuery, ctx.query).follow === true && build.status === 'initializing';
  router.get('/api/v1/builds/:name/timeline', async (ctx) => {
    const name = ctx.params.name ?? '';
    // Not only the builds of the index: an undeployed build keeps its history for a while.
    if (!deps.timelines || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) {
      throw new BuildNotFoundError(name);
    }
    ctx.set('cache-control', 'no-store');
    ctx.body = await deps.timelines.timeline(name);
  });
  // A known build whose Job has not kept a log yet is a 409 (its state), not the 404 of a name
  // that matches no build.
  const keptLogs = {
    init: (name: string) => deps.logs.initLog(name),
    cleanup: (name: string) => deps.logs.cleanupLog(name),
    build: (name: string) => deps.logs.imageBuildLog(name),
  } as const;
  for (const kind of ['init', 'cleanup', 'build'] as const) {
    router.get(`/api/v1/builds/:name/${kind}-log`, async (ctx) => {
      const build = buildOr404(ctx.params.name ?? '');
      // `?follow=true` while the init runs: its pod's log, live (the build page reads it so);
      // before and after, the kept log as always.
      const live = kind === 'init' && liveInit(ctx, build);
      await answeringLogErrors(ctx, async () => {
        if (live && deps.logs.liveInitLog) {
          const stream = await deps.logs.liveInitLog(build.name, { follow: true, tail: 5000 });
          ctx.set('x-runboat-log', 'live');
          sendLogStream(ctx, stream, deps.stopping);
          return;
        }
        const text = await keptLogs[kind](build.name);
        if (text === undefined) {
          throw new ClientError(`build ${build.name} has no ${kind} log yet`, 409);
        }
        ctx.type = 'text/plain; charset=utf-8';
        ctx.body = text;
      });
    });
  }
  router.get('/api/v1/builds/:name/log', async (ctx) => {
    const build = buildOr404(ctx.params.name ?? '');
    const { tail = 500, follow = false } = parseQuery(buildLogQuery, ctx.query);
    if (build.status !== 'started' && build.status !== 'starting') {
      throw new ClientError(`build ${build.name} is ${build.status}: it has no running pod`, 409);
    }
    await answeringLogErrors(ctx, async () => {
      sendLogStream(ctx, await deps.logs.buildLog(build.name, { follow, tail }), deps.stopping);
    });
  });
  for (const transition of ['start', 'stop', 'reset'] as const satisfies Transition[]) {
    router.post(`/api/v1/builds/:name/${transition}`, async (ctx) => {
      // Public start and stop (runboat's testers' way) never open reset: it drops the database.
      if (!settings.publicStartStop || transition === 'reset') requireAdmin(ctx);
      const build = buildOr404(ctx.params.name ?? '');
      await commands.transition(build.name, transition);
      ctx.status = 202;
      ctx.body = index.get(build.name) ?? build;
    });
  }
  router.delete('/api/v1/builds/:name', async (ctx) => {
    requireAdmin(ctx);
    const build = buildOr404(ctx.params.name ?? '');
    await commands.transition(build.name, 'undeploy');
    ctx.status = 202;
    ctx.body = { undeploying: [build.name] };
  });

  app.use(router.routes());
  app.use(router.allowedMethods());
  app.use((ctx) => {
    // The UI answers a browser's unknown page with its HTML page (api/ui.ts).
    ctx.state.noRoute = true;
    ctx.status = 404;
    ctx.body = { error: `no such path: ${ctx.method} ${ctx.path}` };
  });
  return app;
}
