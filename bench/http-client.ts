/**
 * A cheap HTTP client for the API benchmarks: one keep-alive agent (no connection per request)
 * and bodies made and signed before the clock starts, so that a client on the same machine as the
 * API takes as little of its CPU as it can.
 */
import { Agent, request } from 'node:http';
import { signPayload, type GitHubPayload } from '../dev/webhook-deliveries.js';

/** An answer: its status, headers and body as text. */
export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request ready to send again and again. */
export interface Prepared {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

/** Requests to one base URL over at most `sockets` kept-alive connections. */
export class BenchClient {
  private readonly agent: Agent;
  private readonly url: URL;

  constructor(base: string, sockets = 16) {
    this.url = new URL(base);
    this.agent = new Agent({ keepAlive: true, maxSockets: sockets });
  }

  /**
   * Sends a request. A kept-alive connection the server closed as it was reused fails at once
   * (Node's documented race): such a request is sent once more, on a new connection.
   */
  async send(prepared: Prepared): Promise<Answer> {
    try {
      return await this.once(prepared);
    } catch (error) {
      if ((error as { reused?: boolean }).reused !== true) throw error;
      return this.once(prepared);
    }
  }

  private once(prepared: Prepared): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.url.hostname,
          port: this.url.port,
          method: prepared.method,
          path: prepared.path,
          headers: prepared.headers,
          agent: this.agent,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString('utf8'),
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', (error: NodeJS.ErrnoException) => {
        reject(
          req.reusedSocket && error.code === 'ECONNRESET'
            ? Object.assign(error, { reused: true })
            : error,
        );
      });
      req.end(prepared.body);
    });
  }

  get(path: string): Promise<Answer> {
    return this.send({ method: 'GET', path, headers: {} });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** A webhook delivery signed as GitHub signs it, ready to send. */
export function signedDelivery(
  event: string,
  payload: GitHubPayload,
  secret: string,
  delivery: string,
): Prepared {
  const body = Buffer.from(JSON.stringify(payload));
  return {
    method: 'POST',
    path: '/webhooks/github',
    body,
    headers: {
      'content-type': 'application/json',
      'content-length': String(body.length),
      'x-github-event': event,
      'x-github-delivery': delivery,
      'x-hub-signature-256': signPayload(body.toString('utf8'), secret),
    },
  };
}

/** Runs `count` calls, `concurrency` at a time; their latencies (ms) and the rate per second. */
export async function timed(
  count: number,
  concurrency: number,
  call: (index: number) => Promise<void>,
): Promise<{ latencies: number[]; perSecond: number }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const index = next++;
        const t0 = performance.now();
        await call(index);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { latencies, perSecond: count / ((performance.now() - started) / 1000) };
}
