/**
 * What the unit tests of the real application (createApp) over real HTTP share: logs and commands
 * for tests that do not exercise them, and the loopback server the application is served on.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { LogSource } from '../../api/app.js';
import type { BuildCommands } from '../../api/commands.js';

/** Builds with no kept log of any kind; asking for a running build's log fails. */
export const noLogs: LogSource = {
  initLog: () => Promise.resolve(undefined),
  cleanupLog: () => Promise.resolve(undefined),
  imageBuildLog: () => Promise.resolve(undefined),
  buildLog: () => Promise.reject(new Error('no logs here')),
};

/**
 * Commands for a test that sends none of its own: every repo supported, no branch head known,
 * transitions accepted and triggers refused, unless `overrides` says otherwise.
 */
export function stubCommands(overrides: Partial<BuildCommands> = {}): BuildCommands {
  return {
    trigger: () => Promise.reject(new Error('not in this test')),
    supports: () => true,
    branchHead: () => Promise.resolve(undefined),
    transition: () => Promise.resolve(),
    ...overrides,
  };
}

/** An application listening on a free loopback port. */
export interface Served {
  server: Server;
  /** Its URL, without a trailing slash. */
  base: string;
  /** Stops listening; resolves once the server is closed. */
  close(): Promise<void>;
}

/** Serves `app` on a free loopback port. */
export async function serve(app: Koa): Promise<Served> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    server,
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
