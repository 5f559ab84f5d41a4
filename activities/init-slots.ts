/**
 * The build workflow's side of the global init limit (workflows/init-slots-workflow.ts): ask for
 * a slot (starting the slots workflow if it is not running), and tell which builds' workflows no
 * longer run. Built by `createInitSlotsActivities(deps)`, joined in `activities/index.ts`.
 */
import type { ActivityDeps } from './index.js';

/** What the init slots activities need from the process that runs them. */
export type InitSlotsActivityDeps = Pick<ActivityDeps, 'requestInitSlot' | 'workflowRunning'>;

/** Builds the activities of the init slots. */
export function createInitSlotsActivities(deps: InitSlotsActivityDeps) {
  return {
    /**
     * Asks the init slots workflow for a slot for `build` (signal-with-start: a slots workflow
     * that an operator terminated comes back); the grant arrives as a signal to the build.
     */
    async requestInitSlot(build: string, ticket: number, force: boolean): Promise<void> {
      await deps.requestInitSlot(build, ticket, force);
    },

    /** Of these workflow ids, those whose workflow no longer runs. */
    async workflowsNotRunning(ids: string[]): Promise<string[]> {
      const running = await Promise.all(ids.map((id) => deps.workflowRunning(id)));
      return ids.filter((_, index) => !running[index]);
    },
  };
}
