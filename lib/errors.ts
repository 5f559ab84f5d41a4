/**
 * Errors a client caused, each with the HTTP status the API answers it with (one Koa middleware
 * maps them); anything else is a server error.
 */

/** A request the client can fix. */
export class ClientError extends Error {
  constructor(
    message: string,
    readonly status: number = 400,
  ) {
    super(message);
    this.name = 'ClientError';
  }
}

/** No credential, or a wrong one. */
export class UnauthorizedError extends ClientError {
  constructor(message = 'authentication required') {
    super(message, 401);
    this.name = 'UnauthorizedError';
  }
}

/** No build by that name. */
export class BuildNotFoundError extends ClientError {
  constructor(readonly build: string) {
    super(`no build named ${build}`, 404);
    this.name = 'BuildNotFoundError';
  }
}

/** The repo or branch is not configured for builds. */
export class UnsupportedRepoError extends ClientError {
  constructor(
    readonly repo: string,
    readonly branch: string,
  ) {
    super(`${repo} ${branch}: not configured for builds`, 400);
    this.name = 'UnsupportedRepoError';
  }
}

/** The build cannot make this transition from its current status. */
export class InvalidTransitionError extends ClientError {
  constructor(message: string) {
    super(message, 409);
    this.name = 'InvalidTransitionError';
  }
}
