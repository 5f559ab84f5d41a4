/**
 * The payloads of the GitHub events the webhook handles, as zod schemas of the fields it reads.
 * Parsing one gives a typed payload or names the field that is wrong (a 400 to the sender); the
 * compile-time checks at the end keep each schema a view of the payload type `@octokit/webhooks`
 * declares for the event, so a field read here is a field GitHub sends.
 */
import type { EmitterWebhookEvent } from '@octokit/webhooks';
import { z } from 'zod';

const SHA = /^[0-9a-f]{40}$/i;

const text = z
  .string({ error: 'expected a non-empty string' })
  .min(1, 'expected a non-empty string');
export const sha = z
  .string({ error: 'expected a 40-digit commit SHA' })
  .regex(SHA, 'expected a 40-digit commit SHA')
  .transform((value) => value.toLowerCase());
const prNumber = z
  .number({ error: 'expected a pull request number' })
  .int('expected a pull request number')
  .min(1, 'expected a pull request number')
  .max(Number.MAX_SAFE_INTEGER, 'expected a pull request number');
/** Repo names are compared lower-case everywhere (GitHub's are case-insensitive). */
const repository = z.object(
  { full_name: text.transform((name) => name.toLowerCase()) },
  { error: 'expected an object' },
);
const person = z.object({ name: z.string().optional(), username: z.string().optional() });
const user = z.object({ login: z.string() });

/** `push`: a branch moved, was created or deleted. */
export const pushPayload = z.object({
  ref: text,
  // Checked by the handler once it knows the push did not delete its branch.
  after: z.string({ error: 'expected a 40-digit commit SHA' }),
  deleted: z.boolean().optional(),
  repository,
  head_commit: z
    .object({ message: z.string(), author: person.optional() })
    .nullable()
    .optional()
    .catch(undefined),
});

/** The new head of a push that did not delete its branch. */
export const pushedCommit = z.object({ after: sha });

/** The action of a `pull_request` event, read first: most actions are not acted on. */
export const pullRequestAction = z.object({ action: z.string() });

/** `pull_request`: opened, pushed to, reopened, closed (and actions we ignore). */
export const pullRequestPayload = z.object({
  action: text,
  repository,
  pull_request: z.object(
    {
      number: prNumber,
      title: z.string().optional().catch(undefined),
      user: user.nullable().optional().catch(undefined),
      base: z.object({ ref: text }, { error: 'expected an object' }),
      head: z.object(
        {
          sha,
          // Where the head commit comes from: another repo (or a deleted fork, null) is a fork.
          repo: z
            .object({ full_name: z.string() })
            .nullable()
            .optional()
            .catch(null)
            .transform((repo) => (repo?.full_name ? repo.full_name.toLowerCase() : null)),
        },
        { error: 'expected an object' },
      ),
    },
    { error: 'expected an object' },
  ),
});

/** `delete`: a branch or a tag was deleted. */
export const deletePayload = z.object({ ref: text, ref_type: text, repository });

/** `check_run`: a button of a build's check run was pressed (other actions are ignored). */
export const checkRunPayload = z.object({
  action: text,
  repository,
  installation: z.object({ id: z.number() }).optional(),
  requested_action: z.object({ identifier: z.string().optional() }).optional(),
  check_run: z.object(
    { head_sha: sha, external_id: z.string().nullable().optional() },
    { error: 'expected an object' },
  ),
});

/** A payload that is not what its event promises. */
export class PayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadError';
  }
}

/** Parses a payload with its schema, or throws a {@link PayloadError} naming the field. */
export function parsePayload<T extends z.ZodType>(schema: T, payload: unknown): z.output<T> {
  const parsed = schema.safeParse(payload);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = issue?.path.map(String).join('.') || 'body';
  throw new PayloadError(`${path}: ${issue?.message ?? 'invalid'}`);
}

/** The first line of a commit message, at most 200 characters. */
export function firstLine(message: string | undefined): string | undefined {
  const line = message?.split('\n', 1)[0]?.trim();
  return line ? line.slice(0, 200) : undefined;
}

// Each schema reads only what GitHub's declared payload has: these fail to compile otherwise.
type Payload<E extends EmitterWebhookEvent['name']> = Extract<
  EmitterWebhookEvent,
  { name: E }
>['payload'];
type ReadsFrom<Schema extends z.ZodType, Declared> = [Declared] extends [z.input<Schema>]
  ? true
  : never;
export const payloadsMatchGitHub: [
  ReadsFrom<typeof pushPayload, Payload<'push'>>,
  ReadsFrom<typeof pullRequestPayload, Payload<'pull_request'>>,
  ReadsFrom<typeof deletePayload, Payload<'delete'>>,
  ReadsFrom<typeof checkRunPayload, Payload<'check_run'>>,
] = [true, true, true, true];
