/**
 * The API process answers as soon as it starts (docs/operations.md, "The API at scale"): before it
 * has loaded its clients, reached Temporal or listed a build, health answers and every other path
 * is a 503 with `retry-after`, so that a restart is seen at once. Here Temporal and Kubernetes
 * are a port that accepts connections and never answers: the API can get no further.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../dev/ports.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

let silent: Server;
const sockets = new Set<Socket>();
let work: string;

beforeAll(async () => {
  silent = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((ready) => silent.listen(0, '127.0.0.1', ready));
  work = await mkdtemp(join(tmpdir(), 'runboat-api-starting-'));
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((closed) => silent.close(closed));
  await rm(work, { recursive: true, force: true });
});

describe('the API process while it starts', { timeout: 60_000 }, () => {
  it('answers health, and 503 with retry-after elsewhere, before Temporal or Kubernetes answer', async () => {
    const silentPort = (silent.address() as { port: number }).port;
    const kubeconfig = join(work, 'kubeconfig');
    await writeFile(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: `http://127.0.0.1:${silentPort}` } }],
        users: [{ name: 'u', user: { token: 'x' } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    const port = await freePort();
    const api = spawn(process.execPath, ['--import', 'tsx', join(root, 'api/main.ts')], {
      cwd: root,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        RUNBOAT_API_PORT: String(port),
        RUNBOAT_WEBHOOK_SECRET: 's',
        RUNBOAT_TEMPORAL_ADDRESS: `127.0.0.1:${silentPort}`,
        RUNBOAT_KUBECONFIG: kubeconfig,
      },
      stdio: 'ignore',
    });
    try {
      const base = `http://127.0.0.1:${port}`;
      let health: Response | undefined;
      for (let tries = 0; !health && tries < 400; tries++) {
        health = await fetch(`${base}/healthz`).catch(async () => {
          await new Promise((wait) => setTimeout(wait, 100));
          return undefined;
        });
      }
      expect(health?.status).toBe(200);
      expect(await health?.json()).toEqual({ ok: true });
      for (const [method, path] of [
        ['GET', '/api/v1/builds'],
        ['GET', '/api/v1/status'],
        ['GET', '/readyz'],
        ['POST', '/webhooks/github'],
      ] as const) {
        const response = await fetch(`${base}${path}`, { method });
        expect(response.status, path).toBe(503);
        expect(response.headers.get('retry-after'), path).toBe('1');
        expect(await response.json(), path).toEqual({
          error: 'starting: the build index is loading; try again in a moment',
        });
      }
      expect(api.exitCode).toBeNull();
    } finally {
      api.kill('SIGKILL');
    }
  });
});
