/**
 * The worker's HTTP endpoints for Kubernetes probes and Prometheus (docs/operations.md, "Metrics
 * and alerts"): `/healthz` (the process answers), `/readyz` (its workers poll and Temporal
 * answers) and `/metrics`: the system's prom-client registry followed by the Temporal SDK's own
 * metrics, which the SDK's Prometheus exporter serves on a loopback port of its own and this
 * server passes on, so that one port carries everything.
 */
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/logger.js';

/** One readiness check: its name and whether it passes. */
export type ReadinessChecks = Record<string, boolean>;

/** Options of {@link startHealthServer}. */
export interface HealthServerOptions {
  host: string;
  /** 0: a free port (the server's `port` says which). */
  port: number;
  registry: Registry;
  /** Where the SDK's Prometheus exporter serves its metrics (`http://127.0.0.1:…/metrics`). */
  sdkMetricsUrl?: string | undefined;
  /** The readiness checks; `/readyz` is 200 when every one passes. */
  ready: () => Promise<ReadinessChecks>;
  logger: Logger;
}

/** A running health server. */
export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

/** A TCP port free on the loopback interface now (for the SDK's exporter). */
export async function freeLoopbackPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || !address) throw new Error('no port');
  return address.port;
}

async function sdkMetrics(url: string | undefined, log: Logger): Promise<string> {
  if (!url) return '';
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return await response.text();
  } catch (error) {
    // The system's metrics still answer: a scrape without the SDK's is better than none.
    log.warn({ err: error, url }, 'SDK metrics not read');
    return '';
  }
}

/** Starts the server; resolves once it listens. */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const log = options.logger.child({ component: 'health' });
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?', 1)[0];
    const answer = (status: number, type: string, body: string) => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      response.end(request.method === 'HEAD' ? undefined : body);
    };
    const json = (status: number, body: unknown) =>
      answer(status, 'application/json', JSON.stringify(body));
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      json(405, { error: 'GET only' });
      return;
    }
    const handle = async () => {
      switch (path) {
        case '/healthz':
          json(200, { ok: true });
          return;
        case '/readyz': {
          const checks = await options.ready();
          const ready = Object.values(checks).every(Boolean);
          json(ready ? 200 : 503, { ready, ...checks });
          return;
        }
        case '/metrics': {
          const [own, sdk] = await Promise.all([
            options.registry.metrics(),
            sdkMetrics(options.sdkMetricsUrl, log),
          ]);
          answer(200, options.registry.contentType, `${own.trimEnd()}\n${sdk}`);
          return;
        }
        default:
          json(404, { error: `no such path: ${path}` });
      }
    };
    handle().catch((error: unknown) => {
      log.error({ err: error, path }, 'health request failed');
      if (!response.headersSent) json(500, { error: 'internal error' });
      else response.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
