/**
 * The image for real: `npm run image` builds it with podman on a base assembled on this machine
 * (dev/image.ts), and its containers run the API and the worker against the sandbox on the
 * host's network, with the kubeconfig and the repos file mounted read-only on a read-only root
 * filesystem, from a signed webhook to a stopped build. Skipped only where podman is not
 * installed (CI installs it: .ci/run).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { buildName } from '../../domain/names.js';
import { buildImage, type BuiltImage } from '../../dev/image.js';
import { freePort } from '../../dev/ports.js';
import { runCommand } from '../../dev/run-command.js';
import { deliver, pushPayload } from '../../dev/webhook-deliveries.js';
import { createBuildEnv, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

const podmanInstalled = (process.env.PATH ?? '')
  .split(':')
  .some((dir) => dir !== '' && existsSync(join(dir, 'podman')));

const SECRET = 'image-test-secret';
const suffix = randomBytes(3).toString('hex');

/** A container started by `podman run` (no `-d`): its stdout is the container's. */
interface Container {
  name: string;
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** The exit code of `podman run`, that is of the container's PID 1. */
  exited: Promise<number | null>;
}

let built: BuiltImage;
let env: BuildEnv;
let dir: string;
let worker: Container;
let api: Container;
let apiUrl: string;
let metricsUrl: string;
const started: Container[] = [];

function podman(...args: string[]): Promise<string> {
  return runCommand('podman', [...built.setup.global, ...args], { timeoutMs: 60_000 });
}

/** Starts a container of the image with the test's RUNBOAT_* environment and waits for `ready`. */
async function runContainer(
  role: string[],
  extraEnv: Record<string, string>,
  ready: string,
): Promise<Container> {
  const name = `runboat-image-test-${role[0]}-${suffix}`;
  const containerEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(env.workerEnv)) {
    if (key === 'PATH' || key === 'HOME' || value === undefined) continue;
    containerEnv[key] = value;
  }
  Object.assign(containerEnv, {
    RUNBOAT_KUBECONFIG: '/etc/runboat/kubeconfig',
    RUNBOAT_REPOS_FILE: '/etc/runboat/repos.yaml',
    ...extraEnv,
  });
  const args = [
    ...built.setup.global,
    'run',
    '--rm',
    '--name',
    name,
    '--network=host',
    '--read-only',
    ...built.setup.container,
    '--volume',
    `${join(dir, 'kubeconfig')}:/etc/runboat/kubeconfig:ro`,
    '--volume',
    `${env.workerEnv.RUNBOAT_REPOS_FILE}:/etc/runboat/repos.yaml:ro`,
    ...Object.entries(containerEnv).flatMap(([key, value]) => ['--env', `${key}=${value}`]),
    built.image,
    ...role,
  ];
  const child = spawn('podman', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolveExit) =>
    child.on('exit', (code) => resolveExit(code)),
  );
  const container: Container = { name, child, stdout: () => out, stderr: () => err, exited };
  started.push(container);
  const deadline = Date.now() + 90_000;
  while (!out.includes(ready)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`${name} did not start:\n${out.slice(-3000)}\n${err.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return container;
}

describe.skipIf(!podmanInstalled)(
  'the image, run with podman (skipped when podman is not installed)',
  () => {
    beforeAll(async () => {
      // Built here so that the test always runs an image of the code under test; the base image and
      // unchanged layers are cached, so only a first run on a machine takes minutes.
      built = await buildImage({
        quiet: true,
        log: (line) => process.stderr.write(`[image] ${line}\n`),
      });
      env = await createBuildEnv({
        repos: [
          { repo: 'acme/image', branch: '.*', builds: [{ image: 'ghcr.io/acme/odoo:16.0' }] },
        ],
      });
      dir = await mkdtemp(join(tmpdir(), 'runboat-image-'));
      // The container's user 1000 reads a self-contained copy (certificates inlined) of the kubeconfig.
      const sandbox = inject('sandbox');
      const kubeconfig = join(dir, 'kubeconfig');
      await writeFile(
        kubeconfig,
        await runCommand(sandbox.kubectl, [
          'config',
          'view',
          '--raw',
          '--flatten',
          '--minify',
          '--kubeconfig',
          sandbox.kube.kubeconfig,
          '--context',
          sandbox.kube.context,
        ]),
      );
      await chmod(kubeconfig, 0o644);
      const metricsPort = await freePort();
      metricsUrl = `http://127.0.0.1:${metricsPort}`;
      worker = await runContainer(
        ['worker'],
        { RUNBOAT_WORKER_METRICS_PORT: String(metricsPort) },
        'worker running',
      );
      const apiPort = await freePort();
      apiUrl = `http://127.0.0.1:${apiPort}`;
      api = await runContainer(
        ['api'],
        {
          RUNBOAT_API_HOST: '127.0.0.1',
          RUNBOAT_API_PORT: String(apiPort),
          RUNBOAT_WEBHOOK_SECRET: SECRET,
        },
        'api listening',
      );
    }, 900_000);

    afterAll(async () => {
      // No container outlives the test, whatever happened.
      for (const container of started) {
        await runCommand('podman', [
          ...(built?.setup.global ?? []),
          'rm',
          '--force',
          '--time',
          '0',
          container.name,
        ]).catch(() => undefined);
        container.child.kill('SIGKILL');
      }
      await env?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    }, 60_000);

    it('was built on the local base and says its size', () => {
      expect(built.image).toBe('localhost/runboat-temporal:latest');
      expect(built.base).toMatch(/^localhost\/runboat-node-base:/);
      expect(built.size).toMatch(/^\d+ MB$/);
      process.stderr.write(`[image] ${built.image}: ${built.size}, on ${built.base}\n`);
    });

    it('runs node as user 1000 under tini as PID 1, on a read-only root filesystem', async () => {
      for (const container of [worker, api]) {
        expect((await podman('exec', container.name, 'cat', '/proc/1/comm')).trim()).toBe('tini');
        // The processes of the container and their real user ids, from /proc.
        const processes = await podman(
          'exec',
          container.name,
          'sh',
          '-c',
          'for p in /proc/[0-9]*; do echo "$(cat $p/comm) $(awk \'/^Uid:/ {print $2}\' $p/status)"; done',
        );
        const byName = new Map(
          processes
            .trim()
            .split('\n')
            .map((line) => line.split(' ') as [string, string]),
        );
        expect(byName.get('tini')).toBe('1000');
        expect(byName.get('node')).toBe('1000');
        await expect(podman('exec', container.name, 'touch', '/app/x')).rejects.toThrow(
          /Read-only file system/,
        );
      }
      // The worker's health endpoint answers on the host's network.
      const ready = await fetch(`${metricsUrl}/readyz`);
      expect(ready.status).toBe(200);
    });

    it('takes a pushed branch from a signed webhook to stopped', async () => {
      const after = randomBytes(20).toString('hex');
      const name = buildName({
        repo: 'acme/image',
        targetBranch: '17.0',
        pr: null,
        gitCommit: after,
      });
      const answer = await deliver(
        `${apiUrl}/webhooks/github`,
        'push',
        pushPayload({ repo: 'acme/image', branch: '17.0', after }),
        SECRET,
        `image-delivery-${suffix}`,
      );
      expect(answer).toEqual({ status: 202, body: { build: name } });
      await env.waitForStatus(name, 'stopped', 90_000);
      await eventually(async () => {
        const build = await fetch(`${apiUrl}/api/v1/builds/${name}`);
        expect(await build.json()).toMatchObject({ name, status: 'stopped' });
      });
      await eventually(async () =>
        expect(env.github.statusesOf(after).at(-1)).toMatchObject({ state: 'success' }),
      );
    });

    it('logs JSON lines on stdout', () => {
      for (const container of [worker, api]) {
        const lines = container.stdout().split('\n').filter(Boolean);
        process.stderr.write(`[image] ${container.name}: ${lines.length} lines on stdout\n`);
        expect(lines.length).toBeGreaterThanOrEqual(2);
        // Nothing but the JSON lines: standard error stays empty.
        expect(container.stderr()).toBe('');
        for (const line of lines) {
          expect(JSON.parse(line)).toMatchObject({
            level: expect.any(Number),
            msg: expect.any(String),
          });
        }
      }
    });

    it('stops on podman stop (SIGTERM through tini) with exit code 0, quickly', async () => {
      for (const container of [api, worker]) {
        const start = Date.now();
        await podman('stop', '--time', '30', container.name);
        const code = await container.exited;
        const ms = Date.now() - start;
        process.stderr.write(`[image] podman stop ${container.name}: exit ${code} in ${ms} ms\n`);
        expect(code).toBe(0);
        expect(ms).toBeLessThan(15_000);
      }
    });
  },
);
