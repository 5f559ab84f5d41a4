/**
 * The web UI: builds by repo, then by branch and pull request, as cards with their status, links
 * and start/stop/reset buttons; a page per build; and `/builds/<name>?live`, which wakes a stopped
 * build and holds the visitor until it is ready. Pages are rendered on the server from the build
 * index and kept live in the browser by `api/ui/static/app.js` from the build events stream. The
 * buttons post to the REST API, so the UI holds no rule of its own about who may do what. Every
 * page carries a banner when no worker polls the builds or init task queue (the warnings of
 * `GET /api/v1/status`, which app.js reads again while the page is open).
 */
import type { ServerResponse } from 'node:http';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type Koa from 'koa';
import serveStatic from 'koa-static';
import nunjucks from 'nunjucks';
import { buildStatuses, type BuildStatus } from '../domain/build.js';
import { pathSegments, type BuildView } from '../domain/build-view.js';
import { ClientError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { secretEquals, type ApiSettings } from './app.js';
import type { BuildIndex } from './build-index.js';
import { matchesSearch, pageOf, parseSearch, SEARCH_MAX, type Page } from './build-search.js';
import type { BuildCommands } from './commands.js';
import type { SummaryFeed } from './fleet-summary.js';
import type { RequestAuth, Sessions } from './session.js';
import type { WorkerStatus } from './worker-status.js';

/** What {@link webUi} needs. */
export interface WebUiDeps {
  index: Pick<BuildIndex, 'all' | 'get' | 'find'>;
  /** Used for one thing only: starting a stopped build opened with `?live`. */
  commands: Pick<BuildCommands, 'transition'>;
  /** The configured repo patterns, shown on the home page. */
  repos: () => readonly { repo: string; branch: string; sticky: boolean }[];
  /**
   * Whether anyone may start and stop builds (as in the API). When false, `?live` on a stopped
   * build does not start it: the visitor gets the build page and its start button, which asks
   * for the admin login.
   */
  publicStartStop: boolean;
  /**
   * The admin login (`/login`): the credentials it checks and the signer of its sessions.
   * Without it, the login page says that no admin login is configured.
   */
  login?: { sessions: Sessions; admin: ApiSettings['admin'] };
  /** The fleet summary on every page (the API's feed); without it, no summary. */
  summary?: Pick<SummaryFeed, 'figures'>;
  /** Whether workers poll the task queues; its warnings become the banner of every page. */
  workers?: () => Promise<Pick<WorkerStatus, 'warnings'>>;
  /** The page of a build's workflow in the Temporal UI (RUNBOAT_TEMPORAL_UI_URL), or null. */
  workflowLink?: (name: string) => string | null;
  logger: Logger;
}

/** The buttons of a card, in display order. */
export const cardActions = ['start', 'stop', 'reset'] as const;

/** A button of a card. */
export type CardAction = (typeof cardActions)[number];

/** Whether a card offers this action for this status (the API still decides). */
export function canDo(action: CardAction, status: BuildStatus): boolean {
  // Not deployed yet: its workflow takes no request until a worker runs it.
  if (status === 'queued') return false;
  switch (action) {
    case 'start':
      return status === 'stopped';
    case 'stop':
      return status === 'started' || status === 'starting';
    case 'reset':
      // The build workflow refuses to reset a build whose cleanup already began.
      return status !== 'undeploying' && status !== 'cleanup-failed';
  }
}

const uiDir = fileURLToPath(new URL('./ui/', import.meta.url));
const templatesDir = join(uiDir, 'templates');
const staticDir = resolve(uiDir, 'static');

const contentTypes: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

// Values on these pages come from branch names and commit annotations: escaping is the first
// defence, and this policy (no inline script, nothing from elsewhere) the second.
const securityHeaders = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
};

/** `2024-05-01T10:20:30Z` → `2024-05-01 10:20 UTC` (app.js formats alike). */
function when(iso: string | null | undefined): string {
  return iso ? `${iso.slice(0, 16).replace('T', ' ')} UTC` : 'never';
}

/**
 * How long ago an instant was, as cards show it ("just now", "3 min ago", "2 h ago",
 * "5 days ago", then the date); app.js computes the same and refreshes it every half minute.
 */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return iso;
  const minutes = Math.floor((now - time) / 60_000);
  if (minutes < 1) return 'just now';
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.floor(hours / 24);
  if (days < 60) return days === 1 ? '1 day ago' : `${days} days ago`;
  return iso.slice(0, 10);
}

/** Rows of a repo page, builds of a row shown on it, builds of a page of one row or of a search. */
export const ROWS_PER_PAGE = 40;
export const CARDS_PER_ROW = 6;
export const BUILDS_PER_PAGE = 60;

/** The page links of a paged list: the same URL with another `page`. */
interface Pager {
  page: number;
  pages: number;
  total: number;
  prev: string | null;
  next: string | null;
}

function pagerOf(page: Page<unknown>, url: string): Pager {
  const href = (n: number) => {
    const target = new URL(url, 'http://x');
    if (n === 1) target.searchParams.delete('page');
    else target.searchParams.set('page', String(n));
    return `${target.pathname}${target.search}`;
  };
  return {
    page: page.page,
    pages: page.pages,
    total: page.total,
    prev: page.page > 1 ? href(page.page - 1) : null,
    next: page.page < page.pages ? href(page.page + 1) : null,
  };
}

/** A positive integer of the query string; anything else is the default (a page never fails). */
function pageParam(value: unknown): number {
  return typeof value === 'string' && /^[1-9][0-9]{0,6}$/.test(value) ? Number(value) : 1;
}

/** Where a card's "live" link goes: a stopped build is woken through `?live` (app.js alike). */
function liveHref(build: BuildView): string {
  return build.status === 'stopped' ? `/builds/${build.name}?live` : build.deploy_link;
}

/**
 * Why `?live` cannot open a build now. A GET never changes a build, except the start of a stopped
 * build where anyone may start builds (README, "The web UI").
 */
function liveNote(build: BuildView, publicStartStop: boolean, admin: boolean): string {
  switch (build.status) {
    case 'stopped':
      if (publicStartStop) return 'This build is stopped.';
      return admin
        ? 'This build is stopped: start it with its start button, then open it.'
        : 'This build is stopped. Starting it needs the admin login: log in, then use its start button.';
    case 'queued':
      return 'This build is queued: no worker has deployed it yet. Open it again once it is ready.';
    case 'todo':
    case 'building':
    case 'initializing':
      return 'This build is still being initialized: open it again once it is ready.';
    case 'failed':
      return 'This build failed to initialize, so it cannot be opened. Reset it to try again.';
    case 'stopping':
      return 'This build is stopping: open it again in a moment to start it.';
    default:
      return `This build is ${build.status}: it cannot be opened.`;
  }
}

/** A row of the repo page: the builds of one branch or of one pull request, newest first. */
interface Row {
  kind: 'branch' | 'pr';
  key: string;
  link: string;
  targetBranch: string;
  targetLink: string;
  builds: BuildView[];
  /** Builds of the row not shown on this page (older ones), and where they are. */
  more?: number;
  moreLink?: string;
}

function rowsOf(builds: readonly BuildView[]): { branchRows: Row[]; prRows: Row[] } {
  const rows = new Map<string, Row>();
  for (const build of builds) {
    const pr = build.commit_info.pr;
    const id = pr === null ? `b:${build.commit_info.target_branch}` : `p:${pr}`;
    let row = rows.get(id);
    if (!row) {
      row = {
        kind: pr === null ? 'branch' : 'pr',
        key: pr === null ? build.commit_info.target_branch : String(pr),
        link: build.repo_pr_link ?? build.repo_target_branch_link,
        targetBranch: build.commit_info.target_branch,
        targetLink: build.repo_target_branch_link,
        builds: [],
      };
      rows.set(id, row);
    }
    row.builds.push(build);
  }
  const all = [...rows.values()];
  // The same order as app.js inserts new rows in: branches by name, newest pull requests first.
  return {
    branchRows: all
      .filter((row) => row.kind === 'branch')
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
    prRows: all.filter((row) => row.kind === 'pr').sort((a, b) => Number(b.key) - Number(a.key)),
  };
}

/** A repo of the home page with its build counts per status. */
interface RepoEntry {
  repo: string;
  counts: Partial<Record<BuildStatus, number>>;
  total: number;
}

function repoEntries(builds: readonly BuildView[], query: string): RepoEntry[] {
  const entries = new Map<string, RepoEntry>();
  for (const build of builds) {
    const repo = build.commit_info.repo;
    if (query && !repo.includes(query)) continue;
    let entry = entries.get(repo);
    if (!entry) {
      entry = { repo, counts: {}, total: 0 };
      entries.set(repo, entry);
    }
    entry.counts[build.status] = (entry.counts[build.status] ?? 0) + 1;
    entry.total++;
  }
  return [...entries.values()].sort((a, b) => (a.repo < b.repo ? -1 : 1));
}

/** Whether a repo matches the repo pattern of an entry of the repos file (any branch). */
function configured(patterns: readonly { repo: string }[], repo: string): boolean {
  return patterns.some((entry) => new RegExp(`^(?:${entry.repo})$`, 'is').test(repo));
}

/** Parses the login form (`application/x-www-form-urlencoded`, @koa/bodyparser). */
const formBody = bodyParser({
  enableTypes: ['form'],
  formLimit: '8kb',
  onError(error: Error & { status?: number }) {
    if (error.status === 413) throw new ClientError('body too large', 413);
    throw new ClientError('body: not a valid form');
  },
});

/** A field of the parsed form, or '' (a repeated field counts as absent). */
function field(ctx: Koa.Context, name: string): string {
  const value: unknown = (ctx.request.body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value : '';
}

/** Where a login goes back to: a path of this site only (never `//elsewhere`). */
function localPath(value: string | null | undefined): string {
  return value && /^\/(?![/\\])/.test(value) ? value : '/';
}

/**
 * The static files of `api/ui/static/` (koa-static): a path that would leave the directory is
 * refused (403, or 400 when it cannot be decoded), dot files are not served.
 */
const staticFiles = serveStatic(staticDir, {
  index: false,
  // Short: a new release is picked up within a minute without fingerprinted file names.
  maxage: 60_000,
  setHeaders(res: ServerResponse, path: string) {
    res.setHeader('cache-control', 'public, max-age=60');
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('content-type', contentTypes[extname(path)] ?? 'application/octet-stream');
  },
});

/**
 * The UI middleware: answers GET and HEAD of `/`, `/repos/<owner>/<repo>`, `/builds/<name>` and
 * `/static/*`, and passes everything else on.
 */
export function webUi(deps: WebUiDeps): Koa.Middleware {
  const { index } = deps;
  const log = deps.logger.child({ component: 'ui' });
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(templatesDir), {
    autoescape: true,
  });
  env.addFilter('when', when);
  env.addFilter('ago', (iso: string | null | undefined) => ago(iso));
  env.addFilter('short', (sha: string) => sha.slice(0, 7));
  // A repo in a link of this site, each part percent-encoded (app.js alike).
  env.addFilter('urlpath', (name: string) => pathSegments(name) ?? encodeURIComponent(name));
  env.addGlobal('liveHref', liveHref);
  env.addGlobal('can', canDo);
  env.addGlobal('actions', cardActions);
  env.addGlobal('statuses', buildStatuses);

  const render = async (
    ctx: Koa.Context,
    template: string,
    context: Record<string, unknown>,
    status = 200,
  ) => {
    const warnings = deps.workers ? (await deps.workers()).warnings : [];
    ctx.status = status;
    ctx.type = 'html';
    ctx.set(securityHeaders);
    ctx.set('cache-control', 'no-store');
    const auth = ctx.state.auth as RequestAuth | undefined;
    ctx.body = env.render(template, {
      summary: deps.summary?.figures() ?? [],
      renderedAt: new Date().toISOString(),
      search: typeof ctx.query.q === 'string' ? ctx.query.q : '',
      publicStartStop: deps.publicStartStop,
      warnings,
      admin: auth?.admin ?? false,
      // Sent back by app.js with every action: proof that the request comes from our page.
      csrf: auth?.csrf,
      loginEnabled: deps.login !== undefined,
      here: ctx.originalUrl,
      ...context,
    });
  };
  const notFound = (ctx: Koa.Context, message: string) =>
    render(ctx, 'not-found.njk', { page: 'not-found', message }, 404);

  const router = new Router();
  router.get('/', async (ctx) => {
    ctx.state.route = 'ui /';
    const q = typeof ctx.query.q === 'string' ? ctx.query.q.trim().toLowerCase() : '';
    const all = index.all();
    let results: Page<BuildView> | undefined;
    if (q) {
      const query = parseSearch(q.slice(0, SEARCH_MAX));
      results = pageOf(
        all.filter((b) => matchesSearch(b, query)),
        pageParam(ctx.query.page),
        BUILDS_PER_PAGE,
      );
    }
    await render(ctx, 'home.njk', {
      page: 'home',
      q,
      entries: repoEntries(all, q),
      patterns: deps.repos(),
      results: results?.items,
      pager: results ? pagerOf(results, ctx.originalUrl) : undefined,
    });
  });
  router.get('/repos/:owner/:repo', async (ctx) => {
    ctx.state.route = 'ui /repos/:owner/:repo';
    const repo = `${ctx.params.owner ?? ''}/${ctx.params.repo ?? ''}`.toLowerCase();
    const builds = index.all({ repo });
    const isConfigured = configured(deps.repos(), repo);
    if (!isConfigured && builds.length === 0) {
      return notFound(
        ctx,
        `${repo} is not configured for builds (no entry of the repos file matches it), and it has no builds.`,
      );
    }
    // A configured repo without builds still gets its page: builds appear on it live. Pages stay
    // small whatever the number of builds (docs/ui.md, "Pages"): rows by page, the newest cards
    // of each row, and a page of its own for the rest of a row.
    const branch = typeof ctx.query.branch === 'string' ? ctx.query.branch : undefined;
    const prText = typeof ctx.query.pr === 'string' ? ctx.query.pr : undefined;
    const pr = prText && /^[1-9][0-9]{0,9}$/.test(prText) ? Number(prText) : undefined;
    const asked = pageParam(ctx.query.page);
    let rows: { branchRows: Row[]; prRows: Row[] };
    let pager: Pager;
    let only: string | undefined;
    if (branch !== undefined || pr !== undefined) {
      const ofRow = builds.filter((b) =>
        pr !== undefined
          ? b.commit_info.pr === pr
          : b.commit_info.pr === null && b.commit_info.target_branch === branch,
      );
      const page = pageOf(ofRow, asked, BUILDS_PER_PAGE);
      rows = rowsOf(page.items);
      pager = pagerOf(page, ctx.originalUrl);
      only = pr !== undefined ? `#${pr}` : branch;
    } else {
      const all = rowsOf(builds);
      const page = pageOf([...all.branchRows, ...all.prRows], asked, ROWS_PER_PAGE);
      const here = `/repos/${pathSegments(repo) ?? ''}`;
      for (const row of page.items) {
        if (row.builds.length <= CARDS_PER_ROW) continue;
        row.more = row.builds.length - CARDS_PER_ROW;
        row.builds = row.builds.slice(0, CARDS_PER_ROW);
        row.moreLink =
          row.kind === 'pr'
            ? `${here}?pr=${row.key}`
            : `${here}?branch=${encodeURIComponent(row.key)}`;
      }
      rows = {
        branchRows: page.items.filter((row) => row.kind === 'branch'),
        prRows: page.items.filter((row) => row.kind === 'pr'),
      };
      pager = pagerOf(page, ctx.originalUrl);
    }
    await render(ctx, 'repo.njk', {
      page: 'repo',
      bodyRepo: repo,
      repo,
      repoLink: `https://github.com/${pathSegments(repo) ?? ''}`,
      configured: isConfigured,
      only,
      pager,
      // New rows arrive live on the first page of all rows only; others keep the rows they show.
      fixedRows: only !== undefined || pager.page > 1,
      cardsPerRow: only === undefined ? CARDS_PER_ROW : undefined,
      ...rows,
    });
  });
  router.get('/builds/:name', async (ctx) => {
    ctx.state.route = 'ui /builds/:name';
    const name = ctx.params.name ?? '';
    let build: BuildView | undefined;
    try {
      build = await index.find(name);
    } catch (error) {
      // Not in the cache, and Temporal cannot say whether it exists: a page, not JSON.
      if (!(error instanceof ClientError)) throw error;
      return render(
        ctx,
        'not-found.njk',
        { page: 'not-found', heading: 'Cannot tell', message: error.message },
        error.status,
      );
    }
    if (!build) return notFound(ctx, `There is no build named ${name}.`);
    const page = (b: BuildView, note?: string) =>
      render(ctx, 'build.njk', {
        page: 'build',
        bodyBuild: b.name,
        b,
        note,
        temporalLink: deps.workflowLink?.(b.name) ?? null,
      });
    const holding = (b: BuildView, error?: string) =>
      render(ctx, 'holding.njk', { page: 'holding', bodyBuild: b.name, b, error });
    if (!Object.hasOwn(ctx.query, 'live')) return page(build);

    if (build.status === 'started') {
      ctx.set('cache-control', 'no-store');
      return ctx.redirect(build.deploy_link);
    }
    if (build.status === 'starting') return holding(build);
    if (build.status !== 'stopped' || !deps.publicStartStop) {
      const admin = (ctx.state.auth as RequestAuth | undefined)?.admin ?? false;
      return page(build, liveNote(build, deps.publicStartStop, admin));
    }
    try {
      await deps.commands.transition(name, 'start');
      log.info({ build: name, repo: build.commit_info.repo }, 'build started by a live visit');
      return await holding(index.get(name) ?? build);
    } catch (error) {
      const now = index.get(name) ?? build;
      // Two visitors at once: the second one's start is refused, yet the build is on its way.
      if (error instanceof ClientError && error.status === 409 && now.status !== 'stopped') {
        return holding(now);
      }
      if (!(error instanceof ClientError)) {
        log.warn({ err: error, build: name }, 'live visit could not start the build');
      }
      return holding(now, error instanceof ClientError ? error.message : 'internal error');
    }
  });
  router.get('/login', async (ctx) => {
    ctx.state.route = 'ui /login';
    await render(ctx, 'login.njk', {
      page: 'login',
      next: localPath(typeof ctx.query.next === 'string' ? ctx.query.next : undefined),
    });
  });
  const routes = router.routes() as Koa.Middleware;

  /** `POST /login`: the admin credential of the form opens a session (a signed cookie). */
  const login = async (ctx: Koa.Context) => {
    ctx.state.route = 'ui /login';
    await formBody(ctx, () => Promise.resolve());
    const next = localPath(field(ctx, 'next'));
    const admin = deps.login?.admin ?? {};
    const user = field(ctx, 'user');
    const password = field(ctx, 'password');
    const token = field(ctx, 'token');
    const userOk =
      admin.user !== undefined &&
      admin.password !== undefined &&
      user !== '' &&
      secretEquals(user, admin.user) &&
      secretEquals(password, admin.password);
    const tokenOk = admin.token !== undefined && token !== '' && secretEquals(token, admin.token);
    if (!deps.login || !(userOk || tokenOk)) {
      log.warn({ ip: ctx.ip }, 'admin login refused');
      return render(
        ctx,
        'login.njk',
        { page: 'login', next, failed: true, user },
        deps.login ? 401 : 404,
      );
    }
    log.info({ ip: ctx.ip }, 'admin logged in');
    ctx.append('set-cookie', deps.login.sessions.cookie(deps.login.sessions.issue()));
    ctx.status = 303;
    ctx.redirect(next);
  };
  /** `POST /logout`: the browser forgets the session (it stays valid until it expires). */
  const logout = (ctx: Koa.Context) => {
    ctx.state.route = 'ui /logout';
    if (deps.login) ctx.append('set-cookie', deps.login.sessions.clearCookie());
    ctx.status = 303;
    ctx.redirect('/');
  };

  /** A browser's unknown page gets the HTML page; an API client keeps its JSON answer. */
  const htmlNotFound = async (ctx: Koa.Context) => {
    if (
      ctx.state.noRoute === true &&
      (ctx.method === 'GET' || ctx.method === 'HEAD') &&
      !ctx.path.startsWith('/api/') &&
      ctx.accepts('json', 'html') === 'html'
    ) {
      await notFound(ctx, `There is no page at ${ctx.path}.`);
    }
  };

  return async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/login') return login(ctx);
    if (ctx.method === 'POST' && ctx.path === '/logout') return logout(ctx);
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path.startsWith('/static/')) {
      ctx.state.route = 'ui /static';
      const path = ctx.path;
      ctx.path = path.slice('/static'.length);
      try {
        await staticFiles(ctx, () => {
          ctx.status = 404;
          ctx.type = 'text/plain';
          ctx.body = 'not found';
          return Promise.resolve();
        });
      } finally {
        ctx.path = path;
      }
      return;
    }
    await routes(ctx, next);
    await htmlNotFound(ctx);
  };
}
