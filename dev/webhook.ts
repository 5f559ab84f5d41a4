/**
 * `npm run webhook -- push <owner/repo> <branch> [--sha SHA] [--delete]`
 * `npm run webhook -- pr <owner/repo> <number> <base branch> [--sha SHA] [--action closed]`
 *
 * Sends a GitHub webhook delivery, signed for real, to the API `npm start` runs (or to
 * `RUNBOAT_API_URL` with `RUNBOAT_WEBHOOK_SECRET`), and prints the answer.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sandboxRoot } from './sandbox.js';
import { deliver, pullRequestPayload, pushPayload } from './webhook-deliveries.js';

async function target(): Promise<{ apiUrl: string; webhookSecret: string | undefined }> {
  if (process.env.RUNBOAT_API_URL) {
    return {
      apiUrl: process.env.RUNBOAT_API_URL,
      webhookSecret: process.env.RUNBOAT_WEBHOOK_SECRET,
    };
  }
  const root = sandboxRoot();
  for (const entry of await readdir(root).catch(() => [])) {
    const text = await readFile(join(root, entry, 'system.json'), 'utf8').catch(() => undefined);
    if (text) return JSON.parse(text) as { apiUrl: string; webhookSecret: string };
  }
  throw new Error('no system started by npm start, and no RUNBOAT_API_URL');
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      sha: { type: 'string' },
      action: { type: 'string', default: 'opened' },
      delete: { type: 'boolean', default: false },
    },
  });
  const [kind, repo, ...rest] = positionals;
  const sha = values.sha ?? randomBytes(20).toString('hex');
  const { apiUrl, webhookSecret } = await target();
  const url = `${apiUrl}/webhooks/github`;
  let answer;
  if (kind === 'push' && repo && rest[0]) {
    answer = await deliver(
      url,
      'push',
      pushPayload({ repo, branch: rest[0], after: sha, deleted: values.delete }),
      webhookSecret,
    );
  } else if (kind === 'pr' && repo && rest[0] && rest[1]) {
    answer = await deliver(
      url,
      'pull_request',
      pullRequestPayload({
        repo,
        number: Number(rest[0]),
        baseRef: rest[1],
        headSha: sha,
        action: values.action,
      }),
      webhookSecret,
    );
  } else {
    throw new Error(
      'usage: npm run webhook -- push <owner/repo> <branch> | pr <owner/repo> <number> <base>',
    );
  }
  console.log(`${answer.status} ${JSON.stringify(answer.body)}`);
}

main().catch((error: unknown) => {
  console.error(`[webhook] ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
