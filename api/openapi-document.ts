/**
 * The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json`, generated from the zod
 * schemas of api/schemas.ts (the ones the routes parse their input with) and the table of routes
 * below, one entry per route. A unit test (test/unit/openapi.test.ts) fails when a route of the
 * application is missing here, or when the document is not valid OpenAPI.
 */
import { z } from 'zod';
import {
  buildAnswer,
  buildFilterQuery,
  buildListQuery,
  buildLogQuery,
  buildNamePath,
  errorAnswer,
  healthAnswer,
  initLogQuery,
  loginForm,
  readinessAnswer,
  repoAnswer,
  statusAnswer,
  timelineAnswer,
  triggerBranchBody,
  triggeredAnswer,
  triggerPrBody,
  undeployingAnswer,
  webhookAnswer,
} from './schemas.js';

type JsonSchema = Record<string, unknown>;

/** One answer of a route: JSON of a schema, or another media type. */
interface Answer {
  description: string;
  json?: z.ZodType;
  /** A media type other than JSON (text/plain, text/event-stream, text/html). */
  media?: string;
}

/** One route, as the table below describes it. */
interface Route {
  summary: string;
  description?: string;
  /** `admin`: the admin credential; `start-stop`: the admin's unless start and stop are public. */
  auth?: 'admin' | 'start-stop';
  path?: z.ZodObject;
  query?: z.ZodObject;
  /** A JSON body, or an urlencoded form. */
  body?: { json: z.ZodType } | { form: z.ZodType };
  responses: Record<number, Answer>;
}

/** Why the usual error statuses are answered. */
const errorReasons = {
  400: 'bad input: the error names each bad field',
  401: 'admin credential required',
  403: 'cross-site request refused: a browser request from a page of another site, or a session request without its CSRF token',
  404: 'unknown build',
  409: 'invalid transition (the error says why)',
  413: 'body too large',
  503: 'Temporal cannot be reached, or did not answer in time; retry later (Retry-After)',
} as const;

/** The error answers of these statuses, each with its usual reason. */
function errors(...codes: (keyof typeof errorReasons)[]): Record<number, Answer> {
  return Object.fromEntries(
    codes.map((code) => [code, { description: errorReasons[code], json: errorAnswer }]),
  );
}

/** The answers of a kept log: the text, or why there is none (409) or it cannot be read. */
function logAnswers(noLog: string, ...codes: (keyof typeof errorReasons)[]) {
  return {
    200: { description: 'the log', media: 'text/plain' },
    ...errors(...codes),
    409: { description: noLog, json: errorAnswer },
    502: {
      description: 'Kubernetes answered an error when asked for the log (the reason is given)',
      json: errorAnswer,
    },
    503: {
      description: 'Kubernetes (or the pod) cannot be reached now; retry later (Retry-After)',
      json: errorAnswer,
    },
  };
}

const keptLog = (what: string, noLog: string): Route => ({
  summary: `The kept tail of the last ${what} log, with its outcome`,
  path: buildNamePath,
  responses: logAnswers(noLog, 404),
});

const transition = (action: 'start' | 'stop' | 'reset'): Route => ({
  summary: `${action[0]?.toUpperCase()}${action.slice(1)} a build`,
  description:
    action === 'reset'
      ? 'Admin only, always: it drops the build database.'
      : 'Admin only, unless RUNBOAT_PUBLIC_START_STOP is true.',
  auth: action === 'reset' ? 'admin' : 'start-stop',
  path: buildNamePath,
  responses: {
    202: { description: 'asked', json: buildAnswer },
    ...errors(401, 403, 404, 409, 503),
  },
});

/** Every route of the API, by path (OpenAPI's `{param}` form) and method. */
const routes: Record<string, Partial<Record<'get' | 'post' | 'delete', Route>>> = {
  '/healthz': {
    get: { summary: 'Liveness', responses: { 200: { description: 'alive', json: healthAnswer } } },
  },
  '/readyz': {
    get: {
      summary: 'Readiness: the build cache is in sync and Temporal answers',
      responses: {
        200: { description: 'ready', json: readinessAnswer },
        503: { description: 'not ready, or shutting down', json: readinessAnswer },
      },
    },
  },
  '/metrics': {
    get: {
      summary: 'Prometheus metrics',
      responses: { 200: { description: 'the metrics', media: 'text/plain' } },
    },
  },
  '/api/v1/openapi.json': {
    get: {
      summary: 'This document',
      responses: { 200: { description: 'the OpenAPI document', media: 'application/json' } },
    },
  },
  '/api/v1/status': {
    get: {
      summary: 'Counts by status, limits, and whether workers poll the builds and init task queues',
      responses: { 200: { description: 'OK', json: statusAnswer }, ...errors(503) },
    },
  },
  '/api/v1/repos': {
    get: {
      summary: 'The configured repo patterns',
      responses: { 200: { description: 'OK', json: z.array(repoAnswer) } },
    },
  },
  '/api/v1/builds': {
    get: {
      summary: 'List builds, newest first: filtered, searched, by pages',
      query: buildListQuery,
      responses: { 200: { description: 'OK', json: z.array(buildAnswer) }, ...errors(400) },
    },
    delete: {
      summary: 'Undeploy every build matching the filters (at least one)',
      auth: 'admin',
      query: buildFilterQuery,
      responses: {
        202: { description: 'undeploying', json: undeployingAnswer },
        ...errors(400, 401, 403, 503),
      },
    },
  },
  '/api/v1/builds/trigger/branch': {
    post: {
      summary: 'Build the head (or a given commit) of a branch',
      auth: 'admin',
      body: { json: triggerBranchBody },
      responses: {
        202: { description: 'asked', json: triggeredAnswer },
        ...errors(400, 401, 403, 413, 503),
        404: { description: 'the branch head was not found on GitHub', json: errorAnswer },
      },
    },
  },
  '/api/v1/builds/trigger/pr': {
    post: {
      summary: 'Build a commit of a pull request',
      auth: 'admin',
      body: { json: triggerPrBody },
      responses: {
        202: { description: 'asked', json: triggeredAnswer },
        ...errors(400, 401, 403, 413, 503),
      },
    },
  },
  '/api/v1/build-events': {
    get: {
      summary:
        'Server-sent events: `upd` and `del`, each with a build (JSON); `: heartbeat` comments',
      responses: {
        200: { description: 'the event stream', media: 'text/event-stream' },
        503: {
          description:
            'too many streams open, in all or from this client address; retry later (Retry-After)',
          json: errorAnswer,
        },
      },
    },
  },
  '/api/v1/builds/{name}': {
    get: {
      summary: 'One build',
      path: buildNamePath,
      responses: { 200: { description: 'OK', json: buildAnswer }, ...errors(404, 503) },
    },
    delete: {
      summary: 'Undeploy a build',
      auth: 'admin',
      path: buildNamePath,
      responses: {
        202: { description: 'undeploying', json: undeployingAnswer },
        ...errors(401, 403, 404, 409, 503),
      },
    },
  },
  '/api/v1/builds/{name}/init-log': {
    get: {
      ...keptLog('init', 'the build has no init log yet (its init has not ended)'),
      query: initLogQuery,
    },
  },
  '/api/v1/builds/{name}/timeline': {
    get: {
      summary: "The build's timeline, from its workflow's history (undeployed builds too)",
      path: buildNamePath,
      responses: {
        200: { description: 'the timeline, oldest entry first', json: timelineAnswer },
        ...errors(404, 503),
      },
    },
  },
  '/api/v1/builds/{name}/cleanup-log': {
    get: keptLog('cleanup', 'the build has no cleanup log yet (no cleanup has ended)'),
  },
  '/api/v1/builds/{name}/build-log': {
    get: keptLog(
      'image build',
      'the build has no image build log yet (no image build has ended; repo entries with `imageBuild`)',
    ),
  },
  '/api/v1/builds/{name}/log': {
    get: {
      summary: 'The log of the running build; with `follow`, streamed until the client leaves',
      path: buildNamePath,
      query: buildLogQuery,
      responses: logAnswers('the build is not started or starting: it has no pod', 400, 404),
    },
  },
  '/api/v1/builds/{name}/start': { post: transition('start') },
  '/api/v1/builds/{name}/stop': { post: transition('stop') },
  '/api/v1/builds/{name}/reset': { post: transition('reset') },
  '/login': {
    get: {
      summary: 'The admin login form (HTML)',
      responses: { 200: { description: 'the form', media: 'text/html' } },
    },
    post: {
      summary: 'Log in: opens an admin session (cookie runboat_session)',
      body: { form: loginForm },
      responses: {
        303: { description: 'logged in: Set-Cookie, and back to `next`' },
        401: { description: 'wrong credential (the form again)', media: 'text/html' },
        403: { description: 'cross-site request refused', json: errorAnswer },
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
      summary: 'GitHub webhook (push, pull_request, delete, ping), signed (X-Hub-Signature-256)',
      responses: {
        200: { description: 'handled, or ignored (the answer says why)', json: webhookAnswer },
        202: { description: 'a build asked for', json: webhookAnswer },
        400: { description: 'not a delivery the API can read', json: errorAnswer },
        401: { description: 'missing or wrong signature', json: errorAnswer },
        413: { description: 'body larger than GitHub sends', json: errorAnswer },
        503: {
          description: 'too many deliveries at once, or Temporal unreachable; retry later',
          json: errorAnswer,
        },
      },
    },
  },
};

/** The JSON schemas that schemas name (`.meta({ id })`), gathered as the document refers to them. */
type Components = Record<string, JsonSchema>;

/** A zod schema as an OpenAPI 3.1 schema; the schemas it names go to `components`. */
function schemaOf(schema: z.ZodType, components: Components): JsonSchema {
  // The input side: what a client sends (a transformed field is documented as it is given).
  const json = z.toJSONSchema(schema, { io: 'input' }) as JsonSchema & { $defs?: Components };
  const { $schema: _dialect, $defs = {}, ...own } = json;
  const refs = (value: unknown): unknown =>
    JSON.parse(JSON.stringify(value).replaceAll('"#/$defs/', '"#/components/schemas/'));
  for (const [id, definition] of Object.entries($defs)) {
    const moved = refs(definition) as JsonSchema;
    const known = components[id];
    if (known && JSON.stringify(known) !== JSON.stringify(moved)) {
      throw new Error(`two different schemas have the id ${id}`);
    }
    components[id] = moved;
  }
  return refs(own) as JsonSchema;
}

/** Parameters of a path or query schema, one per field. */
function parametersOf(where: 'path' | 'query', schema: z.ZodObject, components: Components) {
  return Object.entries(schema.shape).map(([name, field]) => {
    const { description, ...fieldSchema } = schemaOf(field as z.ZodType, components);
    return {
      name,
      in: where,
      required: where === 'path' || !(field as z.ZodType).safeParse(undefined).success,
      ...(typeof description === 'string' ? { description } : {}),
      schema: fieldSchema,
    };
  });
}

function contentOf(answer: Answer, components: Components) {
  if (answer.json) return { 'application/json': { schema: schemaOf(answer.json, components) } };
  if (answer.media) return { [answer.media]: {} };
  return undefined;
}

/** Options of {@link openApiDocument}. */
export interface OpenApiOptions {
  /** Whether anyone may start and stop builds (RUNBOAT_PUBLIC_START_STOP). */
  publicStartStop: boolean;
}

/** The OpenAPI 3.1 document of the API. */
export function openApiDocument(options: OpenApiOptions): Record<string, unknown> {
  const components: Components = {};
  const admin = [{ basic: [] }, { bearer: [] }, { session: [] }];
  const paths = Object.fromEntries(
    Object.entries(routes).map(([path, methods]) => [
      path,
      Object.fromEntries(
        Object.entries(methods).map(([method, route]) => {
          // Public start and stop still take the admin's credential: an empty requirement too.
          const security =
            route.auth === 'admin' || (route.auth === 'start-stop' && !options.publicStartStop)
              ? admin
              : route.auth === 'start-stop'
                ? [{}, ...admin]
                : undefined;
          const parameters = [
            ...(route.path ? parametersOf('path', route.path, components) : []),
            ...(route.query ? parametersOf('query', route.query, components) : []),
          ];
          const body = route.body;
          const requestBody =
            body &&
            ('json' in body
              ? {
                  required: true,
                  content: { 'application/json': { schema: schemaOf(body.json, components) } },
                }
              : {
                  required: true,
                  content: {
                    'application/x-www-form-urlencoded': {
                      schema: schemaOf(body.form, components),
                    },
                  },
                });
          const responses = Object.fromEntries(
            Object.entries(route.responses).map(([code, answer]) => {
              const content = contentOf(answer, components);
              return [code, { description: answer.description, ...(content ? { content } : {}) }];
            }),
          );
          return [
            method,
            {
              summary: route.summary,
              ...(route.description ? { description: route.description } : {}),
              ...(security ? { security } : {}),
              ...(parameters.length ? { parameters } : {}),
              ...(requestBody ? { requestBody } : {}),
              responses,
            },
          ];
        }),
      ),
    ]),
  );
  return {
    openapi: '3.1.0',
    info: {
      title: 'runboat',
      version: '1',
      description: 'Preview builds of every commit of every branch and pull request.',
    },
    paths,
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
      schemas: Object.fromEntries(
        Object.entries(components).sort(([a], [b]) => a.localeCompare(b)),
      ),
    },
  };
}
