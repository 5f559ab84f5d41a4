/**
 * A fake GitHub REST endpoint on loopback: it records commit statuses and answers branch heads,
 * standing in for the one part of the system that cannot run here.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A commit status as the fake GitHub received it. */
export interface ReceivedStatus {
  repo: string;
  sha: string;
  state: string;
  description: string;
  context: string;
  targetUrl: string | undefined;
}

/** A running fake GitHub. */
export interface FakeGitHub {
  url: string;
  statuses: ReceivedStatus[];
  /** `owner/repo` → branch → head SHA. */
  heads: Map<string, Map<string, string>>;
  /**
   * `owner/repo` → HTTP status its branches routes answer instead of the heads (an outage, a
   * wrong token, a renamed repo); delete the entry to heal.
   */
  branchErrors: Map<string, number>;
  /** Every request on the branches routes, in order, with the error it got from `branchErrors`. */
  branchRequests: { repo: string; path: string; error: number | undefined; at: number }[];
  /** Commit SHA → milliseconds to wait before answering a commit status of it (a slow GitHub). */
  statusDelays: Map<string, number>;
  statusesOf(sha: string): ReceivedStatus[];
  close(): Promise<void>;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => resolve(body));
    request.on('error', reject);
  });
}

/** Starts a fake GitHub on a free port of 127.0.0.1. */
export async function startFakeGitHub(): Promise<FakeGitHub> {
  const statuses: ReceivedStatus[] = [];
  const heads = new Map<string, Map<string, string>>();
  const branchErrors = new Map<string, number>();
  const branchRequests: FakeGitHub['branchRequests'] = [];
  const statusDelays = new Map<string, number>();
  const server = createServer((request, response) => {
    void (async () => {
      const url = new URL(request.url ?? '/', 'http://github.test');
      const parts = url.pathname.split('/').map(decodeURIComponent);
      // /repos/{owner}/{repo}/statuses/{sha}
      if (request.method === 'POST' && parts[1] === 'repos' && parts[4] === 'statuses') {
        const body = JSON.parse(await readBody(request)) as Record<string, string>;
        const delay = statusDelays.get(parts[5] ?? '');
        if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
        statuses.push({
          repo: `${parts[2]}/${parts[3]}`,
          sha: parts[5] ?? '',
          state: body.state ?? '',
          description: body.description ?? '',
          context: body.context ?? '',
          targetUrl: body.target_url,
        });
        response.writeHead(201, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      if (request.method === 'GET' && parts[1] === 'repos' && parts[4] === 'branches') {
        const repo = `${parts[2]}/${parts[3]}`;
        const error = branchErrors.get(repo);
        branchRequests.push({ repo, path: url.pathname, error, at: Date.now() });
        if (error !== undefined) {
          response
            .writeHead(error, { 'content-type': 'application/json' })
            .end(JSON.stringify({ message: `fake GitHub answers ${error}` }));
          return;
        }
      }
      // /repos/{owner}/{repo}/branches (one page holds them all here)
      if (
        request.method === 'GET' &&
        parts[1] === 'repos' &&
        parts[4] === 'branches' &&
        parts.length === 5
      ) {
        const branches = [...(heads.get(`${parts[2]}/${parts[3]}`) ?? new Map<string, string>())];
        response
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify(branches.map(([name, sha]) => ({ name, commit: { sha } }))));
        return;
      }
      // /repos/{owner}/{repo}/branches/{branch}
      if (request.method === 'GET' && parts[1] === 'repos' && parts[4] === 'branches') {
        const sha = heads.get(`${parts[2]}/${parts[3]}`)?.get(parts.slice(5).join('/'));
        if (!sha) {
          response.writeHead(404).end('{"message":"Branch not found"}');
          return;
        }
        response
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ name: parts.slice(5).join('/'), commit: { sha } }));
        return;
      }
      response.writeHead(404).end('{"message":"Not Found"}');
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    statuses,
    heads,
    branchErrors,
    branchRequests,
    statusDelays,
    statusesOf: (sha) => statuses.filter((status) => status.sha === sha),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
