/** The one logger of a process (pino), with a child per component. */
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Creates the root logger; secrets are redacted wherever they would appear. */
export function createLogger(level: string, name = 'runboat'): Logger {
  return pino({
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
  });
}
