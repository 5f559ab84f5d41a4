/**
 * The GitHub webhook: `POST /webhooks/github`. It checks the signature on the raw body, then turns
 * pushes and pull requests into build requests and deleted branches and closed pull requests into
 * undeploys. It answers as soon as Temporal accepted the command, never waiting for Kubernetes, so
 * that GitHub's ten-second delivery timeout is never at risk. Redeliveries are harmless: a build is
 * named after its commit and undeploying a build twice is ignored. The signature is checked by
 * `@octokit/webhooks`; at most `maxConcurrent` deliveries are handled at once, the next ones are
 * answered 503 with `retry-after` (GitHub records them as failed; the reconciliation poll, or a
 * redelivery, catches them up: docs/operations.md, "Polling").
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Webhooks, type EmitterWebhookEventName } from '@octokit/webhooks';
import type Koa from 'koa';
import type { CommitInfo } from '../domain/build.js';
import type { BuildView } from '../domain/build-view.js';
import { BuildNotFoundError, InvalidTransitionError, UnsupportedRepoError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { BuildIndex } from './build-index.js';
import type { BuildCommands } from './commands.js';

/** The path GitHub delivers to. */
export const WEBHOOK_PATH = '/webhooks/github';

/** GitHub caps payloads at 25 MB; anything larger is not from GitHub. */
export const MAX_WEBHOOK_BODY_BYTES = 25 * 1024 * 1024;

/** What {@link githubWebhook} needs. */
export interface WebhookDeps {
  /** Required unless insecure is true. */
  secret: string | undefined;
  /** Dev mode only: accept unsigned deliveries (log a warning at creation). */
  insecure: boolean;
  commands: BuildCommands;
  /** To find the builds of a branch or pull request to undeploy. */
  index: Pick<BuildIndex, 'list'>;
  logger: Logger;
  /** Deliveries handled at once; one more is answered 503 (default 32). */
  maxConcurrent?: number;
}

/** Seconds a delivery refused for load is told to wait. */
const BUSY_RETRY_AFTER_SECONDS = 1;

/** `after` of a push that deleted its branch. */
const NULL_SHA = '0'.repeat(40);
const SHA = /^[0-9a-f]{40}$/i;
const BRANCH_REF = 'refs/heads/';
const BUILD_ACTIONS = new Set(['opened', 'synchronize', 'reopened']);

/** A delivery that cannot be handled as sent; answered with its status, never a 5xx. */
class RejectedDelivery extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'RejectedDelivery';
  }
}

/** How a delivery was answered, and what to log about it. */
interface Answer {
  status: number;
  body: Record<string, unknown>;
  repo?: string | undefined;
  outcome: 'pong' | 'build' | 'undeployed' | 'ignored';
}

type Payload = Record<string, unknown>;

function isObject(value: unknown): value is Payload {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function field(payload: Payload, path: string): unknown {
  return path
    .split('.')
    .reduce<unknown>((value, key) => (isObject(value) ? value[key] : undefined), payload);
}

function text(payload: Payload, path: string): string {
  const value = field(payload, path);
  if (typeof value !== 'string' || value === '') {
    throw new RejectedDelivery(400, `${path}: expected a non-empty string`);
  }
  return value;
}

function sha(payload: Payload, path: string): string {
  const value = text(payload, path);
  if (!SHA.test(value)) throw new RejectedDelivery(400, `${path}: expected a 40-digit commit SHA`);
  return value.toLowerCase();
}

function prNumber(payload: Payload, path: string): number {
  const value = field(payload, path);
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new RejectedDelivery(400, `${path}: expected a pull request number`);
  }
  return value;
}

/** Repo names are compared lower-case everywhere (GitHub's are case-insensitive). */
function repoOf(payload: Payload): string {
  return text(payload, 'repository.full_name').toLowerCase();
}

/** The repo for the log line of a delivery we ignore, when it has one. */
function repoIfAny(payload: Payload): string | undefined {
  const value = field(payload, 'repository.full_name');
  return typeof value === 'string' ? value.toLowerCase() : undefined;
}

function ignored(reason: string, repo?: string): Answer {
  return { status: 200, body: { ignored: reason }, repo, outcome: 'ignored' };
}

function header(ctx: Koa.Context, name: string): string | undefined {
  const value = ctx.get(name);
  return value === '' ? undefined : value;
}

/**
 * The body as sent, so that the signature is checked on the very bytes GitHub signed. Past the
 * limit it stops keeping chunks but lets the rest drain: destroying the request would reset the
 * connection before the client reads the 413.
 */
function readRawBody(request: IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (tooLarge) return;
      if (size > limit) {
        tooLarge = true;
        chunks.length = 0;
        resolve('too-large');
        return;
      }
      chunks.push(chunk);
    };
    const cleanup = () => {
      request.off('end', onEnd);
      request.off('error', onError);
      request.off('close', onClose);
    };
    const onEnd = () => {
      cleanup();
      if (!tooLarge) resolve(Buffer.concat(chunks));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onClose = () => {
      cleanup();
      reject(new Error('the client closed the connection before the body ended'));
    };
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onError);
    request.on('close', onClose);
  });
}

/**
 * Octokit's check of `sha256=<hex>` (constant time). Octokit refuses to check an empty body, which
 * GitHub never sends: its signature is compared here, so that a signed empty body is answered as
 * malformed (400), not as forged (401).
 */
async function signatureMatches(
  webhooks: Webhooks,
  secret: string,
  body: Buffer,
  signature: string,
) {
  if (body.length === 0) {
    const expected = Buffer.from(`sha256=${createHmac('sha256', secret).digest('hex')}`);
    const given = Buffer.from(signature);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
  try {
    return await webhooks.verify(body.toString('utf8'), signature);
  } catch {
    return false;
  }
}

function parsePayload(body: Buffer, contentType: string | undefined): Payload {
  let data: unknown;
  try {
    data = JSON.parse(body.toString('utf8'));
  } catch {
    // GitHub's other content type: a hook set up that way would fail every delivery.
    const hint = contentType?.includes('x-www-form-urlencoded')
      ? ': form-encoded; set the webhook content type to application/json'
      : '';
    throw new RejectedDelivery(400, `body: not valid JSON${hint}`);
  }
  if (!isObject(data)) throw new RejectedDelivery(400, 'body: expected a JSON object');
  return data;
}

/** Koa middleware answering `POST /webhooks/github` (and passing every other request to next). */
export function githubWebhook(deps: WebhookDeps): Koa.Middleware {
  const { secret, insecure, commands, index } = deps;
  if (!secret && !insecure) {
    throw new Error(
      'the GitHub webhook needs a secret (unsigned deliveries only in insecure mode)',
    );
  }
  const log = deps.logger.child({ component: 'webhook' });
  const verifier = secret ? new Webhooks({ secret }) : undefined;
  const maxConcurrent = deps.maxConcurrent ?? 32;
  let inFlight = 0;
  if (insecure) {
    log.warn(
      'insecure mode: unsigned webhook deliveries are accepted; never do this in production',
    );
  }

  /** Undeploys these builds; one already undeploying or gone is what we wanted anyway. */
  async function undeploy(builds: readonly BuildView[], repo: string): Promise<Answer> {
    await Promise.all(
      builds.map(async (build) => {
        try {
          await commands.transition(build.name, 'undeploy');
        } catch (error) {
          if (error instanceof InvalidTransitionError || error instanceof BuildNotFoundError) {
            return;
          }
          throw error;
        }
      }),
    );
    return {
      status: 200,
      body: { undeployed: builds.map((build) => build.name) },
      repo,
      outcome: 'undeployed',
    };
  }

  function undeployBranch(repo: string, branch: string): Promise<Answer> {
    const builds = index
      .list({ repo, targetBranch: branch })
      .filter((b) => b.commit_info.pr === null);
    return undeploy(builds, repo);
  }

  async function trigger(commit: CommitInfo, delivery: string | undefined): Promise<Answer> {
    if (!commands.supports(commit.repo, commit.targetBranch)) {
      return ignored(
        `${commit.repo} ${commit.targetBranch}: not configured for builds`,
        commit.repo,
      );
    }
    try {
      const build = await commands.trigger(commit, {
        kind: 'webhook',
        ...(delivery === undefined ? {} : { id: delivery }),
      });
      return { status: 202, body: { build }, repo: commit.repo, outcome: 'build' };
    } catch (error) {
      // The repos file changed between supports() and trigger().
      if (error instanceof UnsupportedRepoError) return ignored(error.message, commit.repo);
      throw error;
    }
  }

  async function push(payload: Payload, delivery: string | undefined): Promise<Answer> {
    const repo = repoOf(payload);
    const ref = text(payload, 'ref');
    if (!ref.startsWith(BRANCH_REF)) return ignored(`${ref}: not a branch`, repo);
    const branch = ref.slice(BRANCH_REF.length);
    if (branch === '') throw new RejectedDelivery(400, `ref: no branch name in ${ref}`);
    if (payload.deleted === true || payload.after === NULL_SHA) {
      return undeployBranch(repo, branch);
    }
    const gitCommit = sha(payload, 'after');
    return trigger({ repo, targetBranch: branch, pr: null, gitCommit }, delivery);
  }

  async function pullRequest(payload: Payload, delivery: string | undefined): Promise<Answer> {
    const action = text(payload, 'action');
    if (action !== 'closed' && !BUILD_ACTIONS.has(action)) {
      return ignored(`pull_request ${action}: nothing to do`, repoIfAny(payload));
    }
    const repo = repoOf(payload);
    const pr = prNumber(payload, 'pull_request.number');
    if (action === 'closed') return undeploy(index.list({ repo, pr }), repo);
    const targetBranch = text(payload, 'pull_request.base.ref');
    const gitCommit = sha(payload, 'pull_request.head.sha');
    // Where the head commit comes from: another repo (or a deleted fork, null) is a fork.
    const head = field(payload, 'pull_request.head.repo.full_name');
    const headRepo = typeof head === 'string' && head !== '' ? head.toLowerCase() : null;
    return trigger({ repo, targetBranch, pr, gitCommit, headRepo }, delivery);
  }

  async function deleted(payload: Payload): Promise<Answer> {
    const repo = repoOf(payload);
    const refType = text(payload, 'ref_type');
    if (refType !== 'branch') return ignored(`${refType} deleted: not a branch`, repo);
    // GitHub sends the short name here, but a full ref would mean the same branch.
    const ref = text(payload, 'ref');
    const branch = ref.startsWith(BRANCH_REF) ? ref.slice(BRANCH_REF.length) : ref;
    return undeployBranch(repo, branch);
  }

  async function handle(
    event: string,
    payload: Payload,
    delivery: string | undefined,
  ): Promise<Answer> {
    switch (event as EmitterWebhookEventName) {
      case 'ping':
        return {
          status: 200,
          body: { ok: true, pong: true },
          repo: repoIfAny(payload),
          outcome: 'pong',
        };
      case 'push':
        return push(payload, delivery);
      case 'pull_request':
        return pullRequest(payload, delivery);
      case 'delete':
        return deleted(payload);
      default:
        return ignored(`event ${event}: not handled`, repoIfAny(payload));
    }
  }

  /** Everything short of the event handlers: size, signature, event header, JSON. */
  async function receive(ctx: Koa.Context): Promise<{ event: string; payload: Payload }> {
    const declared = Number(ctx.get('content-length') || '0');
    if (declared > MAX_WEBHOOK_BODY_BYTES) {
      throw new RejectedDelivery(413, `body: larger than ${MAX_WEBHOOK_BODY_BYTES} bytes`);
    }
    const body = await readRawBody(ctx.req, MAX_WEBHOOK_BODY_BYTES);
    if (body === 'too-large') {
      throw new RejectedDelivery(413, `body: larger than ${MAX_WEBHOOK_BODY_BYTES} bytes`);
    }
    const signature = header(ctx, 'x-hub-signature-256');
    if (signature === undefined) {
      if (!insecure) throw new RejectedDelivery(401, 'x-hub-signature-256: missing');
    } else if (verifier && secret && !(await signatureMatches(verifier, secret, body, signature))) {
      throw new RejectedDelivery(401, 'x-hub-signature-256: does not match the body');
    }
    const event = header(ctx, 'x-github-event');
    if (event === undefined) throw new RejectedDelivery(400, 'x-github-event: missing');
    return { event, payload: parsePayload(body, header(ctx, 'content-type')) };
  }

  return async (ctx, next) => {
    if (ctx.path !== WEBHOOK_PATH || ctx.method !== 'POST') return next();
    const delivery = header(ctx, 'x-github-delivery');
    if (inFlight >= maxConcurrent) {
      // Answered, not dropped: Node reads and discards the unread body after this answer.
      log.warn({ delivery, inFlight, maxConcurrent }, 'delivery refused: too many at once');
      ctx.status = 503;
      ctx.set('retry-after', String(BUSY_RETRY_AFTER_SECONDS));
      ctx.body = { error: `more than ${maxConcurrent} deliveries at once; retry later` };
      return;
    }
    inFlight++;
    try {
      await handleDelivery(ctx, delivery);
    } finally {
      inFlight--;
    }
  };

  async function handleDelivery(ctx: Koa.Context, delivery: string | undefined): Promise<void> {
    let event = header(ctx, 'x-github-event');
    let answer: Answer;
    try {
      const received = await receive(ctx);
      event = received.event;
      answer = await handle(received.event, received.payload, delivery);
    } catch (error) {
      if (!(error instanceof RejectedDelivery)) throw error;
      // The rest of an oversized body is not worth reading; the connection goes with it.
      if (error.status === 413) ctx.set('connection', 'close');
      log.warn(
        { delivery, event, status: error.status, reason: error.message },
        'delivery rejected',
      );
      ctx.status = error.status;
      ctx.body = { error: error.message };
      return;
    }
    const { status, body, repo, outcome } = answer;
    log.info({ delivery, event, repo, outcome, ...body }, 'delivery handled');
    ctx.status = status;
    ctx.body = body;
  }
}
