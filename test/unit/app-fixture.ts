/**
 * What the unit tests of the real application (createApp) over real HTTP share: logs and commands
 * for tests that do not exercise them, the builds an in-memory index holds, and the loopback server
 * the application is served on.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { LogSource } from '../../api/app.js';
import type { BuildCommands } from '../../api/commands.js';
import type { BuildStatus } from '../../domain/build.js';
import type { BuildView } from '../../domain/build-view.js';
import { buildName } from '../../domain/names.js';

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

/** What a test says of a build; the rest is derived or a default. */
export interface ViewSpec {
  /** The start of the commit's SHA, padded with zeros to 40 characters. */
  sha: string;
  repo?: string;
  branch?: string;
  pr?: number | null;
  status?: BuildStatus;
  created?: string;
  failure?: string;
  message?: string;
  author?: string;
}

/** A build as the index shows it: links on GitHub, deployed on runboat.test, its init succeeded. */
export function viewOf(spec: ViewSpec): BuildView {
  const repo = spec.repo ?? 'acme/shop';
  const branch = spec.branch ?? 'main';
  const pr = spec.pr ?? null;
  const sha = spec.sha.padEnd(40, '0');
  const link = `https://github.com/${repo}`;
  return {
    name: buildName({ repo, targetBranch: branch, pr, gitCommit: sha }),
    commit_info: {
      repo,
      target_branch: branch,
      pr,
      git_commit: sha,
      message: spec.message ?? null,
      author: spec.author ?? null,
    },
    status: spec.status ?? 'stopped',
    init_status: 'succeeded',
    image_status: null,
    deploy_link: `https://${repo.replace('/', '-')}-${sha.slice(0, 12)}.runboat.test`,
    repo_link: link,
    repo_target_branch_link: `${link}/tree/${branch}`,
    repo_pr_link: pr === null ? null : `${link}/pull/${pr}`,
    repo_commit_link: `${link}/commit/${sha}`,
    created: spec.created ?? '2024-05-01T10:00:00.000Z',
    last_scaled: null,
    failure_reason: spec.failure ?? null,
  };
}
