/**
 * What the API answers while its process starts (docs/operations.md, "The API at scale"): it
 * listens before it loads the rest of its modules and connects to Temporal, so that a restart is
 * seen within a second, whatever it then takes. Health answers; everything else is a 503 with
 * `retry-after`, as while the build index loads. Kept free of dependencies: it is loaded first.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** The answer to every request but health while the API starts or its build index loads. */
export const STARTING_ANSWER = {
  error: 'starting: the build index is loading; try again in a moment',
} as const;

/** Answers a request before the application is ready. */
export function answerWhileStarting(request: IncomingMessage, response: ServerResponse): void {
  const path = (request.url ?? '/').split('?', 1)[0];
  const [status, body] = path === '/healthz' ? [200, { ok: true }] : [503, STARTING_ANSWER];
  response.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    ...(status === 503 ? { 'retry-after': '1' } : {}),
  });
  response.end(JSON.stringify(body));
}
