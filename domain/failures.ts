/**
 * The reason a build shows when something failed: the root cause of a failure chain, with its
 * type. A failure raised in an activity reaches the workflow wrapped (an ActivityFailure whose
 * message is only "Activity task failed"); what the operator needs is at the end of the chain.
 * Deterministic, so workflows may use it (docs/failures.md).
 */

/** What a failure chain says once unwrapped. */
export interface RootCause {
  /** The failure's type (`KubefilesInvalid`, `MissingSecret`…), when it has one. */
  type: string | null;
  message: string;
}

interface FailureLike {
  message?: unknown;
  type?: unknown;
  name?: unknown;
  cause?: unknown;
}

/** Wrappers whose own message says nothing the cause does not say better. */
const wrappers = new Set(['ActivityFailure', 'ChildWorkflowFailure']);

/** The deepest failure of a cause chain that says something, with its type. */
export function rootCause(error: unknown): RootCause {
  let current: unknown = error;
  let found: RootCause = { type: null, message: String(error) };
  for (let depth = 0; depth < 20 && current !== undefined && current !== null; depth++) {
    if (typeof current !== 'object') {
      found = { type: null, message: String(current) };
      break;
    }
    const failure = current as FailureLike;
    const name = typeof failure.name === 'string' ? failure.name : '';
    const message = typeof failure.message === 'string' ? failure.message : '';
    if (!wrappers.has(name) && message !== '') {
      const type = typeof failure.type === 'string' && failure.type !== '' ? failure.type : null;
      found = { type: type ?? (name && name !== 'Error' ? name : null), message };
    }
    current = failure.cause;
  }
  return found;
}

/** The root cause as one line for `failure_reason`: `Type: message`. */
export function failureReason(error: unknown): string {
  const cause = rootCause(error);
  return cause.type && !cause.message.startsWith(`${cause.type}:`)
    ? `${cause.type}: ${cause.message}`
    : cause.message;
}

/** The failure type of an image build whose Job failed (docs/failures.md). */
export const IMAGE_BUILD_FAILED = 'ImageBuildFailed';
