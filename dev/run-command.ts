import { spawn } from 'node:child_process';

/** Options of {@link runCommand}. */
export interface RunCommandOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the command after this many milliseconds. */
  timeoutMs?: number;
}

/** A command that exited non-zero, with the tail of what it printed. */
export class CommandFailedError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly output: string,
  ) {
    super(`${command} failed (exit ${exitCode ?? 'signal'}):\n${output.slice(-4000)}`);
    this.name = 'CommandFailedError';
  }
}

/** Runs a command to its end and returns its standard output; throws with its output on failure. */
export function runCommand(
  file: string,
  args: readonly string[],
  options: RunCommandOptions = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let combined = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      combined += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      combined += chunk.toString();
    });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (error.code === 'ENOENT')
        reject(new Error(`${file}: not found (is it installed and on PATH?)`));
      else reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new CommandFailedError([file, ...args].join(' '), code, combined));
    });
  });
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilInterrupted(): Promise<string> {
  // Signal handlers alone do not keep Node's event loop alive.
  const keepAlive = setInterval(() => undefined, 60_000);
  return new Promise((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        clearInterval(keepAlive);
        resolve(signal);
      });
    }
  });
}
