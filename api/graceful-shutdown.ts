/**
 * The API's graceful shutdown (docs/operations.md, "Shutdown"): on SIGTERM the server stops
 * accepting connections at once, answers the requests it has already read — a webhook delivery
 * answered 2xx must have reached Temporal, GitHub does not redeliver on its own — and closes
 * every connection as soon as it is idle. Long streams (build events, followed logs) end at once:
 * they would hold the shutdown until its deadline, and their clients reconnect elsewhere.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/** What the drain did. */
export interface DrainReport {
  /** Requests being answered when the shutdown began. */
  inFlight: number;
  /** Connections still open at the deadline, closed by force (their requests unanswered). */
  forced: number;
  /** Milliseconds from the start of the shutdown to the last connection closed. */
  tookMs: number;
}

/** The shutdown of one HTTP server; see {@link trackShutdown}. */
export interface ServerShutdown {
  /** Aborted when the shutdown begins: /readyz answers 503 and long streams end. */
  readonly signal: AbortSignal;
  /**
   * Stops accepting, waits for the requests in flight (up to `graceMs`), then closes whatever is
   * left. Later calls return the same promise.
   */
  drain(graceMs: number): Promise<DrainReport>;
}

/**
 * Tracks the requests of `server` so that it can be drained; call before the server serves its
 * first request.
 */
export function trackShutdown(server: Server): ServerShutdown {
  const controller = new AbortController();
  const responses = new Set<ServerResponse>();
  let draining: Promise<DrainReport> | undefined;

  server.on('request', (_request: IncomingMessage, response: ServerResponse) => {
    responses.add(response);
    // A request read after the shutdown began (on a kept-alive connection) is answered, then
    // its connection closes.
    if (controller.signal.aborted) response.setHeader('connection', 'close');
    response.once('close', () => {
      responses.delete(response);
      if (controller.signal.aborted) server.closeIdleConnections();
    });
  });

  return {
    signal: controller.signal,
    drain(graceMs) {
      draining ??= new Promise<DrainReport>((resolve) => {
        const started = Date.now();
        const inFlight = responses.size;
        for (const response of responses) {
          if (!response.headersSent) response.setHeader('connection', 'close');
        }
        let forced = 0;
        const deadline = setTimeout(() => {
          forced = responses.size;
          server.closeAllConnections();
        }, graceMs);
        server.close(() => {
          clearTimeout(deadline);
          resolve({ inFlight, forced, tookMs: Date.now() - started });
        });
        // After close(): the streams end and their connections, now idle, are closed.
        controller.abort();
        server.closeIdleConnections();
      });
      return draining;
    },
  };
}
