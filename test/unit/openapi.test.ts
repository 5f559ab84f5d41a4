/**
 * The API's OpenAPI document, generated from its zod schemas (api/schemas.ts), against the real
 * application (createApp with the real webhook and UI middleware) over real HTTP: it is valid
 * OpenAPI 3.1 (the official schema, vendored: test/unit/schemas/README.md), it lists every route
 * the application serves and nothing it does not, the answers are what it says, and a bad input
 * is a 400 that names the field.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type Router from '@koa/router';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../api/app.js';
import { webUi } from '../../api/ui.js';
import { githubWebhook } from '../../api/webhook.js';
import { annotations, type CommitInfo } from '../../domain/build.js';
import { buildView, type BuildView } from '../../domain/build-view.js';
import { createLogger } from '../../lib/logger.js';
import { noLogs, serve, stubCommands, type Served } from './app-fixture.js';

const TOKEN = 'openapi-test-token-0123456789';
const admin = { authorization: `Bearer ${TOKEN}` };

const build: BuildView = buildView(
  {
    metadata: {
      name: 'b0123456789abcde',
      creationTimestamp: '2024-05-01T10:00:00Z',
      annotations: {
        [annotations.repo]: 'acme/shop',
        [annotations.targetBranch]: 'main',
        [annotations.pr]: '',
        [annotations.gitCommit]: 'a'.repeat(40),
        [annotations.initStatus]: 'succeeded',
        [annotations.lastScaled]: '2024-05-01T10:05:00Z',
      },
    },
    spec: { replicas: 0 },
  },
  'runboat.test',
);

const index = {
  get: (name: string) => (name === build.name ? build : undefined),
  list: () => [build],
  all: (filter: { name?: string } = {}) =>
    filter.name === undefined || filter.name === build.name ? [build] : [],
  find: (name: string) => Promise.resolve(name === build.name ? build : undefined),
  on: () => index,
  off: () => index,
  isSynced: true,
};
/** The commits asked for, as the routes parsed them. */
const triggered: CommitInfo[] = [];
const commands = stubCommands({
  trigger: (commit) => {
    triggered.push(commit);
    return Promise.resolve(`b-${triggered.length}`);
  },
  branchHead: () => Promise.resolve('b'.repeat(40)),
});

let listening: Served;
let base: string;
let router: Router;

beforeAll(async () => {
  const logger = createLogger('silent');
  const app = createApp({
    index: index as never,
    commands,
    logs: { ...noLogs, initLog: () => Promise.resolve('init: succeeded') },
    settings: {
      repos: () => [{ repo: 'acme/.*', branch: '.*', sticky: true }] as never,
      maxStarted: 2,
      maxDeployed: 10,
      admin: { token: TOKEN },
      publicStartStop: false,
    },
    temporalReady: () => Promise.resolve(true),
    logger,
    metrics: new Registry(),
    extra: [
      githubWebhook({ secret: 'shh', insecure: false, commands, index, logger }),
      webUi({
        index,
        commands,
        repos: () => [{ repo: 'acme/.*', branch: '.*', sticky: false }],
        publicStartStop: false,
        logger,
      }),
    ],
  });
  // The API's router: the middleware @koa/router made (its `router` is the router itself).
  const routes = app.middleware
    .map((middleware) => (middleware as { router?: Router }).router)
    .filter((found) => found !== undefined);
  expect(routes).toHaveLength(1);
  router = routes[0]!;
  listening = await serve(app);
  base = listening.base;
});

afterAll(() => listening.close());

async function call(
  method: string,
  path: string,
  options: { body?: string; auth?: boolean; type?: string } = {},
) {
  const response = await fetch(`${base}${path}`, {
    method,
    redirect: 'manual',
    headers: {
      ...(options.auth ? admin : {}),
      ...(options.type ? { 'content-type': options.type } : {}),
    },
    body: options.body ?? null,
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, type: response.headers.get('content-type') ?? '', json, text };
}

const post = (path: string, body: unknown) =>
  call('POST', path, { body: JSON.stringify(body), auth: true, type: 'application/json' });

interface Operation {
  parameters?: { name: string; in: string; required: boolean; schema: object }[];
  requestBody?: { content: Record<string, { schema: object }> };
  responses: Record<string, { content?: Record<string, { schema?: object }> }>;
  security?: object[];
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, object> };
}

async function served(): Promise<Document> {
  const answer = await call('GET', '/api/v1/openapi.json');
  expect(answer.status).toBe(200);
  return answer.json as Document;
}

const here = dirname(fileURLToPath(import.meta.url));
// Ajv resolves the schema's `$dynamicRef: "#meta"` to the wrong place; with no dialect of ours
// extending it, it means the schema's own Schema Object definition, as a plain `$ref`.
const oasSchema = JSON.parse(
  readFileSync(join(here, 'schemas', 'openapi-3.1.json'), 'utf8').replaceAll(
    '"$dynamicRef": "#meta"',
    '"$ref": "#/$defs/schema"',
  ),
) as object;

/** A validator of the document's own schemas: `#/components/schemas/X` resolves in it. */
function documentSchemas(document: Document) {
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ $id: 'doc', components: document.components });
  return (schema: object) =>
    ajv.compile(
      JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"doc#/components/')),
    );
}

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1, every schema in it valid JSON Schema with every reference found', async () => {
    const document = await served();
    expect(document.openapi).toBe('3.1.0');
    const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
    const validate = ajv.compile(oasSchema);
    expect(validate(document), ajv.errorsText(validate.errors)).toBe(true);
    // The check can fail: a parameter that does not say where it is, is refused.
    const broken = { ...document, paths: { '/x': { get: { parameters: [{ name: 'a' }] } } } };
    expect(validate(broken)).toBe(false);

    const compile = documentSchemas(document);
    const schemas: object[] = [];
    for (const operations of Object.values(document.paths)) {
      for (const operation of Object.values(operations)) {
        for (const parameter of operation.parameters ?? []) schemas.push(parameter.schema);
        for (const media of Object.values(operation.requestBody?.content ?? {})) {
          schemas.push(media.schema);
        }
        for (const answer of Object.values(operation.responses)) {
          for (const media of Object.values(answer.content ?? {})) {
            if (media.schema) schemas.push(media.schema);
          }
        }
      }
    }
    schemas.push(...Object.values(document.components.schemas));
    expect(schemas.length).toBeGreaterThan(40);
    // Compiling resolves every $ref: one that points nowhere throws.
    for (const schema of schemas) expect(() => compile(schema)).not.toThrow();
  });

  it('lists every route of the API router, and every path it lists is served', async () => {
    const document = await served();
    const documented = new Set(
      Object.entries(document.paths).flatMap(([path, operations]) =>
        Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`),
      ),
    );
    const registered = new Set(
      router.stack.flatMap((layer) =>
        layer.methods
          .filter((method) => method !== 'HEAD')
          .map((method) => `${method} ${String(layer.path).replace(/:(\w+)/g, '{$1}')}`),
      ),
    );
    expect(registered.size).toBeGreaterThan(15);
    const missing = [...registered].filter((route) => !documented.has(route));
    expect(missing, 'routes of api/app.ts missing from api/openapi-document.ts').toEqual([]);

    // The documented routes no router holds (the webhook, the login form) are answered by
    // their middleware, not by the API's "no such path".
    for (const route of documented) {
      const [method = '', path = ''] = route.split(' ');
      if (path === '/api/v1/build-events') {
        // A stream: its first bytes say it is there.
        const controller = new AbortController();
        const stream = await fetch(`${base}${path}`, { signal: controller.signal });
        expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
        controller.abort();
        continue;
      }
      const answer = await call(method, path.replace('{name}', build.name), {
        auth: true,
        type: 'application/json',
        body: method === 'GET' || method === 'DELETE' ? undefined : '{}',
      });
      expect(answer.text, route).not.toMatch(/no such path/);
      expect(answer.status, route).not.toBe(405);
    }
  });

  it('says which routes need the admin: start and stop only while they are not public', async () => {
    const document = await served();
    const security = (path: string, method: string) => document.paths[path]?.[method]?.security;
    expect(security('/api/v1/builds/trigger/branch', 'post')).toContainEqual({ bearer: [] });
    expect(security('/api/v1/builds/{name}/reset', 'post')).toContainEqual({ bearer: [] });
    expect(security('/api/v1/builds/{name}/start', 'post')).not.toContainEqual({});
    expect(security('/api/v1/builds', 'get')).toBeUndefined();
  });

  it('describes the answers the API gives', async () => {
    const document = await served();
    const compile = documentSchemas(document);
    const check = async (path: string, url = path, status = 200) => {
      const answer = await call('GET', url);
      expect(answer.status, url).toBe(status);
      const schema = document.paths[path]?.get?.responses[String(status)]?.content?.[
        'application/json'
      ]?.schema as object;
      const validate = compile(schema);
      expect(validate(answer.json), `${url}: ${JSON.stringify(validate.errors)}`).toBe(true);
    };
    await check('/healthz');
    await check('/readyz');
    await check('/api/v1/status');
    await check('/api/v1/repos');
    await check('/api/v1/builds', '/api/v1/builds?repo=acme/shop&pr=&status=stopped');
    await check('/api/v1/builds/{name}', `/api/v1/builds/${build.name}`);
    await check('/api/v1/builds/{name}', '/api/v1/builds/bnothere', 404);
    await check('/api/v1/builds', '/api/v1/builds?status=bogus', 400);

    const asked = await post('/api/v1/builds/trigger/branch', { repo: 'Acme/Shop', branch: 'x' });
    expect(asked).toMatchObject({ status: 202, json: { build: 'b-1' } });
    const schema = document.paths['/api/v1/builds/trigger/branch']?.post?.responses['202']
      ?.content?.['application/json']?.schema as object;
    expect(compile(schema)(asked.json)).toBe(true);
  });
});

describe('input validated by the schemas', () => {
  it('answers a bad body 400, naming each bad field', async () => {
    const before = triggered.length;
    const branch = '/api/v1/builds/trigger/branch';
    const pr = '/api/v1/builds/trigger/pr';
    const refused = async (path: string, body: unknown) => {
      const answer = await post(path, body);
      expect(answer.status, JSON.stringify(body)).toBe(400);
      return (answer.json as { error: string }).error;
    };
    expect(await refused(branch, { repo: 'acme/shop' })).toBe('branch: required string');
    expect(await refused(branch, { repo: 'acme/shop', branch: 7 })).toBe('branch: required string');
    expect(await refused(branch, { repo: 'acme', branch: 'main', sha: 'abc' })).toBe(
      'repo: expected owner/name; sha: expected a commit SHA of 40 lower-case hex digits',
    );
    expect(await refused(branch, ['acme/shop', 'main'])).toBe('body: expected a JSON object');
    expect(
      await refused(pr, { repo: 'acme/shop', pr: 0, target_branch: 'main', sha: 'c'.repeat(40) }),
    ).toBe('pr: required positive integer');
    expect(await refused(pr, { repo: 'acme/shop', pr: 3, sha: 'c'.repeat(40) })).toBe(
      'target_branch: required string',
    );

    const malformed = await call('POST', branch, { body: '{"repo": ', auth: true });
    expect(malformed).toMatchObject({ status: 400, json: { error: 'body: not valid JSON' } });
    // The credential before the body: an anonymous request is a 401 whatever it sends.
    expect((await call('POST', branch, { body: '{}' })).status).toBe(401);
    expect(triggered).toHaveLength(before);
  });

  it('hands the routes what the schemas parsed', async () => {
    const answer = await post('/api/v1/builds/trigger/pr', {
      repo: 'Acme/Shop',
      pr: 12,
      target_branch: 'main',
      sha: 'c'.repeat(40),
      head_repo: 'Someone/Shop',
      unknown: 'ignored',
    });
    expect(answer.status).toBe(202);
    expect(triggered.at(-1)).toEqual({
      repo: 'acme/shop',
      targetBranch: 'main',
      pr: 12,
      gitCommit: 'c'.repeat(40),
      headRepo: 'someone/shop',
    });
    await post('/api/v1/builds/trigger/branch', { repo: 'acme/shop', branch: 'feature/x' });
    // Without a commit, the branch head (from GitHub) is built.
    expect(triggered.at(-1)).toMatchObject({
      targetBranch: 'feature/x',
      gitCommit: 'b'.repeat(40),
    });
  });

  it('answers a bad query 400, naming the parameter', async () => {
    const error = async (url: string) => {
      const answer = await call('GET', url);
      expect(answer.status, url).toBe(400);
      return (answer.json as { error: string }).error;
    };
    expect(await error('/api/v1/builds?pr=abc')).toBe('pr: not a pull request number');
    expect(await error('/api/v1/builds?pr=-2')).toBe('pr: not a pull request number');
    expect(await error('/api/v1/builds?status=bogus')).toMatch(/^status: one of queued, todo, /);
    expect(await error('/api/v1/builds?repo=a/b&repo=c/d')).toBe('repo: give it once');
    expect(await error('/api/v1/builds?pr=1&pr=2&status=x&status=y')).toBe(
      'pr: not a pull request number; status: give it once',
    );
    const log = `/api/v1/builds/${build.name}/log`;
    expect(await error(`${log}?tail=0`)).toBe('tail: an integer from 1 to 100000');
    expect(await error(`${log}?tail=100001&follow=maybe`)).toBe(
      'tail: an integer from 1 to 100000; follow: true or false',
    );
    const none = await call('DELETE', '/api/v1/builds?repo=', { auth: true });
    expect(none.status).toBe(400);
    expect((none.json as { error: string }).error).toMatch(/^give at least one filter/);
  });
});
