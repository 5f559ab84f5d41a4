/**
 * The GitHub webhook: `POST /webhooks/github`. It checks the signature on the raw body, then turns
 * pushes and pull requests into build requests and deleted branches and closed pull requests into
 * undeploys. It answers as soon as Temporal accepted the command, never waiting for Kubernetes, so
 * that GitHub's ten-second delivery timeout is never at risk. Redeliveries are harmless: a build is
 * named after its commit and undeploying a build twice is ignored. The signature is checked by
 * `@octokit/webhooks`; at most `maxConcurrent` deliveries are handled at once, the next ones are
 * answered 503 with `retry-after` (GitHub records them as failed; the reconciliation poll, or a
 * redelivery, catches them up: docs/operations.md, "GitHub"). A `check_run` button press acts on
 * its build once the repo, commit and App installation match.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Webhooks, type EmitterWebhookEventName } from '@octokit/webhooks';
import type Koa from 'koa';
import type { z } from 'zod';
import type { CommitInfo } from '../domain/build.js';
import type { BuildView } from '../domain/build-view.js';
import { BuildNotFoundError, InvalidTransitionError, UnsupportedRepoError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { BuildIndex } from './build-index.js';
import type { BuildCommands, Transition } from './commands.js';
import {
  checkRunPayload,
  deletePayload,
  firstLine,
  parsePayload as parseGitHubPayload,
  PayloadError,
  pullRequestAction,
  pullRequestPayload,
  pushedCommit,
  pushPayload,
} from './webhook-payloads.js';

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
  /** To find the builds of a branch or pull request to undeploy, and a check run's build. */
  index: Pick<BuildIndex, 'list' | 'get'>;
  /**
   * The GitHub App's installation for a repo's owner, to check a check run's button press;
   * absent (no App): such presses are refused.
   */
  installationOf?: (repo: string) => Promise<number | undefined>;
  logger: Logger;
  /** Deliveries handled at once; one more is answered 503 (default 32). */
  maxConcurrent?: number;
}

/** Seconds a delivery refused for load is told to wait. */
const BUSY_RETRY_AFTER_SECONDS = 1;

/** `after` of a push that deleted its branch. */
const NULL_SHA = '0'.repeat(40);
const BRANCH_REF = 'refs/heads/';
const BUILD_ACTIONS = new Set(['opened', 'synchronize', 'reopened']);
/** The buttons of a build's check run, by identifier. */
const CHECK_RUN_TRANSITIONS = new Set<string>(['start', 'stop', 'reset']);

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
  outcome: 'pong' | 'build' | 'undeployed' | 'action' | 'ignored';
}

type Payload = Record<string, unknown>;

function isObject(value: unknown): value is Payload {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The typed payload, or a 400 naming the field that is wrong. */
function typed<T extends z.ZodType>(schema: T, payload: Payload): z.output<T> {
  try {
    return parseGitHubPayload(schema, payload);
  } catch (error) {
    if (error instanceof PayloadError) throw new RejectedDelivery(400, error.message);
    throw error;
  }
}

/** The repo for the log line of a delivery we ignore, when it has one. */
function repoIfAny(payload: Payload): string | undefined {
  const repository = payload.repository;
  const name = isObject(repository) ? repository.full_name : undefined;
  return typeof name === 'string' ? name.toLowerCase() : undefined;
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
  body: string,
  signature: string,
) {
  if (body.length === 0) {
    const expected = Buffer.from(`sha256=${createHmac('sha256', secret).digest('hex')}`);
    const given = Buffer.from(signature);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
  try {
    return await webhooks.verify(body, signature);
  } catch {
    return false;
  }
}

function parsePayload(body: string, contentType: string | undefined): Payload {
  let data: unknown;
  try {
    data = JSON.parse(body);
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
    const event = typed(pushPayload, payload);
    const repo = event.repository.full_name;
    const { ref } = event;
    if (!ref.startsWith(BRANCH_REF)) return ignored(`${ref}: not a branch`, repo);
    const branch = ref.slice(BRANCH_REF.length);
    if (branch === '') throw new RejectedDelivery(400, `ref: no branch name in ${ref}`);
    if (event.deleted === true || event.after === NULL_SHA) {
      return undeployBranch(repo, branch);
    }
    const gitCommit = typed(pushedCommit, payload).after;
    const head = event.head_commit;
    const message = firstLine(head?.message);
    const author = head?.author?.name || head?.author?.username || undefined;
    return trigger(
      {
        repo,
        targetBranch: branch,
        pr: null,
        gitCommit,
        ...(message ? { message } : {}),
        ...(author ? { author } : {}),
      },
      delivery,
    );
  }

  async function pullRequest(payload: Payload, delivery: string | undefined): Promise<Answer> {
    const action = typed(pullRequestAction, payload).action;
    if (action !== 'closed' && !BUILD_ACTIONS.has(action)) {
      return ignored(`pull_request ${action}: nothing to do`, repoIfAny(payload));
    }
    const event = typed(pullRequestPayload, payload);
    const repo = event.repository.full_name;
    const pull = event.pull_request;
    if (action === 'closed') return undeploy(index.list({ repo, pr: pull.number }), repo);
    // The pull request's title stands for its head commit's message, which the event lacks.
    const message = firstLine(pull.title);
    const author = pull.user?.login;
    return trigger(
      {
        repo,
        targetBranch: pull.base.ref,
        pr: pull.number,
        gitCommit: pull.head.sha,
        headRepo: pull.head.repo,
        ...(message ? { message } : {}),
        ...(author ? { author } : {}),
      },
      delivery,
    );
  }

  async function deleted(payload: Payload): Promise<Answer> {
    const event = typed(deletePayload, payload);
    const repo = event.repository.full_name;
    if (event.ref_type !== 'branch')
      return ignored(`${event.ref_type} deleted: not a branch`, repo);
    // GitHub sends the short name here, but a full ref would mean the same branch.
    const { ref } = event;
    const branch = ref.startsWith(BRANCH_REF) ? ref.slice(BRANCH_REF.length) : ref;
    return undeployBranch(repo, branch);
  }

  /**
   * A button of a build's check run (docs/operations.md, "GitHub"): acts on the build named by the
   * check run's external id once its repo, commit and the delivery's installation match.
   */
  async function checkRun(payload: Payload): Promise<Answer> {
    const event = typed(checkRunPayload, payload);
    const repo = event.repository.full_name;
    if (event.action !== 'requested_action') {
      return ignored(`check_run ${event.action}: nothing to do`, repo);
    }
    const transition = event.requested_action?.identifier ?? '';
    if (!CHECK_RUN_TRANSITIONS.has(transition)) {
      throw new RejectedDelivery(400, `requested_action.identifier: unknown action ${transition}`);
    }
    const name = event.check_run.external_id ?? '';
    const build = name ? index.get(name) : undefined;
    if (!build) throw new RejectedDelivery(404, `check_run.external_id: no build ${name}`);
    const commit = build.commit_info;
    if (commit.repo !== repo || commit.git_commit !== event.check_run.head_sha) {
      throw new RejectedDelivery(403, `check run of ${repo} does not match build ${name}`);
    }
    const installation = deps.installationOf ? await deps.installationOf(repo) : undefined;
    if (installation === undefined || event.installation?.id !== installation) {
      throw new RejectedDelivery(
        403,
        `installation ${String(event.installation?.id)} is not the App's installation for ${repo}`,
      );
    }
    try {
      await commands.transition(name, transition as Transition);
    } catch (error) {
      if (error instanceof InvalidTransitionError) {
        return ignored(`${name}: ${error.message}`, repo);
      }
      throw error;
    }
    return {
      status: 202,
      body: { build: name, transition },
      repo,
      outcome: 'action',
    };
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
      case 'check_run':
        return checkRun(payload);
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
    const raw = await readRawBody(ctx.req, MAX_WEBHOOK_BODY_BYTES);
    if (raw === 'too-large') {
      throw new RejectedDelivery(413, `body: larger than ${MAX_WEBHOOK_BODY_BYTES} bytes`);
    }
    // Decoded once, for the signature and the JSON alike.
    const body = raw.toString('utf8');
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
