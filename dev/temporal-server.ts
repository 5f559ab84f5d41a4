/**
 * The Temporal CLI dev server (Temporal Server with SQLite and the Web UI) as a child process,
 * with the build search attributes registered.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { Connection } from '@temporalio/client';
import { searchAttributeRegistrations } from '../domain/search-attributes.js';
import { freePort } from './ports.js';

/** Options of {@link startTemporalServer}. */
export interface TemporalServerOptions {
  temporalPath: string;
  /** SQLite file of the server's state: a restart with the same file keeps every workflow. */
  dbFile: string;
  logFile: string;
  /** Fixed ports; free ones are picked when absent. */
  port?: number;
  uiPort?: number;
}

/** A running dev server. */
export interface TemporalServer {
  pid: number;
  /** gRPC address of the frontend, `127.0.0.1:<port>`. */
  address: string;
  namespace: string;
  uiUrl: string;
  port: number;
  uiPort: number;
}

/** Waits until the frontend answers and the Web UI serves, or throws with the log's tail. */
async function waitReady(server: TemporalServer, exited: () => string | undefined): Promise<void> {
  const deadline = Date.now() + 60_000;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const exit = exited();
    if (exit !== undefined) throw new Error(`temporal server exited early (${exit})`);
    try {
      const connection = await Connection.connect({
        address: server.address,
        connectTimeout: 1000,
      });
      try {
        await connection.workflowService.getSystemInfo({});
        const ui = await fetch(server.uiUrl);
        if (ui.ok) return;
        lastError = new Error(`Web UI answered ${ui.status}`);
      } finally {
        await connection.close();
      }
    } catch (error) {
      lastError = error;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`temporal server not ready after 60 s: ${String(lastError)}`);
}

/**
 * Starts the dev server and resolves once it serves. A port taken between the moment it was
 * picked and the moment the server binds it (another sandbox starting) is retried with new ports.
 */
export async function startTemporalServer(options: TemporalServerOptions): Promise<TemporalServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options);
    } catch (error) {
      const clash = /address already in use/.test(await readFile(options.logFile, 'utf8'));
      if (!clash || attempt >= 3 || options.port !== undefined) throw error;
      await writeFile(options.logFile, '');
    }
  }
}

async function startOnce(options: TemporalServerOptions): Promise<TemporalServer> {
  const port = options.port ?? (await freePort());
  const uiPort = options.uiPort ?? (await freePort());
  // The HTTP API and metrics ports are left to the server, which picks free ones itself.
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--ui-port',
    String(uiPort),
    '--db-filename',
    options.dbFile,
    '--ui-disable-news-fetch',
    '--log-level',
    'warn',
    ...searchAttributeRegistrations().flatMap((pair) => ['--search-attribute', pair]),
  ];
  const log = openSync(options.logFile, 'a');
  const child = spawn(options.temporalPath, args, {
    stdio: ['ignore', log, log],
    detached: true,
  });
  closeSync(log);
  let exit: string | undefined;
  child.on('exit', (code, signal) => {
    exit = signal ?? `exit ${code}`;
  });
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${options.temporalPath}`);
  const server: TemporalServer = {
    pid: child.pid,
    address: `127.0.0.1:${port}`,
    namespace: 'default',
    uiUrl: `http://127.0.0.1:${uiPort}`,
    port,
    uiPort,
  };
  try {
    await waitReady(server, () => exit);
  } catch (error) {
    await stopProcess(server.pid);
    throw new Error(`${(error as Error).message}; see ${options.logFile}`, { cause: error });
  }
  return server;
}

/** Sends SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (alive()) process.kill(pid, 'SIGKILL');
  while (alive()) await new Promise((r) => setTimeout(r, 50));
}
