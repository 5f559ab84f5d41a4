/**
 * The image: its entry point chooses the role from the command, and the Dockerfile keeps the
 * promises of docs/operations.md (hadolint checks the rest, in `npm run lint`).
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ALLOCATOR_TUNABLES } from '../../dev/worker-process.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const run = promisify(execFile);
let appDir: string;

/** What a stand-in `dist/<entry>/main.js` saw: its entry, arguments and worker roles. */
async function entrypoint(args: string[], env: NodeJS.ProcessEnv = {}): Promise<unknown> {
  const { stdout } = await run(
    'sh',
    [join(projectRoot, 'deploy', 'docker-entrypoint.sh'), ...args],
    {
      env: { PATH: process.env.PATH, APP_DIR: appDir, ...env },
    },
  );
  return JSON.parse(stdout);
}

beforeAll(async () => {
  appDir = await mkdtemp(join(tmpdir(), 'runboat-image-'));
  for (const entry of ['api', 'worker']) {
    await mkdir(join(appDir, 'dist', entry), { recursive: true });
    await writeFile(
      join(appDir, 'dist', entry, 'main.js'),
      `console.log(JSON.stringify({ entry: '${entry}', args: process.argv.slice(2), ` +
        `roles: process.env.RUNBOAT_WORKER_ROLES ?? null, pid: process.pid, ` +
        `tunables: process.env.GLIBC_TUNABLES ?? null }));`,
    );
  }
});

describe('the image entry point', () => {
  it('runs the API by default and on `api`', async () => {
    expect(await entrypoint([])).toMatchObject({ entry: 'api', args: [], roles: null });
    expect(await entrypoint(['api'])).toMatchObject({ entry: 'api', args: [] });
  });

  it('runs a worker of the roles the command names, or of both', async () => {
    expect(await entrypoint(['worker', 'init'])).toMatchObject({ entry: 'worker', roles: 'init' });
    expect(await entrypoint(['worker', 'builds'])).toMatchObject({ roles: 'builds' });
    expect(await entrypoint(['worker'])).toMatchObject({ entry: 'worker', roles: null });
  });

  it("sets glibc's allocator as the processes started by `npm start` have it, unless told", async () => {
    expect(ALLOCATOR_TUNABLES).toMatch(/^glibc\.malloc\.\w+=\d+(:glibc\.malloc\.\w+=\d+)*$/);
    for (const role of [['api'], ['worker', 'builds']]) {
      expect(await entrypoint(role)).toMatchObject({ tunables: ALLOCATOR_TUNABLES });
    }
    const own = 'glibc.malloc.arena_max=4';
    expect(await entrypoint(['worker'], { GLIBC_TUNABLES: own })).toMatchObject({ tunables: own });
  });

  it('runs any other command as it is', async () => {
    const { stdout } = await run(
      'sh',
      [join(projectRoot, 'deploy', 'docker-entrypoint.sh'), 'echo', 'hello'],
      { env: { PATH: process.env.PATH } },
    );
    expect(stdout).toBe('hello\n');
  });
});

describe('the Dockerfile', () => {
  it('builds on a base image given as an argument, runs as non-root under tini', async () => {
    const dockerfile = await readFile(join(projectRoot, 'Dockerfile'), 'utf8');
    const stages = dockerfile.split('\n').filter((line) => line.startsWith('FROM '));
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages.every((line) => line.startsWith('FROM ${NODE_IMAGE}'))).toBe(true);
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20/m);
    const final = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    expect(final).toMatch(/^USER [1-9][0-9]*:[1-9][0-9]*$/m);
    expect(final).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--",/m);
    // Only production dependencies reach the final stage.
    expect(final).toContain('COPY --from=deps /src/node_modules node_modules');
    expect(dockerfile).toContain('npm ci --omit=dev');
  });

  it('copies into its build stage every directory the release is compiled from', async () => {
    const dockerfile = await readFile(join(projectRoot, 'Dockerfile'), 'utf8');
    const build = dockerfile.slice(dockerfile.indexOf(' AS build'), dockerfile.indexOf(' AS deps'));
    const copied = [...build.matchAll(/^COPY (\S+) \1$/gm)].map((match) => match[1]);
    const tsconfig = JSON.parse(
      await readFile(join(projectRoot, 'tsconfig.build.json'), 'utf8'),
    ) as { include: string[] };
    expect(copied).toEqual(expect.arrayContaining(tsconfig.include));
    // The files dev/build.ts copies beside the code (templates, static files, kubefiles).
    expect(copied).toEqual(expect.arrayContaining(['api', 'kubefiles']));
  });
});
