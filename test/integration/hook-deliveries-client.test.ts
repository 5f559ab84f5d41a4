/**
 * The GitHub client's calls on the App's webhook deliveries against the fake GitHub, which delivers
 * signed events as GitHub does and lists them newest first in cursor pages: only the window asked
 * for is read (pages past it are never asked), with the App's JWT; a redelivery is a new attempt of
 * the same guid; a client with a token only cannot ask.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushPayload } from '../../dev/webhook-deliveries.js';
import { createGitHubClient, createGitHubClientFromSettings } from '../../lib/github.js';
import { freeLoopbackPort } from '../../worker/health-server.js';
import { startFakeGitHub, type FakeGitHub } from './fake-github.js';
import { eventually } from './helpers.js';

let github: FakeGitHub;
let dir: string;

beforeAll(async () => {
  github = await startFakeGitHub();
  dir = await mkdtemp(join(tmpdir(), 'runboat-hook-deliveries-'));
});

afterAll(async () => {
  await github?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('GitHub client: the App hook deliveries', () => {
  it('reads only the window asked for, newest first, and redelivers by id', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyFile = join(dir, 'app.pem');
    await writeFile(keyFile, privateKey.export({ type: 'pkcs1', format: 'pem' }));
    github.app = {
      id: '6161',
      publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      installations: new Map([['acme', 91]]),
    };
    // Nothing listens there: every delivery fails to connect.
    const target = { url: `http://127.0.0.1:${await freeLoopbackPort()}/hook`, secret: 's' };
    for (let i = 0; i < 130; i++)
      await github.deliver('push', pushPayload({ branch: `old-${i}` }), target);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const since = new Date();
    for (let i = 0; i < 220; i++)
      await github.deliver('push', pushPayload({ branch: `new-${i}` }), target);

    const client = createGitHubClientFromSettings(
      {
        RUNBOAT_GITHUB_API_URL: github.url,
        RUNBOAT_GITHUB_APP_ID: '6161',
        RUNBOAT_GITHUB_APP_PRIVATE_KEY_FILE: keyFile,
      },
      { apiUrlSet: true },
    );
    if (!client) throw new Error('no client');
    expect(client.isApp).toBe(true);
    github.requests.length = 0;
    const started = Date.now();
    const listed = await client.listHookDeliveries(since);
    const pages = github.requests.filter((r) => r.path.startsWith('/app/hook/deliveries'));
    console.log(
      `220 of 350 deliveries listed in ${Date.now() - started} ms: ` +
        pages.map((r) => `${r.status} ${r.path}`).join(', '),
    );
    expect(listed).toHaveLength(220);
    expect(listed.map((d) => d.id)).toEqual(
      github.hookDeliveries
        .slice(130)
        .map((d) => d.id)
        .reverse(),
    );
    expect(listed[0]).toMatchObject({ statusCode: 0, event: 'push', redelivery: false });
    // Pages of 100 newest first: the third holds the window's end; the fourth is never asked.
    expect(pages.map((r) => r.status)).toEqual([200, 200, 200]);

    const newest = listed[0];
    if (!newest) throw new Error('nothing listed');
    await client.redeliverHookDelivery(newest.id);
    await eventually(async () => expect(github.hookDeliveries).toHaveLength(351), 10_000, 50);
    expect(github.hookDeliveries.at(-1)).toMatchObject({
      guid: newest.guid,
      redelivery: true,
      status_code: 0,
    });
    await expect(client.redeliverHookDelivery(999_999)).rejects.toMatchObject({ status: 404 });

    // A token is no App: the client does not ask, and the fake would refuse without the JWT.
    const withToken = createGitHubClient({ apiUrl: github.url, token: 't0ken' });
    expect(withToken.isApp).toBe(false);
    await expect(withToken.listHookDeliveries(since)).rejects.toThrow(/GitHub App/);
    const anonymous = await fetch(`${github.url}/app/hook/deliveries`);
    expect(anonymous.status).toBe(401);
  });
});
