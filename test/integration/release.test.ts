/**
 * The release (`npm run build` → `dist/`) run as in production: `node dist/worker/main.js` and
 * `node dist/api/main.js`, no tsx, the prebuilt workflow bundle, only the production
 * dependencies within reach, through a build's life from a signed webhook to `stopped` and its
 * undeploy.
 */
import { randomBytes } from 'node:crypto';
import { builtinModules } from 'node:module';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildName } from '../../domain/names.js';
import { runCommand } from '../../dev/run-command.js';
import { deliver, pushPayload } from '../../dev/webhook-deliveries.js';
import { spawnApi, spawnWorker, type WorkerProcess } from '../../dev/worker-process.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dist = join(projectRoot, 'dist');
/** Where the release runs: a copy of dist/ with the production dependencies only. */
let release: string;
const SECRET = 'release-test-secret';
let env: BuildEnv;
let worker: WorkerProcess;
let api: WorkerProcess & { url: string };
let logDir: string;

beforeAll(async () => {
  // Built here so that the test always runs the release of the code under test.
  await runCommand('npm', ['run', 'build'], { cwd: projectRoot, timeoutMs: 170_000 });
  env = await createBuildEnv({
    repos: [{ repo: 'acme/release', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] }],
  });
  logDir = await mkdtemp(join(tmpdir(), 'runboat-release-'));
  release = await productionTree();
  const from = { from: 'dist', releaseDir: release } as const;
  worker = await spawnWorker(env.workerEnv, join(logDir, 'worker.log'), 90_000, from);
  api = await spawnApi(
    { ...env.workerEnv, RUNBOAT_API_PORT: '0', RUNBOAT_WEBHOOK_SECRET: SECRET },
    join(logDir, 'api.log'),
    60_000,
    from,
  );
}, 300_000);

afterAll(async () => {
  await api?.stop();
  await worker?.stop();
  await env?.close();
  if (release) await rm(release, { recursive: true, force: true });
});

/**
 * What `npm ci --omit=dev` would leave, without the download: a copy of dist/ and package.json
 * beside a node_modules that links only the packages package-lock.json does not mark `dev`.
 * (Their own dependencies are production packages too, so the first hop is what matters.)
 */
async function productionTree(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'runboat-release-tree-'));
  await cp(dist, join(root, 'dist'), { recursive: true });
  await cp(join(projectRoot, 'package.json'), join(root, 'package.json'));
  const lock = JSON.parse(await readFile(join(projectRoot, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>;
  };
  for (const [path, meta] of Object.entries(lock.packages)) {
    // Top-level packages only (`node_modules/x`, `node_modules/@scope/x`); nested ones come along.
    if (!/^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) || meta.dev) continue;
    await mkdir(dirname(join(root, path)), { recursive: true });
    await symlink(join(projectRoot, path), join(root, path));
  }
  return root;
}

/** Files under a directory, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

describe('the release in dist/', () => {
  it('runs the worker and the API with plain node and the prebuilt workflow bundle', async () => {
    expect(worker.child.spawnargs).toEqual([
      process.execPath,
      join(release, 'dist', 'worker', 'main.js'),
    ]);
    expect(api.child.spawnargs).toEqual([
      process.execPath,
      join(release, 'dist', 'api', 'main.js'),
    ]);
    // Development dependencies are out of reach of the release.
    expect(existsSync(join(release, 'node_modules', '@temporalio', 'worker'))).toBe(true);
    for (const devOnly of ['tsx', 'typescript', 'vitest', '@temporalio/testing']) {
      expect(existsSync(join(release, 'node_modules', devOnly))).toBe(false);
    }
    const workerLog = await readFile(worker.logFile, 'utf8');
    const running = workerLog.split('\n').find((line) => line.includes('worker running'));
    expect(JSON.parse(running ?? '{}')).toMatchObject({
      workflowBundle: join(release, 'dist', 'workflow-bundle.js'),
    });
    // The UI's static files and templates ship with the release.
    const css = await fetch(`${api.url}/static/app.css`);
    expect(css.status).toBe(200);
    const home = await fetch(`${api.url}/`);
    expect(home.status).toBe(200);
    expect(await home.text()).toContain('acme/release');
  });

  it('imports no development dependency', async () => {
    const pkg = JSON.parse(await readFile(join(projectRoot, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const allowed = new Set([...Object.keys(pkg.dependencies), ...builtinModules]);
    const imported = new Set<string>();
    for (const file of await filesUnder(dist)) {
      if (!file.endsWith('.js') || file === join(dist, 'workflow-bundle.js')) continue;
      if (file.startsWith(join(dist, 'api', 'ui', 'static'))) continue; // the browser's
      const source = await readFile(file, 'utf8');
      // `from '…'`, `import '…'`, `import('…')`; not a call such as `Buffer.from('[')`.
      for (const match of source.matchAll(
        /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)'([^'.][^']*)'/g,
      )) {
        const specifier = match[1] ?? '';
        const name = specifier.startsWith('@')
          ? specifier.split('/').slice(0, 2).join('/')
          : (specifier.split('/')[0] ?? '');
        imported.add(name.replace(/^node:/, ''));
      }
    }
    expect(imported.size).toBeGreaterThan(5);
    expect([...imported].filter((name) => !allowed.has(name))).toEqual([]);
  });

  it('takes a pushed branch from the webhook to stopped, and undeploys it', async () => {
    const after = randomBytes(20).toString('hex');
    const name = buildName({
      repo: 'acme/release',
      targetBranch: '17.0',
      pr: null,
      gitCommit: after,
    });
    const answer = await deliver(
      `${api.url}/webhooks/github`,
      'push',
      pushPayload({ repo: 'acme/release', branch: '17.0', after }),
      SECRET,
      'release-delivery-1',
    );
    expect(answer).toEqual({ status: 202, body: { build: name } });
    await env.waitForStatus(name, 'stopped');
    await eventually(async () => {
      const build = await fetch(`${api.url}/api/v1/builds/${name}`);
      expect(build.status).toBe(200);
      expect(await build.json()).toMatchObject({ name, status: 'stopped' });
    });
    // The workflow reports the success just after it mirrored `stopped`.
    await eventually(async () =>
      expect(
        env.github.statusesOf(after).map((status) => `${status.state}:${status.description}`),
      ).toEqual([
        'pending:queued for initialization',
        'pending:initializing',
        'success:ready: start it from its page',
      ]),
    );

    const gone = await deliver(
      `${api.url}/webhooks/github`,
      'push',
      pushPayload({ repo: 'acme/release', branch: '17.0', deleted: true }),
      SECRET,
      'release-delivery-2',
    );
    expect(gone.status).toBeLessThan(300);
    await eventually(async () => expect(await env.deployment(name)).toBeUndefined(), 60_000);
  });
});
