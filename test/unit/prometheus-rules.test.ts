/**
 * The alert rules of deploy/prometheus-rules.yaml and the scraping set-up of deploy/: every
 * expression parses as PromQL (Prometheus' own grammar, @prometheus-io/lezer-promql) and names
 * only metrics the code registers (read from the registries the processes fill, not from a list
 * kept by hand), and every worker Deployment serves its probes and metrics on the port it sets.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parser } from '@prometheus-io/lezer-promql';
import { Registry } from 'prom-client';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../api/app.js';
import { registerWorkerMetrics } from '../../api/worker-metrics.js';
import { createBuildLogs } from '../../lib/build-logs.js';
import { createBuildMetrics, registerBuildsGauge } from '../../lib/build-metrics.js';
import type { KubeClients } from '../../lib/kube.js';
import { createLogger } from '../../lib/logger.js';
import { loadSettings } from '../../lib/settings.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (path: string) => readFileSync(join(projectRoot, path), 'utf8');

interface AlertRule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string };
  spec: { groups: { name: string; rules: AlertRule[] }[] };
}

const ruleFile = parseYaml(read('deploy/prometheus-rules.yaml')) as RuleFile;
const rules = ruleFile.spec.groups.flatMap((group) => group.rules);

const emptyIndex = {
  get: () => undefined,
  list: () => [],
  all: () => [],
  on: () => emptyIndex,
  off: () => emptyIndex,
  isSynced: true,
};

/** Every sample name the API and the workers expose, from the registries they fill. */
async function registeredSampleNames(): Promise<Set<string>> {
  const registry = new Registry();
  // The workers' (lib/build-metrics.ts).
  createBuildMetrics(registry);
  registerBuildsGauge(registry, () => []);
  // The API's: HTTP requests (api/app.ts), log streams (lib/build-logs.ts), workers polling.
  createBuildLogs({} as KubeClients, 'builds', { metrics: registry });
  registerWorkerMetrics(registry, () =>
    Promise.resolve({ temporal_reachable: true, queues: [], warnings: [], checked_at: '' }),
  );
  createApp({
    // An empty index: the app reads it once at creation (the fleet summary).
    index: emptyIndex as never,
    commands: {} as never,
    logs: {} as never,
    settings: { repos: () => [], maxStarted: 1, maxDeployed: 1, admin: {}, publicStartStop: false },
    temporalReady: () => Promise.resolve(true),
    logger: createLogger('silent'),
    metrics: registry,
  });
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') {
      for (const suffix of ['_bucket', '_count', '_sum']) names.add(metric.name + suffix);
    }
  }
  return names;
}

/** The metric names an expression selects; throws on a syntax error or a nameless selector. */
function selectedMetrics(expr: string): string[] {
  const tree = parser.parse(expr);
  const names: string[] = [];
  const errors: number[] = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
      if (node.name === 'VectorSelector') {
        const identifier = node.node.getChild('Identifier');
        if (!identifier) throw new Error(`${expr}: a selector without a metric name`);
        names.push(expr.slice(identifier.from, identifier.to));
      }
    },
  });
  if (errors.length > 0) throw new Error(`${expr}: PromQL syntax error at ${errors.join(', ')}`);
  return names;
}

describe('deploy/prometheus-rules.yaml', () => {
  it('is a PrometheusRule whose spec is a well-formed rules file', () => {
    expect(ruleFile.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(ruleFile.kind).toBe('PrometheusRule');
    expect(ruleFile.metadata.namespace).toBe('runboat');
    const groupNames = ruleFile.spec.groups.map((group) => group.name);
    expect(new Set(groupNames).size).toBe(groupNames.length);
    for (const rule of rules) {
      expect(rule.alert).toMatch(/^Runboat[A-Z][A-Za-z]+$/);
      expect(rule.record).toBeUndefined();
      expect(typeof rule.expr).toBe('string');
      expect(rule.for).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning', 'info']).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary).toBeTruthy();
      expect(rule.annotations?.description).toBeTruthy();
    }
    expect(new Set(rules.map((rule) => rule.alert)).size).toBe(rules.length);
  });

  it('alerts on no worker polling, cleanup-failed builds and the init failure rate', () => {
    const byName = new Map(rules.map((rule) => [rule.alert, rule.expr]));
    expect(byName.get('RunboatNoWorkerPolling')).toContain('runboat_task_queue_pollers');
    expect(byName.get('RunboatCleanupFailed')).toContain('runboat_builds{status="cleanup-failed"}');
    expect(byName.get('RunboatInitFailureRate')).toContain(
      'runboat_init_duration_seconds_count{outcome="failed"}',
    );
  });

  it('parses as PromQL and names only metrics the code registers', async () => {
    const registered = await registeredSampleNames();
    // The registries are read for real: a rule naming a metric nobody exports fails here.
    expect(registered).toContain('runboat_http_requests_total');
    expect(registered).toContain('runboat_init_queue_wait_seconds_bucket');
    for (const rule of rules) {
      const names = selectedMetrics(rule.expr);
      expect(names.length, rule.alert).toBeGreaterThan(0);
      for (const name of names) expect(registered, `${rule.alert}: ${name}`).toContain(name);
    }
  });

  it('points each runbook_url at a page and heading of the docs that exist', () => {
    const anchors = (markdown: string) =>
      new Set(
        [...markdown.matchAll(/^#{1,6}\s+(.+)$/gm)].map((match) =>
          (match[1] ?? '')
            .trim()
            .toLowerCase()
            .replace(/[^\p{L}\p{N}\s_-]/gu, '')
            .replace(/\s/g, '-'),
        ),
      );
    const linked = rules.filter((rule) => rule.annotations?.runbook_url);
    expect(linked.map((rule) => rule.alert)).toContain('RunboatCleanupFailed');
    for (const rule of linked) {
      const [page = '', heading] = (rule.annotations?.runbook_url ?? '').split('#');
      expect(page, rule.alert).toMatch(/^docs\/[\w-]+\.md$/);
      if (heading !== undefined) expect(anchors(read(page)), rule.alert).toContain(heading);
    }
  });

  it('would catch a typo or a syntax error (the checks are not vacuous)', async () => {
    const registered = await registeredSampleNames();
    expect(registered).not.toContain(selectedMetrics('max(runboat_build{status="x"}) > 0')[0]);
    expect(() => selectedMetrics('sum(rate(runboat_builds[5m])) /')).toThrow(/syntax error/);
    expect(() => selectedMetrics('{__name__="runboat_builds"}')).toThrow(/without a metric name/);
  });
});

interface Container {
  ports?: { name: string; containerPort: number }[];
  env?: { name: string; value?: string }[];
  readinessProbe?: { httpGet?: { path: string; port: string } };
  livenessProbe?: { httpGet?: { path: string; port: string } };
}
interface Deployment {
  kind: string;
  metadata: { name: string };
  spec: {
    template: {
      metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
      spec: { containers: Container[] };
    };
  };
}

describe('scraping and probing the workers (deploy/)', () => {
  const workers = ['deploy/builds-worker.yaml', 'deploy/init-worker.yaml'].map((file) =>
    parseAllDocuments(read(file))
      .map((doc) => doc.toJS() as Deployment)
      .find((manifest) => manifest.kind === 'Deployment')!,
  );

  it('probes /readyz and /healthz on the port the worker listens on', () => {
    for (const deployment of workers) {
      const container = deployment.spec.template.spec.containers[0]!;
      const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? '']));
      const settings = loadSettings(env);
      const port = container.ports?.find((p) => p.name === 'metrics');
      expect(port?.containerPort, deployment.metadata.name).toBe(
        settings.RUNBOAT_WORKER_METRICS_PORT,
      );
      expect(settings.RUNBOAT_WORKER_METRICS_HOST).toBe('0.0.0.0');
      expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
      expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
      expect(deployment.spec.template.metadata.annotations).toMatchObject({
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': String(port?.containerPort),
        'prometheus.io/path': '/metrics',
      });
    }
  });

  it('has PodMonitors that select the API and both worker roles by a port they name', () => {
    const monitors = parseAllDocuments(read('deploy/pod-monitors.yaml')).map(
      (doc) =>
        doc.toJS() as {
          kind: string;
          spec: {
            selector: {
              matchLabels?: Record<string, string>;
              matchExpressions?: { key: string; operator: string; values: string[] }[];
            };
            podMetricsEndpoints: { port: string; path: string }[];
          };
        },
    );
    const api = parseAllDocuments(read('deploy/api.yaml'))
      .map((doc) => doc.toJS() as Deployment)
      .find((manifest) => manifest.kind === 'Deployment')!;
    const selects = (
      selector: (typeof monitors)[number]['spec']['selector'],
      labels: Record<string, string>,
    ) =>
      Object.entries(selector.matchLabels ?? {}).every(([key, value]) => labels[key] === value) &&
      (selector.matchExpressions ?? []).every(
        (expression) =>
          expression.operator === 'In' && expression.values.includes(labels[expression.key] ?? ''),
      );
    for (const deployment of [api, ...workers]) {
      const template = deployment.spec.template;
      const annotations = template.metadata.annotations ?? {};
      const annotated = template.spec.containers[0]?.ports?.find(
        (p) => String(p.containerPort) === annotations['prometheus.io/port'],
      );
      expect(annotated, `${deployment.metadata.name}: prometheus.io/port`).toBeDefined();
      expect(annotations['prometheus.io/scrape']).toBe('true');
      const monitor = monitors.find((m) => selects(m.spec.selector, template.metadata.labels));
      expect(monitor?.kind, deployment.metadata.name).toBe('PodMonitor');
      const ports = template.spec.containers[0]?.ports?.map((p) => p.name);
      for (const endpoint of monitor?.spec.podMetricsEndpoints ?? []) {
        expect(ports).toContain(endpoint.port);
        expect(endpoint.path).toBe('/metrics');
      }
    }
  });
});
