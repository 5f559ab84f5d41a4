/**
 * A dead worker is not silent: with no worker polling, the API and every UI page say which task
 * queue has none, and a build accepted by the webhook or the API is shown `queued` (from its
 * workflow's search attributes) instead of 404. Then a worker starts: the banner goes and the
 * builds deploy and initialize. Real API process, Temporal and Kubernetes; the worker is started
 * only halfway through.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildView } from '../../domain/build-view.js';
import { buildName } from '../../domain/names.js';
import { spawnApi, type WorkerProcess } from '../../dev/worker-process.js';
import { deliver, pushPayload } from '../../dev/webhook-deliveries.js';
import type { WorkerStatus } from '../../api/worker-status.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const SECRET = 'no-worker-secret';
const TOKEN = 'no-worker-admin-token-0123456789';
let env: BuildEnv;
let api: WorkerProcess & { url: string };

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.acme] });
  api = await spawnApi(
    {
      ...env.workerEnv,
      RUNBOAT_API_PORT: '0',
      RUNBOAT_WEBHOOK_SECRET: SECRET,
      RUNBOAT_ADMIN_TOKEN: TOKEN,
    },
    join(await mkdtemp(join(tmpdir(), 'runboat-no-worker-')), 'api.log'),
  );
});

afterAll(async () => {
  await api?.stop();
  await env?.close();
});

async function getJson<T>(path: string): Promise<{ status: number; body: T }> {
  const response = await fetch(`${api.url}${path}`);
  return { status: response.status, body: (await response.json()) as T };
}

async function getHtml(path: string): Promise<string> {
  const response = await fetch(`${api.url}${path}`);
  expect(response.status).toBe(200);
  return response.text();
}

interface Status {
  deployed: number;
  counts: Record<string, number>;
  workers: WorkerStatus;
}

/** The banner of a page: its markup and its lines. */
function banner(html: string): { hidden: boolean; lines: string[] } {
  const match = /<div id="banner"([^>]*)>([\s\S]*?)<\/div>/.exec(html);
  if (!match) throw new Error('the page has no banner element');
  return {
    hidden: (match[1] ?? '').includes('hidden'),
    lines: [...(match[2] ?? '').matchAll(/<p>([^<]*)<\/p>/g)].map((m) => m[1] ?? ''),
  };
}

/** Records the statuses the build events stream tells of one build, in order. */
async function recordStatuses(name: string) {
  const controller = new AbortController();
  const response = await fetch(`${api.url}/api/v1/build-events`, { signal: controller.signal });
  const statuses: string[] = [];
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = /^data: (.*)$/m.exec(event)?.[1];
        if (!data || !event.startsWith('event: upd')) continue;
        const build = JSON.parse(data) as BuildView;
        if (build.name === name && statuses.at(-1) !== build.status) statuses.push(build.status);
      }
    }
  })().catch(() => undefined);
  return {
    statuses,
    async stop() {
      controller.abort();
      await reading;
    },
  };
}

describe('with no worker', () => {
  const pushSha = randomBytes(20).toString('hex');
  const prSha = randomBytes(20).toString('hex');
  const pushed = buildName({
    repo: 'acme/widgets',
    targetBranch: 'feature/queued',
    pr: null,
    gitCommit: pushSha,
  });
  const pr = buildName({ repo: 'acme/widgets', targetBranch: 'main', pr: 77, gitCommit: prSha });

  it('says no worker polls the builds and init queues, in the API and on every page', async () => {
    const { body } = await getJson<Status>('/api/v1/status');
    expect(body.workers.temporal_reachable).toBe(true);
    expect(body.workers.queues).toEqual([
      { role: 'builds', task_queue: env.temporal.buildsTaskQueue, polling: false, pollers: [] },
      { role: 'init', task_queue: env.temporal.initTaskQueue, polling: false, pollers: [] },
    ]);
    expect(body.workers.warnings).toEqual([
      expect.stringContaining(`builds task queue “${env.temporal.buildsTaskQueue}”`),
      expect.stringContaining(`init task queue “${env.temporal.initTaskQueue}”`),
    ]);
    for (const path of ['/', '/repos/acme/widgets', '/builds/bnothing']) {
      const response = await fetch(`${api.url}${path}`);
      const shown = banner(await response.text());
      expect(shown.hidden, path).toBe(false);
      expect(shown.lines, path).toEqual(body.workers.warnings);
      for (const line of shown.lines) {
        expect(line, path).toContain('changes are queued until a worker runs');
      }
    }
  });

  it('shows builds accepted by the webhook and the API as queued, never 404', async () => {
    const accepted = await deliver(
      `${api.url}/webhooks/github`,
      'push',
      pushPayload({ repo: 'Acme/Widgets', branch: 'feature/queued', after: pushSha }),
      SECRET,
    );
    expect(accepted).toEqual({ status: 202, body: { build: pushed } });
    // At once, before the list of queued builds is refreshed: looked up by its workflow id.
    const one = await getJson<BuildView>(`/api/v1/builds/${pushed}`);
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({
      name: pushed,
      status: 'queued',
      commit_info: {
        repo: 'acme/widgets',
        target_branch: 'feature/queued',
        pr: null,
        git_commit: pushSha,
      },
      repo_commit_link: `https://github.com/acme/widgets/commit/${pushSha}`,
    });

    const triggered = await fetch(`${api.url}/api/v1/builds/trigger/pr`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ repo: 'acme/widgets', pr: 77, target_branch: 'main', sha: prSha }),
    });
    expect(triggered.status).toBe(202);
    expect(await triggered.json()).toEqual({ build: pr });

    // Listed from the visibility store, with what the search attributes say.
    const listed = await eventually(async () => {
      const { body } = await getJson<BuildView[]>('/api/v1/builds?repo=acme/widgets');
      expect(body.map((b) => b.name).sort()).toEqual([pushed, pr].sort());
      return body;
    }, 15_000);
    expect(listed.find((b) => b.name === pr)).toMatchObject({
      status: 'queued',
      commit_info: { repo: 'acme/widgets', target_branch: 'main', pr: 77, git_commit: prSha },
    });
    const byStatus = await getJson<BuildView[]>('/api/v1/builds?status=queued');
    expect(byStatus.body.map((b) => b.name).sort()).toEqual([pushed, pr].sort());
    const { body: status } = await getJson<Status>('/api/v1/status');
    expect(status.counts.queued).toBe(2);
    expect(status.deployed).toBe(0);

    // Nothing exists in Kubernetes, and the workflow cannot take a request: 409, at once.
    expect(await env.deployment(pushed)).toBeUndefined();
    const start = await fetch(`${api.url}/api/v1/builds/${pushed}/start`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      signal: AbortSignal.timeout(10_000),
    });
    expect(start.status).toBe(409);
    expect(((await start.json()) as { error: string }).error).toMatch(/is queued/);

    const repoPage = await getHtml('/repos/acme/widgets');
    expect(repoPage).toMatch(
      new RegExp(`<article class="card status-queued" data-build="${pushed}" data-status="queued"`),
    );
    const buildPage = await getHtml(`/builds/${pr}`);
    expect(buildPage).toContain(`data-build="${pr}"`);
    expect(buildPage).toContain(prSha);
  });

  it('lets the builds deploy and initialize once a worker runs, and drops the banner', async () => {
    const events = await recordStatuses(pushed);
    const started = Date.now();
    await env.startWorker();
    const workerUpMs = Date.now() - started;
    const polling = await eventually(async () => {
      const { body } = await getJson<Status>('/api/v1/status');
      expect(body.workers.queues.map((q) => q.polling)).toEqual([true, true]);
      expect(body.workers.warnings).toEqual([]);
      return body.workers;
    }, 30_000);
    const bannerGoneMs = Date.now() - started;
    expect(polling.queues[0]?.pollers[0]?.identity).toBeTruthy();
    expect(banner(await getHtml('/')).hidden).toBe(true);
    expect(banner(await getHtml('/')).lines).toEqual([]);

    for (const name of [pushed, pr]) {
      await eventually(async () => {
        const { body } = await getJson<BuildView>(`/api/v1/builds/${name}`);
        expect(body.status).toBe('stopped');
      }, 60_000);
    }
    const stoppedMs = Date.now() - started;
    await events.stop();
    const { body } = await getJson<BuildView>(`/api/v1/builds/${pushed}`);
    expect(body).toMatchObject({
      status: 'stopped',
      init_status: 'succeeded',
      commit_info: { target_branch: 'feature/queued', git_commit: pushSha },
    });
    // The stream replays the queued build, then follows its Deployment from todo to stopped.
    expect(events.statuses[0]).toBe('queued');
    expect(events.statuses).toContain('todo');
    expect(events.statuses.at(-1)).toBe('stopped');
    expect(events.statuses.indexOf('todo')).toBeLessThan(events.statuses.indexOf('stopped'));
    const { body: status } = await getJson<Status>('/api/v1/status');
    expect(status.counts.queued).toBe(0);
    expect(status.deployed).toBe(2);
    console.log(
      `no-worker: worker up (its start-up line) after ${workerUpMs} ms, banner gone after ${bannerGoneMs} ms; both builds stopped after ${stoppedMs} ms; statuses of ${pushed}: ${events.statuses.join(' → ')}`,
    );
  });
});
