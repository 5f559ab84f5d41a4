/**
 * The webhook receiver in a real Koa server, fed real HTTP deliveries with real signatures. The
 * build commands and the index are in-memory fakes that record what the webhook asked of them.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Webhooks } from '@octokit/webhooks';
import Koa from 'koa';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { BuildCommands, Transition } from '../../api/commands.js';
import type { BuildFilter } from '../../api/build-index.js';
import { githubWebhook, type WebhookDeps } from '../../api/webhook.js';
import type { CommitInfo } from '../../domain/build.js';
import { buildView, type BuildView } from '../../domain/build-view.js';
import type { BuildTrigger } from '../../domain/messages.js';
import { buildName } from '../../domain/names.js';
import {
  BuildNotFoundError,
  InvalidTransitionError,
  UnsupportedRepoError,
} from '../../lib/errors.js';
import {
  checkRunPayload,
  commitSha,
  type CheckRunOptions,
  deletePayload,
  deliver,
  NULL_SHA,
  pingPayload,
  postDelivery,
  pullRequestPayload,
  pushPayload,
  signPayload,
} from '../../dev/webhook-deliveries.js';

const SECRET = 'It is a secret to everybody';
const REPO = 'acme/widgets';

/** Build commands that record every call; builds are named as the real ones are. */
class FakeCommands implements BuildCommands {
  readonly triggers: [CommitInfo, BuildTrigger][] = [];
  readonly transitions: [string, Transition][] = [];
  readonly supportsCalls: [string, string][] = [];
  /** Which repos and branches are configured; every branch of acme/widgets by default. */
  configured: (repo: string, branch: string) => boolean = (repo) => repo === REPO;
  triggerError: Error | undefined;
  transitionErrors = new Map<string, Error>();

  async trigger(commit: CommitInfo, trigger: BuildTrigger): Promise<string> {
    this.triggers.push([commit, trigger]);
    if (this.triggerError) throw this.triggerError;
    return buildName(commit);
  }

  async transition(name: string, transition: Transition): Promise<void> {
    this.transitions.push([name, transition]);
    const error = this.transitionErrors.get(name);
    if (error) throw error;
  }

  supports(repo: string, branch: string): boolean {
    this.supportsCalls.push([repo, branch]);
    return this.configured(repo, branch);
  }

  async branchHead(): Promise<string | undefined> {
    return undefined;
  }
}

/** The existing build of a commit, as the index shows it. */
function existingBuild(commit: CommitInfo): BuildView {
  return buildView(
    {
      metadata: {
        name: buildName(commit),
        annotations: {
          'runboat/repo': commit.repo,
          'runboat/target-branch': commit.targetBranch,
          'runboat/pr': commit.pr === null ? '' : String(commit.pr),
          'runboat/git-commit': commit.gitCommit,
          'runboat/init-status': 'succeeded',
        },
      },
      spec: { replicas: 0 },
    },
    'runboat.test',
  );
}

/** An index over a fixed list of builds, filtering like the real one. */
function fakeIndex(builds: BuildView[]): WebhookDeps['index'] {
  return {
    get: (name: string) => builds.find((build) => build.name === name),
    list: (filter: BuildFilter = {}) =>
      builds.filter(
        ({ commit_info: info }) =>
          (filter.repo === undefined || info.repo === filter.repo.toLowerCase()) &&
          (filter.targetBranch === undefined || info.target_branch === filter.targetBranch) &&
          (filter.pr === undefined || info.pr === filter.pr),
      ),
  };
}

interface Receiver {
  url: string;
  commands: FakeCommands;
  /** Every log line, parsed. */
  logs: Record<string, unknown>[];
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))),
  );
});

/** Starts the webhook in a Koa app on a free loopback port. */
async function startReceiver(
  options: {
    builds?: BuildView[];
    /** Repo owner → the App's installation id. */
    installations?: Record<string, number>;
    secret?: string | undefined;
    insecure?: boolean;
    maxConcurrent?: number;
  } = {},
): Promise<Receiver> {
  const commands = new FakeCommands();
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const app = new Koa();
  app.use(
    githubWebhook({
      secret: 'secret' in options ? options.secret : SECRET,
      insecure: options.insecure ?? false,
      commands,
      index: fakeIndex(options.builds ?? []),
      logger: pino({ level: 'info' }, sink),
      ...(options.maxConcurrent === undefined ? {} : { maxConcurrent: options.maxConcurrent }),
      ...(options.installations
        ? {
            installationOf: (repo: string) =>
              Promise.resolve(options.installations?.[repo.split('/')[0] ?? '']),
          }
        : {}),
    }),
  );
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/webhooks/github`, commands, logs };
}

const branchBuild = (targetBranch: string, seed: string, repo = REPO) =>
  existingBuild({ repo, targetBranch, pr: null, gitCommit: commitSha(seed) });
const prBuild = (pr: number, seed: string, targetBranch = 'main') =>
  existingBuild({ repo: REPO, targetBranch, pr, gitCommit: commitSha(seed) });

describe('github webhook: events', () => {
  it('answers a ping', async () => {
    const { url, commands } = await startReceiver();
    const response = await deliver(url, 'ping', pingPayload(), SECRET);
    expect(response).toEqual({ status: 200, body: { ok: true, pong: true } });
    expect(commands.triggers).toEqual([]);
  });

  it('asks for a build of a pushed branch, repo in lower case, delivery id as trigger', async () => {
    const { url, commands } = await startReceiver();
    const after = commitSha('main 1');
    const response = await deliver(url, 'push', pushPayload({ after }), SECRET, 'delivery-1');
    const commit = { repo: REPO, targetBranch: 'main', pr: null, gitCommit: after };
    expect(response).toEqual({ status: 202, body: { build: buildName(commit) } });
    // The head commit's message and author come along, for the build's card.
    expect(commands.triggers).toEqual([
      [
        { ...commit, message: 'Fix the widget', author: 'Octo Cat' },
        { kind: 'webhook', id: 'delivery-1' },
      ],
    ]);
  });

  it('keeps the slashes of a branch name', async () => {
    const { url, commands } = await startReceiver();
    await deliver(url, 'push', pushPayload({ branch: 'feature/a/b' }), SECRET);
    expect(commands.supportsCalls).toEqual([[REPO, 'feature/a/b']]);
    expect(commands.triggers[0]?.[0].targetBranch).toBe('feature/a/b');
  });

  it('ignores a tag push', async () => {
    const { url, commands } = await startReceiver();
    const response = await deliver(url, 'push', pushPayload({ ref: 'refs/tags/v1.0' }), SECRET);
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ ignored: expect.stringContaining('refs/tags/v1.0') });
    expect(commands.triggers).toEqual([]);
  });

  it.each([
    ['deleted: true', { deleted: true }],
    ['after all zeros', { after: NULL_SHA }],
  ])('undeploys only the non-PR builds of a branch deleted by a push (%s)', async (_, deletion) => {
    const main1 = branchBuild('main', 'main 1');
    const main2 = branchBuild('main', 'main 2');
    const builds = [
      main1,
      main2,
      prBuild(7, 'pr 7'),
      branchBuild('main-2', 'main-2 1'),
      branchBuild('main', 'other main', 'acme/other'),
    ];
    const { url, commands } = await startReceiver({ builds });
    const response = await deliver(url, 'push', pushPayload(deletion), SECRET);
    expect(response).toEqual({ status: 200, body: { undeployed: [main1.name, main2.name] } });
    expect(commands.transitions).toEqual([
      [main1.name, 'undeploy'],
      [main2.name, 'undeploy'],
    ]);
    expect(commands.triggers).toEqual([]);
  });

  it('undeploys the builds of a branch on a delete event, slashes kept', async () => {
    const deleted = branchBuild('feature/a/b', 'f 1');
    const builds = [deleted, branchBuild('feature/a', 'f 2'), prBuild(3, 'pr 3', 'feature/a/b')];
    const { url, commands } = await startReceiver({ builds });
    const response = await deliver(url, 'delete', deletePayload({ ref: 'feature/a/b' }), SECRET);
    expect(response).toEqual({ status: 200, body: { undeployed: [deleted.name] } });
    expect(commands.transitions).toEqual([[deleted.name, 'undeploy']]);
  });

  it('ignores a deleted tag', async () => {
    const builds = [branchBuild('v1.0', 'v1')];
    const { url, commands } = await startReceiver({ builds });
    const payload = deletePayload({ ref: 'v1.0', refType: 'tag' });
    const response = await deliver(url, 'delete', payload, SECRET);
    expect(response.status).toBe(200);
    expect(response.body).toHaveProperty('ignored');
    expect(commands.transitions).toEqual([]);
  });

  it.each(['opened', 'synchronize', 'reopened'])(
    'asks for a build of a pull request %s, on its base branch',
    async (action) => {
      const { url, commands } = await startReceiver();
      const headSha = commitSha(`pr ${action}`);
      const payload = pullRequestPayload({ action, number: 12, baseRef: '16.0', headSha });
      const response = await deliver(url, 'pull_request', payload, SECRET, 'delivery-pr');
      const commit = { repo: REPO, targetBranch: '16.0', pr: 12, gitCommit: headSha };
      expect(response).toEqual({ status: 202, body: { build: buildName(commit) } });
      // The head repo (here the repo itself) says whether the pull request comes from a fork.
      expect(commands.triggers).toEqual([
        [
          { ...commit, headRepo: REPO, message: 'Make the widget spin', author: 'octocat' },
          { kind: 'webhook', id: 'delivery-pr' },
        ],
      ]);
    },
  );

  it.each([
    ['a fork', 'Mallory/Widgets', 'mallory/widgets'],
    ['a deleted fork', null, null],
  ])('tells a pull request from %s by its head repo', async (_, headRepo, expected) => {
    const { url, commands } = await startReceiver();
    const payload = pullRequestPayload({ number: 13, headRepo: headRepo ?? 'Mallory/Widgets' });
    if (headRepo === null) {
      (payload.pull_request as { head: { repo: unknown } }).head.repo = null;
    }
    const response = await deliver(url, 'pull_request', payload, SECRET);
    expect(response.status).toBe(202);
    expect(commands.triggers[0]?.[0]).toMatchObject({ pr: 13, headRepo: expected });
  });

  it('undeploys only the builds of a closed pull request', async () => {
    const pr12a = prBuild(12, 'pr 12 a');
    const pr12b = prBuild(12, 'pr 12 b', '16.0');
    const builds = [pr12a, pr12b, prBuild(13, 'pr 13'), branchBuild('main', 'main 1')];
    const { url, commands } = await startReceiver({ builds });
    const payload = pullRequestPayload({ action: 'closed', number: 12, merged: true });
    const response = await deliver(url, 'pull_request', payload, SECRET);
    expect(response).toEqual({ status: 200, body: { undeployed: [pr12a.name, pr12b.name] } });
    expect(commands.transitions).toEqual([
      [pr12a.name, 'undeploy'],
      [pr12b.name, 'undeploy'],
    ]);
  });

  it('ignores other pull request actions and other events', async () => {
    const { url, commands } = await startReceiver({ builds: [prBuild(42, 'pr 42')] });
    const labeled = await deliver(
      url,
      'pull_request',
      pullRequestPayload({ action: 'labeled' }),
      SECRET,
    );
    expect(labeled).toEqual({ status: 200, body: { ignored: expect.stringContaining('labeled') } });
    const issues = await deliver(url, 'issues', { action: 'opened', issue: {} }, SECRET);
    expect(issues).toEqual({ status: 200, body: { ignored: expect.stringContaining('issues') } });
    expect(commands.triggers).toEqual([]);
    expect(commands.transitions).toEqual([]);
  });

  it('ignores a repo or branch that is not configured, creating nothing', async () => {
    const { url, commands } = await startReceiver();
    commands.configured = (repo, branch) => repo === REPO && branch === 'main';
    const otherRepo = await deliver(url, 'push', pushPayload({ repo: 'Acme/Other' }), SECRET);
    expect(otherRepo.status).toBe(200);
    expect(otherRepo.body).toEqual({ ignored: expect.stringContaining('acme/other') });
    const otherBase = pullRequestPayload({ baseRef: 'develop' });
    expect((await deliver(url, 'pull_request', otherBase, SECRET)).body).toHaveProperty('ignored');
    expect(commands.supportsCalls).toEqual([
      ['acme/other', 'main'],
      [REPO, 'develop'],
    ]);
    expect(commands.triggers).toEqual([]);
  });

  it('ignores a repo that stopped being configured between the check and the trigger', async () => {
    const { url, commands } = await startReceiver();
    commands.triggerError = new UnsupportedRepoError(REPO, 'main');
    const response = await deliver(url, 'push', pushPayload(), SECRET);
    expect(response.status).toBe(200);
    expect(response.body).toHaveProperty('ignored');
  });

  it('counts a build already undeploying or gone as undeployed', async () => {
    const going = branchBuild('main', 'going');
    const gone = branchBuild('main', 'gone');
    const { url, commands } = await startReceiver({ builds: [going, gone] });
    commands.transitionErrors.set(going.name, new InvalidTransitionError('already undeploying'));
    commands.transitionErrors.set(gone.name, new BuildNotFoundError(gone.name));
    const response = await deliver(url, 'push', pushPayload({ deleted: true }), SECRET);
    expect(response).toEqual({ status: 200, body: { undeployed: [going.name, gone.name] } });
  });

  it('lets other failures of the commands through to the error middleware', async () => {
    const { url, commands } = await startReceiver();
    commands.triggerError = new Error('Temporal is unavailable');
    const response = await deliver(url, 'push', pushPayload(), SECRET);
    // Koa's own error handler, standing in for the app's.
    expect(response.status).toBe(500);
  });

  it('passes the same delivery twice to the commands, unchanged: idempotency is theirs', async () => {
    const { url, commands } = await startReceiver();
    const payload = pushPayload({ branch: '17.0' });
    const first = await deliver(url, 'push', payload, SECRET, 'delivery-twice');
    const second = await deliver(url, 'push', payload, SECRET, 'delivery-twice');
    expect(second).toEqual(first);
    expect(commands.triggers).toHaveLength(2);
    expect(commands.triggers[1]).toEqual(commands.triggers[0]);
  });
});

describe('github webhook: check run buttons', () => {
  const INSTALLATION = 4242;
  const build = branchBuild('main', 'checked');
  const press = (identifier: string, overrides: Partial<CheckRunOptions> = {}) =>
    checkRunPayload({
      externalId: build.name,
      headSha: build.commit_info.git_commit,
      installation: INSTALLATION,
      ...overrides,
      identifier: overrides.identifier ?? identifier,
    });
  const receiver = () =>
    startReceiver({ builds: [build], installations: { acme: INSTALLATION, other: 7 } });

  it.each(['start', 'stop', 'reset'])('presses %s on the build of the check run', async (id) => {
    const { url, commands } = await receiver();
    const response = await deliver(url, 'check_run', press(id), SECRET);
    expect(response).toEqual({ status: 202, body: { build: build.name, transition: id } });
    expect(commands.transitions).toEqual([[build.name, id]]);
  });

  it.each([
    ['another installation', { installation: 7 }, 403, 'installation 7'],
    ['another repo', { repo: 'Other/Widgets' }, 403, 'does not match'],
    ['another commit', { headSha: commitSha('other') }, 403, 'does not match'],
    ['an unknown build', { externalId: 'b-nope' }, 404, 'no build b-nope'],
    ['an unknown button', { identifier: 'drop' }, 400, 'unknown action drop'],
  ] as const)('refuses a press from %s, acting on nothing', async (_, overrides, status, says) => {
    const { url, commands } = await receiver();
    const response = await deliver(url, 'check_run', press('reset', overrides), SECRET);
    expect(response).toEqual({ status, body: { error: expect.stringContaining(says) } });
    expect(commands.transitions).toEqual([]);
  });

  it('refuses every press without a GitHub App', async () => {
    const { url, commands } = await startReceiver({ builds: [build] });
    const response = await deliver(url, 'check_run', press('start'), SECRET);
    expect(response.status).toBe(403);
    expect(commands.transitions).toEqual([]);
  });

  it('ignores the other check run actions', async () => {
    const { url, commands } = await receiver();
    const payload = { ...press('start'), action: 'created' };
    const response = await deliver(url, 'check_run', payload, SECRET);
    expect(response).toEqual({
      status: 200,
      body: { ignored: expect.stringContaining('created') },
    });
    expect(commands.transitions).toEqual([]);
  });
});

describe('github webhook: signatures', () => {
  it('signs as GitHub does (checked against octokit)', async () => {
    const body = JSON.stringify(pushPayload());
    const octokit = new Webhooks({ secret: SECRET });
    expect(signPayload(body, SECRET)).toBe(await octokit.sign(body));
    expect(await octokit.verify(body, signPayload(body, SECRET))).toBe(true);
  });

  it.each([
    ['a missing signature', (_body: string) => undefined],
    ['a malformed signature', (_body: string) => 'sha256=not-hex'],
    ['a signature of the right shape but wrong', (_body: string) => `sha256=${'0'.repeat(64)}`],
    ['a signature made with another secret', (body: string) => signPayload(body, 'another')],
    [
      'a signature of the body before it was altered',
      // The delivered body pushes to `evil`; GitHub signed the one that pushed to `main`.
      (body: string) => signPayload(body.replace('refs/heads/evil', 'refs/heads/main'), SECRET),
    ],
  ])('refuses %s with 401 and does nothing', async (_, sign) => {
    const { url, commands } = await startReceiver();
    const body = JSON.stringify(pushPayload({ branch: 'evil' }));
    const signature = sign(body);
    const response = await postDelivery(url, body, {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': 'delivery-forged',
      ...(signature === undefined ? {} : { 'x-hub-signature-256': signature }),
    });
    expect(response.status).toBe(401);
    expect(response.body).toEqual({ error: expect.stringContaining('x-hub-signature-256') });
    expect(commands.triggers).toEqual([]);
    expect(commands.supportsCalls).toEqual([]);
  });

  it('accepts unsigned deliveries in insecure mode', async () => {
    const { url, commands } = await startReceiver({ secret: undefined, insecure: true });
    const response = await deliver(url, 'push', pushPayload(), undefined);
    expect(response.status).toBe(202);
    expect(commands.triggers).toHaveLength(1);
  });

  it('still refuses a wrong signature in insecure mode when it has a secret', async () => {
    const { url } = await startReceiver({ insecure: true });
    expect((await deliver(url, 'push', pushPayload(), undefined)).status).toBe(202);
    expect((await deliver(url, 'push', pushPayload(), 'another')).status).toBe(401);
  });

  it('refuses to be created without a secret unless insecure, and warns when insecure', () => {
    const deps = {
      insecure: false,
      commands: new FakeCommands(),
      index: fakeIndex([]),
      logger: pino({ level: 'silent' }),
    };
    expect(() => githubWebhook({ ...deps, secret: undefined })).toThrow(/secret/);
    expect(() => githubWebhook({ ...deps, secret: '' })).toThrow(/secret/);
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
    githubWebhook({ ...deps, secret: undefined, insecure: true, logger });
    expect(warnings.join('')).toMatch(/insecure/);
  });

  it('logs each delivery without the secret or the signature', async () => {
    const { url, logs } = await startReceiver();
    const body = JSON.stringify(pushPayload());
    const signature = signPayload(body, SECRET);
    await deliver(url, 'push', body, SECRET, 'delivery-logged');
    await deliver(url, 'push', body, 'another', 'delivery-forged');
    expect(logs).toContainEqual(
      expect.objectContaining({
        level: 30,
        delivery: 'delivery-logged',
        event: 'push',
        repo: REPO,
        outcome: 'build',
      }),
    );
    expect(logs).toContainEqual(
      expect.objectContaining({ delivery: 'delivery-forged', status: 401 }),
    );
    const text = JSON.stringify(logs);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(signature.slice('sha256='.length));
  });
});

describe('github webhook: bad input', () => {
  /** Posts a signed body, so that only what is under test is wrong. */
  const signed = (url: string, body: string, headers: Record<string, string> = {}) =>
    postDelivery(url, body, {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-hub-signature-256': signPayload(body, SECRET),
      ...headers,
    });

  it('refuses a body that is not JSON, or not a JSON object', async () => {
    const { url } = await startReceiver();
    expect(await signed(url, '{"ref": "refs/heads/main",')).toEqual({
      status: 400,
      body: { error: expect.stringContaining('not valid JSON') },
    });
    expect(await signed(url, '')).toMatchObject({ status: 400 });
    expect(await signed(url, '["push"]')).toEqual({
      status: 400,
      body: { error: expect.stringContaining('JSON object') },
    });
  });

  it('points at the content type when the hook sends form-encoded payloads', async () => {
    const { url } = await startReceiver();
    const body = `payload=${encodeURIComponent(JSON.stringify(pushPayload()))}`;
    const response = await signed(url, body, {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(response).toEqual({
      status: 400,
      body: { error: expect.stringContaining('application/json') },
    });
  });

  it.each([
    ['push', 'ref', { ...pushPayload(), ref: undefined }],
    ['push', 'repository.full_name', { ...pushPayload(), repository: { name: 'widgets' } }],
    ['push', 'after', { ...pushPayload(), after: 'main' }],
    ['pull_request', 'pull_request.number', pullRequestPayload({ number: 0 })],
    [
      'pull_request',
      'pull_request.head.sha',
      (() => {
        const payload = pullRequestPayload();
        (payload.pull_request as { head: object }).head = {};
        return payload;
      })(),
    ],
    ['delete', 'ref_type', { ...deletePayload(), ref_type: undefined }],
  ])('refuses a %s event without a valid %s, naming it', async (event, fieldName, payload) => {
    const { url, commands } = await startReceiver();
    const response = await deliver(url, event, payload, SECRET);
    expect(response).toEqual({
      status: 400,
      body: { error: expect.stringContaining(`${fieldName}:`) },
    });
    expect(commands.triggers).toEqual([]);
  });

  it('refuses a delivery without an event name', async () => {
    const { url } = await startReceiver();
    const body = JSON.stringify(pushPayload());
    const response = await postDelivery(url, body, {
      'content-type': 'application/json',
      'x-hub-signature-256': signPayload(body, SECRET),
    });
    expect(response).toEqual({
      status: 400,
      body: { error: expect.stringContaining('x-github-event') },
    });
  });

  it('refuses a body larger than GitHub ever sends, declared or streamed', async () => {
    const { url, commands } = await startReceiver();
    const big = new Uint8Array(25 * 1024 * 1024 + 1).fill(0x20);
    expect(await signed(url, Buffer.from(big).toString())).toMatchObject({ status: 413 });
    // Without a content-length the limit is enforced while reading.
    const chunk = new Uint8Array(1024 * 1024).fill(0x20);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 26; i++) controller.enqueue(chunk);
        controller.close();
      },
    });
    const response = await fetch(url, {
      method: 'POST',
      body: stream,
      headers: { 'x-github-event': 'push' },
      duplex: 'half',
    } as RequestInit);
    expect(response.status).toBe(413);
    expect(await response.json()).toEqual({ error: expect.stringContaining('larger') });
    expect(commands.triggers).toEqual([]);
  });

  it('answers 503 with retry-after past the concurrency cap, never dropping a connection', async () => {
    const { url, commands } = await startReceiver({ maxConcurrent: 2 });
    // Two deliveries held inside the commands: the cap is reached.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const trigger = commands.trigger.bind(commands);
    commands.trigger = async (commit, how) => {
      await held;
      return trigger(commit, how);
    };
    const first = deliver(
      url,
      'push',
      pushPayload({ repo: REPO, after: commitSha('cap-1') }),
      SECRET,
    );
    const second = deliver(
      url,
      'push',
      pushPayload({ repo: REPO, after: commitSha('cap-2') }),
      SECRET,
    );
    await expect.poll(() => commands.supportsCalls.length).toBe(2);
    const body = JSON.stringify(pushPayload({ repo: REPO, after: commitSha('cap-3') }));
    const refused = await fetch(url, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-hub-signature-256': signPayload(body, SECRET),
      },
    });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toEqual({ error: expect.stringContaining('at once') });
    release();
    expect((await first).status).toBe(202);
    expect((await second).status).toBe(202);
    // Below the cap again: the refused delivery, sent again, is handled.
    expect(
      (
        await postDelivery(url, body, {
          'content-type': 'application/json',
          'x-github-event': 'push',
          'x-hub-signature-256': signPayload(body, SECRET),
        })
      ).status,
    ).toBe(202);
    expect(commands.triggers.map(([commit]) => commit.gitCommit)).toEqual([
      commitSha('cap-1'),
      commitSha('cap-2'),
      commitSha('cap-3'),
    ]);
  });

  it('leaves other methods and paths to the next middleware', async () => {
    const { url } = await startReceiver();
    expect((await fetch(url)).status).toBe(404);
    const elsewhere = await deliver(`${url}/more`, 'push', pushPayload(), SECRET);
    expect(elsewhere.status).toBe(404);
  });
});
