/** The OpenAPI document of the REST API, served at /api/v1/openapi.json. */
import { buildStatuses } from '../domain/build.js';

const buildName = {
  name: 'name',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[a-z0-9-]{1,63}$' },
} as const;

const filters = [
  { name: 'repo', in: 'query', schema: { type: 'string' }, description: '`owner/name`' },
  { name: 'target_branch', in: 'query', schema: { type: 'string' } },
  { name: 'branch', in: 'query', schema: { type: 'string' } },
  { name: 'pr', in: 'query', schema: { type: 'integer', minimum: 1 } },
  {
    name: 'status',
    in: 'query',
    schema: { type: 'string', enum: [...buildStatuses] },
  },
] as const;

const error = { $ref: '#/components/schemas/Error' } as const;
const answers = (ok: Record<string, unknown>, ...codes: (400 | 401 | 403 | 404 | 409 | 503)[]) => ({
  ...ok,
  ...Object.fromEntries(
    codes.map((code) => [
      String(code),
      {
        description: {
          400: 'bad input',
          401: 'admin credential required',
          403: 'cross-site request refused: a browser request from a page of another site, or a session request without its CSRF token',
          404: 'unknown build',
          409: 'invalid transition',
          503: 'Temporal cannot be reached, or did not answer in time; retry later (Retry-After)',
        }[code],
        content: { 'application/json': { schema: error } },
      },
    ]),
  ),
});
/** The answers of a log endpoint: the text, or why there is none (409) or it cannot be read. */
const logAnswers = (noLog: string, ...codes: (400 | 404)[]) => ({
  ...answers({ 200: { description: 'log', content: { 'text/plain': {} } } }, ...codes),
  ...Object.fromEntries(
    [
      [409, noLog],
      [502, 'Kubernetes answered an error when asked for the log (the reason is given)'],
      [503, 'Kubernetes (or the pod) cannot be reached now; retry later (Retry-After)'],
    ].map(([code, description]) => [
      String(code),
      { description, content: { 'application/json': { schema: error } } },
    ]),
  ),
});
const json = (schema: unknown, description = 'OK') => ({
  description,
  content: { 'application/json': { schema } },
});
const build = { $ref: '#/components/schemas/Build' } as const;
const admin = [{ basic: [] }, { bearer: [] }, { session: [] }];

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'runboat',
    version: '1',
    description: 'Preview builds of every commit of every branch and pull request.',
  },
  paths: {
    '/api/v1/status': {
      get: {
        summary:
          'Counts by status, limits, and whether workers poll the builds and init task queues',
        responses: { 200: json({ type: 'object' }) },
      },
    },
    '/api/v1/repos': {
      get: { summary: 'Configured repos', responses: { 200: json({ type: 'array' }) } },
    },
    '/api/v1/builds': {
      get: {
        summary: 'List builds, newest first',
        parameters: filters,
        responses: answers({ 200: json({ type: 'array', items: build }) }, 400),
      },
      delete: {
        summary: 'Undeploy every build matching the filters (at least one)',
        security: admin,
        parameters: filters,
        responses: answers({ 202: json({ type: 'object' }) }, 400, 401, 403, 503),
      },
    },
    '/api/v1/builds/{name}': {
      get: {
        summary: 'One build',
        parameters: [buildName],
        responses: answers({ 200: json(build) }, 404, 503),
      },
      delete: {
        summary: 'Undeploy a build',
        security: admin,
        parameters: [buildName],
        responses: answers({ 202: json({ type: 'object' }) }, 401, 403, 404, 409, 503),
      },
    },
    '/api/v1/builds/{name}/init-log': {
      get: {
        summary: 'The kept tail of the last init log, with its outcome (also after a failure)',
        parameters: [buildName],
        responses: logAnswers('the build has no init log yet (its init has not ended)', 404),
      },
    },
    '/api/v1/builds/{name}/cleanup-log': {
      get: {
        summary:
          'The kept tail of the last cleanup log, with its outcome (`cleanup-failed` builds)',
        parameters: [buildName],
        responses: logAnswers('the build has no cleanup log yet (no cleanup has ended)', 404),
      },
    },
    '/api/v1/builds/{name}/build-log': {
      get: {
        summary:
          'The kept tail of the last image build log, with its outcome (repo entries with `imageBuild`)',
        parameters: [buildName],
        responses: logAnswers(
          'the build has no image build log yet (no image build has ended)',
          404,
        ),
      },
    },
    '/api/v1/builds/{name}/log': {
      get: {
        summary: 'The log of the running build; with `follow`, streamed until the client leaves',
        parameters: [
          buildName,
          {
            name: 'tail',
            in: 'query',
            description: 'last lines (default 500)',
            schema: { type: 'integer', minimum: 1, maximum: 100000 },
          },
          { name: 'follow', in: 'query', schema: { type: 'boolean' } },
        ],
        responses: logAnswers('the build is not started or starting: it has no pod', 400, 404),
      },
    },
    ...Object.fromEntries(
      ['start', 'stop', 'reset'].map((action) => [
        `/api/v1/builds/{name}/${action}`,
        {
          post: {
            summary: `${action[0]?.toUpperCase()}${action.slice(1)} a build`,
            description:
              action === 'reset'
                ? 'Admin only, always: it drops the build database.'
                : 'Admin only, unless RUNBOAT_PUBLIC_START_STOP is true.',
            security: admin,
            parameters: [buildName],
            responses: answers({ 202: json(build) }, 401, 403, 404, 409, 503),
          },
        },
      ]),
    ),
    '/api/v1/builds/trigger/branch': {
      post: {
        summary: 'Build the head (or a given commit) of a branch',
        security: admin,
        requestBody: json({
          type: 'object',
          required: ['repo', 'branch'],
          properties: {
            repo: { type: 'string' },
            branch: { type: 'string' },
            sha: { type: 'string' },
          },
        }),
        responses: answers({ 202: json({ type: 'object' }) }, 400, 401, 403, 503),
      },
    },
    '/api/v1/builds/trigger/pr': {
      post: {
        summary: 'Build a commit of a pull request',
        security: admin,
        requestBody: json({
          type: 'object',
          required: ['repo', 'pr', 'target_branch', 'sha'],
          properties: {
            repo: { type: 'string' },
            pr: { type: 'integer' },
            target_branch: { type: 'string' },
            sha: { type: 'string' },
            head_repo: {
              type: 'string',
              description:
                'owner/name of the repo the head commit comes from; absent, the pull request is treated as a fork',
            },
          },
        }),
        responses: answers({ 202: json({ type: 'object' }) }, 400, 401, 403, 503),
      },
    },
    '/api/v1/build-events': {
      get: {
        summary: 'Server-sent events: `upd` and `del`, each with a build; `: heartbeat` comments',
        responses: {
          200: { description: 'event stream', content: { 'text/event-stream': {} } },
          503: {
            description:
              'too many streams open, in all or from this client address; retry later (Retry-After)',
            content: { 'application/json': { schema: error } },
          },
        },
      },
    },
    '/login': {
      get: {
        summary: 'The admin login form (HTML)',
        responses: { 200: { description: 'the form', content: { 'text/html': {} } } },
      },
      post: {
        summary: 'Log in: opens an admin session (cookie runboat_session)',
        requestBody: {
          content: {
            'application/x-www-form-urlencoded': {
              schema: {
                type: 'object',
                properties: {
                  user: { type: 'string' },
                  password: { type: 'string' },
                  token: { type: 'string' },
                  next: { type: 'string', description: 'a path of this site to go back to' },
                },
              },
            },
          },
        },
        responses: {
          303: { description: 'logged in: Set-Cookie, and back to `next`' },
          401: { description: 'wrong credential (the form again)', content: { 'text/html': {} } },
          403: {
            description: 'cross-site request refused',
            content: { 'application/json': { schema: error } },
          },
        },
      },
    },
    '/logout': {
      post: {
        summary: 'Log out: the browser drops the session cookie',
        responses: { 303: { description: 'logged out, back to /' } },
      },
    },
    '/webhooks/github': {
      post: {
        summary: 'GitHub webhook (push, pull_request, delete, ping)',
        responses: { 200: { description: 'handled' }, 401: { description: 'bad signature' } },
      },
    },
  },
  components: {
    securitySchemes: {
      basic: { type: 'http', scheme: 'basic' },
      bearer: { type: 'http', scheme: 'bearer' },
      session: {
        type: 'apiKey',
        in: 'cookie',
        name: 'runboat_session',
        description:
          'The UI session of POST /login; state-changing requests also send the page CSRF token in X-CSRF-Token, from a page of this site (Origin)',
      },
    },
    schemas: {
      Error: { type: 'object', properties: { error: { type: 'string' } }, required: ['error'] },
      Build: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          commit_info: {
            type: 'object',
            properties: {
              repo: { type: 'string' },
              target_branch: { type: 'string' },
              pr: { type: ['integer', 'null'] },
              git_commit: { type: 'string' },
            },
          },
          status: { type: 'string' },
          init_status: { type: 'string' },
          image_status: {
            type: ['string', 'null'],
            description:
              '`building`, `built` or `failed` for builds with an image build; else null',
          },
          deploy_link: { type: 'string' },
          repo_link: { type: 'string' },
          repo_target_branch_link: { type: 'string' },
          repo_pr_link: { type: ['string', 'null'] },
          repo_commit_link: { type: 'string' },
          created: { type: ['string', 'null'] },
          last_scaled: { type: ['string', 'null'] },
          failure_reason: { type: ['string', 'null'] },
        },
      },
    },
  },
} as const;
