/**
 * The worker's health and metrics endpoints, read over HTTP from a real worker process against
 * the sandbox while real builds go through their init: what Kubernetes probes and Prometheus see.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkerProcess } from '../../dev/worker-process.js';
import { createBuildEnv, testRepos, type BuildEnv } from './build-env.js';
import { eventually } from './helpers.js';

let env: BuildEnv;
let worker: WorkerProcess;
let base: string;

/** The value of one sample line (`name{labels} value`) of a Prometheus text, if present. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

beforeAll(async () => {
  env = await createBuildEnv({ repos: [testRepos.failing, testRepos.acme] });
  worker = await env.startWorker({ RUNBOAT_WORKER_METRICS_PORT: '0' });
  const log = await readFile(worker.logFile, 'utf8');
  const port = /"metrics":"http:\/\/[^:]+:(\d+)\/metrics"[^\n]*worker running/.exec(log)?.[1];
  if (!port) throw new Error(`worker log has no metrics URL: ${log.slice(-2000)}`);
  base = `http://127.0.0.1:${port}`;
}, 120_000);

afterAll(async () => {
  await env?.close();
});

describe('worker health and metrics', () => {
  it('answers /healthz, and /readyz once its workers poll and Temporal answers', async () => {
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ok: true });
    const ready = await eventually(async () => {
      const response = await fetch(`${base}/readyz`);
      if (response.status !== 200) throw new Error(`readyz ${response.status}`);
      return response.json();
    }, 30_000);
    expect(ready).toEqual({ ready: true, polling: true, temporal: true });
    expect((await fetch(`${base}/nowhere`)).status).toBe(404);
  });

  it('exposes the SDK metrics and the builds by status, init wait and duration', async () => {
    const good = await env.build(env.commit('acme/shop', 'main'));
    const bad = await env.build(env.commit('acme/broken', 'main'));
    await env.waitForStatus(good.workflowId, 'stopped');
    await env.waitForStatus(bad.workflowId, 'failed');

    const text = await eventually(async () => {
      const response = await fetch(`${base}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toContain('text/plain');
      const body = await response.text();
      // The watcher's cache follows the Deployments a moment later.
      expect(sample(body, 'runboat_builds{status="stopped"}')).toBe(1);
      expect(sample(body, 'runboat_builds{status="failed"}')).toBe(1);
      // Observed once Temporal told the deploy activity when each build was asked for.
      expect(sample(body, 'runboat_deploy_latency_seconds_count')).toBe(2);
      return body;
    }, 20_000);

    // Every status is a series, 0 included, so that an alert has something to compare.
    expect(sample(text, 'runboat_builds{status="cleanup-failed"}')).toBe(0);
    expect(sample(text, 'runboat_init_duration_seconds_count{outcome="succeeded"}')).toBe(1);
    expect(sample(text, 'runboat_init_duration_seconds_count{outcome="failed"}')).toBe(1);
    const initSeconds = sample(text, 'runboat_init_duration_seconds_sum{outcome="succeeded"}');
    expect(initSeconds).toBeGreaterThan(0);
    expect(initSeconds).toBeLessThan(60);
    const deploySeconds = sample(text, 'runboat_deploy_latency_seconds_sum');
    expect(deploySeconds).toBeGreaterThan(0);
    expect(deploySeconds).toBeLessThan(60);
    expect(sample(text, 'runboat_init_queue_wait_seconds_count')).toBe(2);
    expect(sample(text, 'runboat_init_queue_wait_seconds_sum')).toBeGreaterThanOrEqual(0);
    // Both builds were deployed and initialized; one reached stopped, the other failed.
    expect(sample(text, 'runboat_build_transitions_total{to="todo"}')).toBe(2);
    expect(sample(text, 'runboat_build_transitions_total{to="initializing"}')).toBe(2);
    expect(sample(text, 'runboat_build_transitions_total{to="stopped"}')).toBe(1);
    expect(sample(text, 'runboat_build_transitions_total{to="failed"}')).toBe(1);
    expect(text).toMatch(/^# TYPE runboat_cleanup_failures_total counter$/m);
    // The Temporal SDK's own metrics, passed on from its exporter, on the same port.
    expect(text).toMatch(/^temporal_workflow_task_execution_latency\w*\{[^}]*\} /m);
    expect(text).toMatch(
      /^temporal_activity_execution_latency\w*\{[^}]*activity_type="initialize"/m,
    );
    // And the process' own (prom-client's defaults).
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    console.log(
      `worker metrics: asked → deployed ${deploySeconds?.toFixed(2)} s for 2 builds, init ${initSeconds?.toFixed(2)} s, queue wait ${sample(text, 'runboat_init_queue_wait_seconds_sum')?.toFixed(3)} s for 2 inits, ` +
        `${text.split('\n').filter((l) => l.startsWith('temporal_')).length} SDK samples`,
    );
  }, 120_000);

  it('refuses to start on a busy port, naming the variable', async () => {
    const port = new URL(base).port;
    const started = env.startWorker({ RUNBOAT_WORKER_METRICS_PORT: port });
    await expect(started).rejects.toThrow(/RUNBOAT_WORKER_METRICS_PORT=\d+.*EADDRINUSE/);
  }, 120_000);
});
