/** The one logger of a process (pino), with a child per component. */
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /**
   * Write each line to stdout before the call returns (the default). Off, lines are written in
   * the background, those logged meanwhile together: a process that logs per request (the API's
   * webhook) spends no time waiting for stdout. Lines not written yet are flushed at exit.
   */
  sync?: boolean;
}

/** Creates the root logger; secrets are redacted wherever they would appear. */
export function createLogger(level: string, name = 'runboat', options: LoggerOptions = {}): Logger {
  return pino(
    {
      name,
      level,
      redact: {
        paths: [
          '*.token',
          '*.secretEnv',
          '*.password',
          'headers.authorization',
          '*.RUNBOAT_GITHUB_TOKEN',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination({ dest: 1, sync: options.sync ?? true }),
  );
}
