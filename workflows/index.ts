/** Every workflow, for the worker's bundler. */
export { buildWorkflow } from './build-workflow.js';
export { fleetWorkflow } from './fleet-workflow.js';
export { initSlotsWorkflow } from './init-slots-workflow.js';
export { pollRepoWorkflow } from './poll-workflow.js';
export { redeliverWorkflow } from './redeliver-workflow.js';
