/**
 * The API's schemas (zod), in one place: what its request bodies and query parameters must be —
 * the routes of api/app.ts parse their input with these — and the shapes of its answers. The
 * OpenAPI document (api/openapi-document.ts) is generated from them, so what is checked and what
 * is documented are one thing (README, "The API").
 */
import { z } from 'zod';
import { buildStatuses, type BuildStatus } from '../domain/build.js';
import type { BuildView } from '../domain/build-view.js';
import { ClientError } from '../lib/errors.js';
import { PER_PAGE_MAX, SEARCH_MAX } from './build-search.js';
import { timelineKinds } from './timeline.js';
import type { WorkerStatus } from './worker-status.js';

const REQUIRED_STRING = 'required string';

/** A non-empty string; missing, empty or not a string, the message is `required string`. */
const requiredString = () =>
  z.string({ error: REQUIRED_STRING }).min(1, { error: REQUIRED_STRING });

/** A GitHub repo, `owner/name`, compared lower-case as GitHub does. */
const repoName = () =>
  requiredString()
    .regex(/^[\w.-]+\/[\w.-]+$/, { error: 'expected owner/name' })
    .transform((repo) => repo.toLowerCase())
    .meta({ description: 'GitHub repo, `owner/name` (case does not matter)' });

/** A full commit SHA. */
const commitSha = () =>
  requiredString()
    .regex(/^[0-9a-f]{40}$/, { error: 'expected a commit SHA of 40 lower-case hex digits' })
    .meta({ description: 'commit SHA, 40 lower-case hex digits' });

// ---- request bodies ----

/** The body of `POST /api/v1/builds/trigger/branch`. */
export const triggerBranchBody = z
  .object(
    {
      repo: repoName(),
      branch: requiredString().meta({ description: 'the branch to build' }),
      sha: commitSha()
        .optional()
        .meta({ description: 'the commit to build; without it, the head of the branch on GitHub' }),
    },
    { error: 'expected a JSON object' },
  )
  .meta({ id: 'TriggerBranch', description: 'A build of a branch' });

/** The body of `POST /api/v1/builds/trigger/pr`. */
export const triggerPrBody = z
  .object(
    {
      repo: repoName(),
      pr: z
        .number({ error: 'required positive integer' })
        .int({ error: 'required positive integer' })
        .positive({ error: 'required positive integer' })
        .meta({ description: 'the pull request number' }),
      target_branch: requiredString().meta({ description: 'the branch the pull request targets' }),
      sha: commitSha(),
      head_repo: repoName().optional().meta({
        description:
          'owner/name of the repo the head commit comes from; absent, the pull request is treated as a fork (no secrets)',
      }),
    },
    { error: 'expected a JSON object' },
  )
  .meta({ id: 'TriggerPullRequest', description: 'A build of a commit of a pull request' });

/** The form of `POST /login` (urlencoded): a user and password, or the admin token. */
export const loginForm = z
  .object({
    user: z.string().optional(),
    password: z.string().optional(),
    token: z
      .string()
      .optional()
      .meta({ description: 'the admin token, instead of user and password' }),
    next: z.string().optional().meta({ description: 'a path of this site to go back to' }),
  })
  .meta({ id: 'LoginForm' });

// ---- query parameters ----

/**
 * A query parameter given at most once (`?repo=a&repo=b` is refused). Empty values are dropped
 * before parsing ({@link parseQuery}): `?pr=` is no filter.
 */
const once = () => z.string({ error: givenOnce() });

/** The message of a query parameter given more than once, else `message` (or zod's own). */
const givenOnce =
  (message?: string) =>
  (issue: { input?: unknown }): string | undefined =>
    Array.isArray(issue.input) ? 'give it once' : message;

/** A positive integer given as text (`?pr=12`); anything else is refused with this message. */
const positiveInteger = (message: string) =>
  z.coerce.number({ error: message }).int({ error: message }).positive({ error: message });

/** The filters of `GET /api/v1/builds` and `DELETE /api/v1/builds`. */
export const buildFilterQuery = z.object({
  repo: once().optional().meta({ description: 'GitHub repo, `owner/name`' }),
  target_branch: once()
    .optional()
    .meta({ description: 'the branch built, or a pull request targets' }),
  branch: once()
    .optional()
    .meta({ description: 'a branch: its builds, and those of pull requests targeting it' }),
  pr: positiveInteger('not a pull request number')
    .optional()
    .meta({ description: 'a pull request number' }),
  status: z
    .enum(buildStatuses as [BuildStatus, ...BuildStatus[]], {
      error: givenOnce(`one of ${buildStatuses.join(', ')}`),
    })
    .optional(),
  name: once().optional().meta({ description: 'a build name' }),
});

/** The query of `GET /api/v1/builds`: its filters, a search and a page (api/build-search.ts). */
export const buildListQuery = buildFilterQuery.extend({
  q: once()
    .max(SEARCH_MAX, { error: `at most ${SEARCH_MAX} characters` })
    .optional()
    .meta({
      description:
        'a search: words, every one matching (`#42` a pull request, hex digits a commit SHA prefix, any word a part of the repo, branch, commit message or author, or the start of the build name)',
    }),
  per_page: positiveInteger(`an integer from 1 to ${PER_PAGE_MAX}`)
    .max(PER_PAGE_MAX, { error: `an integer from 1 to ${PER_PAGE_MAX}` })
    .optional()
    .meta({
      description: `builds per page, at most ${PER_PAGE_MAX}; without it, every build in one answer. The header x-total-count says how many match, link the other pages`,
    }),
  page: positiveInteger('a positive integer')
    .optional()
    .meta({ description: 'the page (from 1) when per_page is given; past the last, the last' }),
});

/** The query of `GET /api/v1/builds/{name}/log`. */
export const buildLogQuery = z.object({
  tail: positiveInteger('an integer from 1 to 100000')
    .max(100_000, { error: 'an integer from 1 to 100000' })
    .optional()
    .meta({ description: 'the last lines to send, from 1 to 100000 (500 by default)' }),
  follow: z
    .enum(['true', 'false', '1', '0'], { error: 'true or false' })
    .transform((value) => value === 'true' || value === '1')
    .optional()
    .meta({ description: 'stream the log until the client leaves' }),
});

/** The query of `GET /api/v1/builds/{name}/init-log`. */
export const initLogQuery = z.object({
  follow: z
    .enum(['true', 'false', '1', '0'], { error: 'true or false' })
    .transform((value) => value === 'true' || value === '1')
    .optional()
    .meta({
      description:
        "while the build is initializing: its init pod's log, streamed until the client leaves (header X-Runboat-Log: live); otherwise the kept log",
    }),
});

/** The path parameter of every `/api/v1/builds/{name}…` route (an unknown name is a 404). */
export const buildNamePath = z.object({
  name: z
    .string()
    .regex(/^[a-z0-9-]{1,63}$/)
    .meta({ description: 'the build name' }),
});

// ---- answers ----

/** Every error answer. */
export const errorAnswer = z
  .object({
    error: z.string().meta({ description: 'what went wrong, naming the field of a bad input' }),
    request: z
      .string()
      .optional()
      .meta({ description: 'the request id (X-Request-Id), also in the API log' }),
  })
  .meta({ id: 'Error' });

/** A build's timeline (api/timeline.ts): its workflow's history as a person tells it. */
export const timelineAnswer = z
  .object({
    build: z.string(),
    workflow: z.object({
      id: z.string().meta({ description: "the build's workflow id" }),
      link: z
        .string()
        .nullable()
        .meta({ description: 'its page in the Temporal UI (RUNBOAT_TEMPORAL_UI_URL), or null' }),
    }),
    entries: z
      .array(
        z
          .object({
            time: z.string().meta({ description: 'ISO time of the event' }),
            kind: z.enum(timelineKinds),
            title: z.string(),
            detail: z.string().optional(),
          })
          .meta({ id: 'TimelineEntry' }),
      )
      .meta({ description: 'oldest first; the newest 200 at most' }),
    truncated: z.boolean().meta({ description: 'older history was left out' }),
  })
  .meta({ id: 'Timeline' });

/** A build (domain/build-view.ts), as runboat shows it. */
export const buildAnswer = z
  .object({
    name: z.string(),
    commit_info: z.object({
      repo: z.string(),
      target_branch: z.string(),
      pr: z.number().int().nullable(),
      git_commit: z.string(),
      message: z
        .string()
        .nullable()
        .meta({ description: "the commit's message (first line); null when not known" }),
      author: z
        .string()
        .nullable()
        .meta({ description: "the commit's author; null when not known" }),
    }),
    status: z.enum(buildStatuses as [BuildStatus, ...BuildStatus[]]),
    init_status: z.string().meta({ description: '`todo`, `started`, `succeeded` or `failed`' }),
    image_status: z.string().nullable().meta({
      description: '`building`, `built` or `failed` for builds with an image build; else null',
    }),
    deploy_link: z.string(),
    repo_link: z.string(),
    repo_target_branch_link: z.string(),
    repo_pr_link: z.string().nullable(),
    repo_commit_link: z.string(),
    created: z.string().nullable().meta({ description: 'ISO 8601, UTC' }),
    last_scaled: z.string().nullable().meta({ description: 'ISO 8601, UTC' }),
    failure_reason: z.string().nullable(),
  })
  .meta({ id: 'Build' });

/** The workers polling each task queue (api/worker-status.ts). */
export const workerStatusAnswer = z
  .object({
    temporal_reachable: z.boolean(),
    error: z.string().optional().meta({ description: 'why Temporal did not answer' }),
    queues: z.array(
      z.object({
        role: z.enum(['builds', 'init', 'image-build']),
        task_queue: z.string(),
        polling: z.boolean().nullable().meta({
          description: 'whether a worker polled it lately; null when Temporal does not answer',
        }),
        pollers: z.array(
          z.object({ identity: z.string(), last_access_time: z.string().nullable() }),
        ),
      }),
    ),
    warnings: z.array(z.string()).meta({ description: 'what a user must know, one sentence each' }),
    checked_at: z.string(),
  })
  .meta({ id: 'WorkerStatus' });

/** `GET /api/v1/status`. */
export const statusAnswer = z
  .object({
    deployed: z.number().int().meta({ description: 'builds deployed (all but `queued`)' }),
    counts: z.record(z.enum(buildStatuses as [BuildStatus, ...BuildStatus[]]), z.number().int()),
    limits: z.object({
      max_started: z.number().int(),
      max_deployed: z.number().int(),
      max_initializing: z.number().int().optional().meta({ description: 'the init slots' }),
    }),
    summary: z
      .array(
        z.object({
          key: z.string().meta({
            description:
              '`started`, `deployed`, `initializing`, `queued`, `failed` or `cleanup-failed`',
          }),
          label: z.string(),
          value: z.number().int(),
          limit: z.number().int().nullable().meta({ description: 'the limit it counts against' }),
          level: z.enum(['ok', 'full', 'warn', 'bad']),
          title: z.string().meta({ description: 'what it counts, one sentence' }),
        }),
      )
      .meta({ description: 'the fleet summary the UI shows on every page (api/fleet-summary.ts)' }),
    workers: workerStatusAnswer.optional(),
  })
  .meta({ id: 'Status' });

/** One entry of the repos file, as `GET /api/v1/repos` lists it. */
export const repoAnswer = z
  .object({
    repo: z.string().meta({ description: 'a regular expression of repos' }),
    branch: z.string().meta({ description: 'a regular expression of branches' }),
    sticky: z.boolean(),
  })
  .meta({ id: 'Repo' });

/** The answer of a trigger. */
export const triggeredAnswer = z
  .object({ build: z.string().meta({ description: 'the name of the build asked for' }) })
  .meta({ id: 'Triggered' });

/** The answer of an undeploy. */
export const undeployingAnswer = z
  .object({ undeploying: z.array(z.string()).meta({ description: 'the builds undeploying' }) })
  .meta({ id: 'Undeploying' });

/** `GET /healthz`. */
export const healthAnswer = z.object({ ok: z.literal(true) });

/** `GET /readyz`. */
export const readinessAnswer = z.object({
  ready: z.boolean(),
  cache: z.boolean().optional().meta({ description: 'whether the build cache is in sync' }),
  temporal: z.boolean().optional().meta({ description: 'whether Temporal answers' }),
  stopping: z.boolean().optional().meta({ description: 'the process is shutting down' }),
});

/** What `POST /webhooks/github` answers a delivery it took. */
export const webhookAnswer = z
  .union([
    triggeredAnswer,
    z.object({ ignored: z.string().meta({ description: 'why nothing was done' }) }),
    z.object({ undeployed: z.array(z.string()) }),
    z.object({ ok: z.literal(true), pong: z.literal(true) }),
  ])
  .meta({ id: 'WebhookAnswer' });

// The answers' schemas and the types the code builds them from are one shape (a compile error
// otherwise).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const answersMatchTheirTypes: [
  Same<z.output<typeof buildAnswer>, BuildView>,
  Same<z.output<typeof workerStatusAnswer>, WorkerStatus>,
] = [true, true];
void answersMatchTheirTypes;

// ---- parsing ----

/** The issues of a failed parse as one message, each naming its field. */
function issuesMessage(error: z.ZodError, where: string): string {
  return error.issues
    .map((issue) => `${issue.path.length ? issue.path.join('.') : where}: ${issue.message}`)
    .join('; ');
}

/** The parsed JSON body of a request, or a 400 naming each bad field (`branch: required string`). */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  const result = schema.safeParse(body);
  if (!result.success) throw new ClientError(issuesMessage(result.error, 'body'));
  return result.data;
}

/** A request's query, or a 400 naming each bad parameter; empty values count as absent. */
export function parseQuery<T extends z.ZodType>(
  schema: T,
  query: Record<string, string | string[] | undefined>,
): z.output<T> {
  const given = Object.fromEntries(
    Object.entries(query).filter(([, value]) => value !== undefined && value !== ''),
  );
  const result = schema.safeParse(given);
  if (!result.success) throw new ClientError(issuesMessage(result.error, 'query'));
  return result.data;
}
