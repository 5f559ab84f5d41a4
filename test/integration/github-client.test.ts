/**
 * The GitHub client against the fake GitHub, which answers as GitHub does: listings in pages with
 * Link headers, ETags and 304s, rate limits with their headers, and GitHub App auth (a JWT signed
 * with a key generated here, verified by the fake, exchanged for an installation token).
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createGitHubClient,
  createGitHubClientFromSettings,
  GitHubApiError,
} from '../../lib/github.js';
import { startFakeGitHub, type FakeGitHub } from './fake-github.js';

let github: FakeGitHub;
let dir: string;

beforeAll(async () => {
  github = await startFakeGitHub();
  dir = await mkdtemp(join(tmpdir(), 'runboat-github-client-'));
});

afterAll(async () => {
  await github?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  github.requests.length = 0;
  github.app = undefined;
});

const sha = (n: number) => n.toString(16).padStart(40, '0');

describe('GitHub client: pages and conditional requests', () => {
  it('lists 250 branches through three pages, then asks again with 304s only', async () => {
    const branches = new Map<string, string>();
    for (let i = 0; i < 250; i++) branches.set(`branch-${String(i).padStart(3, '0')}`, sha(i));
    github.heads.set('acme/many', branches);
    const client = createGitHubClient({ apiUrl: github.url, token: 't0ken' });

    const listed = await client.listBranches('acme/many');
    expect(listed).toHaveLength(250);
    expect(new Map(listed.map((b) => [b.name, b.sha]))).toEqual(branches);
    const first = github.requests.filter((r) => r.path.startsWith('/repos/acme/many/branches'));
    console.log(`250 branches: ${first.map((r) => `${r.status} ${r.path}`).join(', ')}`);
    expect(first.map((r) => r.status)).toEqual([200, 200, 200]);

    github.requests.length = 0;
    const used = github.rateLimitUsed();
    expect(await client.listBranches('acme/many')).toEqual(listed);
    expect(github.requests.map((r) => r.status)).toEqual([304, 304, 304]);
    expect(github.rateLimitUsed()).toBe(used);

    // A new branch on the last page: that page is answered anew, the others stay 304.
    branches.set('zz-new', sha(999));
    github.requests.length = 0;
    const again = await client.listBranches('acme/many');
    expect(again).toHaveLength(251);
    expect(again.at(-1)).toEqual({ name: 'zz-new', sha: sha(999) });
    expect(github.requests.map((r) => r.status)).toEqual([304, 304, 200]);
  });

  it('lists open pull requests with their base, head and head repo', async () => {
    github.pulls.set(
      'acme/prs',
      new Map([
        [1, { base: 'main', sha: sha(1) }],
        [2, { base: '16.0', sha: sha(2), headRepo: 'Someone/Fork' }],
        [3, { base: 'main', sha: sha(3), headRepo: null }],
      ]),
    );
    const client = createGitHubClient({ apiUrl: github.url });
    const pulls = await client.listOpenPullRequests('acme/prs');
    expect(pulls.sort((a, b) => a.number - b.number)).toEqual([
      { number: 1, baseRef: 'main', sha: sha(1), headRepo: 'acme/prs' },
      { number: 2, baseRef: '16.0', sha: sha(2), headRepo: 'someone/fork' },
      { number: 3, baseRef: 'main', sha: sha(3), headRepo: null },
    ]);
  });
});

describe('GitHub client: rate limits', () => {
  it('waits out a secondary rate limit for its retry-after, then succeeds', async () => {
    github.heads.set('acme/limited', new Map([['main', sha(7)]]));
    const client = createGitHubClient({ apiUrl: github.url });
    github.rateLimits.push({ kind: 'secondary', status: 429, seconds: 2 });
    const started = Date.now();
    expect(await client.branchHead('acme/limited', 'main')).toBe(sha(7));
    const elapsed = Date.now() - started;
    console.log(`secondary rate limit (retry-after 2 s): answered after ${elapsed} ms`);
    expect(elapsed).toBeGreaterThanOrEqual(2000);
    expect(github.requests.map((r) => r.status)).toEqual([429, 200]);
  });

  it('waits out a primary rate limit until its reset, then succeeds', async () => {
    github.heads.set('acme/limited', new Map([['main', sha(8)]]));
    const client = createGitHubClient({ apiUrl: github.url });
    github.rateLimits.push({ kind: 'primary', seconds: 1 });
    const started = Date.now();
    expect(await client.listBranches('acme/limited')).toEqual([{ name: 'main', sha: sha(8) }]);
    const elapsed = Date.now() - started;
    console.log(`primary rate limit (reset in 1 s): answered after ${elapsed} ms`);
    expect(elapsed).toBeGreaterThanOrEqual(1000);
    expect(github.requests.map((r) => r.status)).toEqual([403, 200]);
  });

  it('fails at once when the limit lasts longer than it would wait, for the caller to retry', async () => {
    const client = createGitHubClient({ apiUrl: github.url, maxRateLimitWaitSeconds: 5 });
    github.rateLimits.push({ kind: 'primary', seconds: 600 });
    const started = Date.now();
    const error = await client.listBranches('acme/limited').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitHubApiError);
    expect((error as GitHubApiError).status).toBe(403);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(github.requests).toHaveLength(1);
  });
});

describe('GitHub client: GitHub App', () => {
  it('signs a JWT, finds the installation of each owner once, and acts with its token', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyFile = join(dir, 'app.pem');
    await writeFile(keyFile, privateKey.export({ type: 'pkcs1', format: 'pem' }));
    github.app = {
      id: '4242',
      publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      installations: new Map([
        ['acme', 71],
        ['other', 72],
      ]),
    };
    github.heads.set('acme/app', new Map([['main', sha(11)]]));
    github.heads.set('other/app', new Map([['main', sha(12)]]));
    const issuedBefore = github.issuedTokens.length;
    const client = createGitHubClientFromSettings(
      {
        RUNBOAT_GITHUB_API_URL: github.url,
        RUNBOAT_GITHUB_APP_ID: '4242',
        RUNBOAT_GITHUB_APP_PRIVATE_KEY_FILE: keyFile,
      },
      { apiUrlSet: true },
    );
    if (!client) throw new Error('no client');

    // Without the App's token the fake refuses: a token is the only way in.
    await expect(
      createGitHubClient({ apiUrl: github.url, token: 'a-personal-token' }).branchHead(
        'acme/app',
        'main',
      ),
    ).rejects.toMatchObject({ status: 401 });

    expect(await client.branchHead('acme/app', 'main')).toBe(sha(11));
    await client.postCommitStatus({
      repo: 'acme/app',
      sha: sha(11),
      state: 'success',
      description: 'built',
    });
    expect(await client.branchHead('other/app', 'main')).toBe(sha(12));
    expect(github.statusesOf(sha(11))).toMatchObject([{ repo: 'acme/app', state: 'success' }]);
    const issued = github.issuedTokens.slice(issuedBefore);
    expect(issued.map((t) => t.installation)).toEqual([71, 72]);
    const lookups = github.requests.filter((r) => r.path.endsWith('/installation'));
    expect(lookups.map((r) => r.path)).toEqual([
      '/repos/acme/app/installation',
      '/repos/other/app/installation',
    ]);

    // An owner without the App installed: GitHub's 404, not a crash, and not cached.
    await expect(client.listBranches('stranger/app')).rejects.toMatchObject({ status: 404 });
  });

  it('is refused by GitHub with a key that is not the App’s', async () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyFile = join(dir, 'wrong.pem');
    await writeFile(keyFile, other.privateKey.export({ type: 'pkcs1', format: 'pem' }));
    github.app = {
      id: '4242',
      publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      installations: new Map([['acme', 71]]),
    };
    const client = createGitHubClientFromSettings(
      {
        RUNBOAT_GITHUB_API_URL: github.url,
        RUNBOAT_GITHUB_APP_ID: '4242',
        RUNBOAT_GITHUB_APP_PRIVATE_KEY_FILE: keyFile,
      },
      { apiUrlSet: true },
    );
    await expect(client?.branchHead('acme/app', 'main')).rejects.toMatchObject({ status: 401 });
  });
});
