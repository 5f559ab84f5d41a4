/**
 * The Kubernetes base in deploy/: least-privilege RBAC in the builds namespace only, documented
 * by the table of docs/operations.md; hardened pods; settings the settings module accepts.
 * (test/integration/rbac.test.ts renders it with kubectl and proves its RBAC for real.)
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadSettings } from '../../lib/settings.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (path: string) => readFileSync(join(projectRoot, path), 'utf8');

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}
interface Manifest {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: Rule[];
  subjects?: { kind: string; name: string; namespace: string }[];
  roleRef?: { kind: string; name: string };
  spec?: Record<string, unknown>;
}
interface Container {
  name: string;
  args?: string[];
  env?: { name: string; value?: string }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown>;
  readinessProbe?: unknown;
}
interface PodSpec {
  serviceAccountName?: string;
  securityContext?: Record<string, unknown>;
  containers: Container[];
}

const kustomization = parseYaml(read('deploy/kustomization.yaml')) as {
  resources: string[];
  configMapGenerator: { name: string; literals?: string[]; files?: string[] }[];
};
const manifests: Manifest[] = kustomization.resources.flatMap((file) =>
  parseAllDocuments(read(join('deploy', file))).map((doc) => doc.toJS() as Manifest),
);
const ofKind = (kind: string) => manifests.filter((manifest) => manifest.kind === kind);
const podSpec = (deployment: Manifest) =>
  (deployment.spec as { template: { spec: PodSpec } }).template.spec;

/** Rows `ServiceAccount | group | resources | verbs` of the RBAC table of docs/operations.md. */
function documentedRules(): string[] {
  const doc = read('docs/operations.md');
  const table = doc.slice(doc.indexOf('<!-- rbac-table'));
  const rows = table.split('\n').filter((line) => line.startsWith('| `runboat-'));
  return rows.flatMap((row) => {
    const [account, group, resources, verbs] = row
      .split('|')
      .slice(1, 5)
      .map((cell) => cell.trim());
    const list = (cell = '') => cell.replace(/`/g, '').split(/,\s*/).sort().join(',');
    return list(resources)
      .split(',')
      .map(
        (resource) =>
          `${list(account)} ${group === 'core' ? '' : list(group)} ${resource} ${list(verbs)}`,
      );
  });
}

describe('the Kubernetes base (deploy/)', () => {
  it('grants permissions only by Roles in the builds namespace', () => {
    expect(ofKind('ClusterRole')).toEqual([]);
    expect(ofKind('ClusterRoleBinding')).toEqual([]);
    for (const manifest of [...ofKind('Role'), ...ofKind('RoleBinding')]) {
      expect(manifest.metadata.namespace).toBe('runboat-builds');
    }
    for (const binding of ofKind('RoleBinding')) {
      expect(binding.roleRef?.kind).toBe('Role');
      expect(binding.subjects?.map((s) => `${s.kind}/${s.namespace}/${s.name}`)).toEqual([
        `ServiceAccount/runboat/${binding.roleRef?.name}`,
      ]);
    }
  });

  it('gives the API read access only, and no Secrets', () => {
    const api = ofKind('Role').find((role) => role.metadata.name === 'runboat-api');
    const verbs = new Set(api?.rules?.flatMap((rule) => rule.verbs));
    expect([...verbs].sort()).toEqual(['get', 'list', 'watch']);
    expect(api?.rules?.flatMap((rule) => rule.resources)).not.toContain('secrets');
    expect(api?.rules?.flatMap((rule) => rule.verbs)).not.toContain('*');
  });

  it('matches the RBAC table of docs/operations.md, rule for rule', () => {
    const actual = ofKind('Role').flatMap((role) =>
      (role.rules ?? []).flatMap((rule) =>
        rule.resources.map(
          (resource) =>
            `${role.metadata.name} ${rule.apiGroups.join(',')} ${resource} ${[...rule.verbs].sort().join(',')}`,
        ),
      ),
    );
    expect(documentedRules().sort()).toEqual(actual.sort());
  });

  it('runs every pod non-root, read-only, without capabilities, with resources', () => {
    const deployments = ofKind('Deployment');
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual([
      'runboat-api',
      'runboat-builds-worker',
      'runboat-init-worker',
    ]);
    for (const deployment of deployments) {
      const spec = podSpec(deployment);
      expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
      expect(spec.serviceAccountName).toMatch(/^runboat-(api|worker)$/);
      for (const container of spec.containers) {
        expect(container.securityContext).toMatchObject({
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
        });
        expect(container.resources?.requests).toHaveProperty('cpu');
        expect(container.resources?.requests).toHaveProperty('memory');
        expect(container.resources?.limits).toHaveProperty('memory');
      }
      const pdb = ofKind('PodDisruptionBudget').find(
        (budget) => budget.metadata.name === deployment.metadata.name,
      );
      expect(pdb?.spec?.selector).toEqual(
        (deployment.spec as { selector: unknown } | undefined)?.selector,
      );
    }
    const api = deployments.find((d) => d.metadata.name === 'runboat-api');
    expect(podSpec(api!).containers[0]?.readinessProbe).toBeDefined();
    const roles = deployments.map((d) => podSpec(d).containers[0]?.args?.join(' ')).sort();
    expect(roles).toEqual(['api', 'worker builds', 'worker init,image-build']);
  });

  it('sets only RUNBOAT_* variables the settings know, with values they accept', () => {
    const config = kustomization.configMapGenerator.find((c) => c.name === 'runboat-config');
    const literals = Object.fromEntries(
      (config?.literals ?? []).map((line) => [
        line.slice(0, line.indexOf('=')),
        line.slice(line.indexOf('=') + 1),
      ]),
    );
    for (const deployment of ofKind('Deployment')) {
      const env: Record<string, string> = {
        ...literals,
        RUNBOAT_REPOS_FILE: join(projectRoot, 'deploy', 'repos', 'repos.yaml'),
      };
      for (const variable of podSpec(deployment).containers[0]?.env ?? []) {
        env[variable.name] = variable.value ?? 'a-secret-from-a-secret-ref';
      }
      const names = Object.keys(env).filter((name) => name.startsWith('RUNBOAT_'));
      const settings = loadSettings(env) as unknown as Record<string, unknown>;
      expect(names.filter((name) => !(name in settings))).toEqual([]);
    }
    expect(kustomization.configMapGenerator.find((c) => c.name === 'runboat-repos')?.files).toEqual(
      ['repos/repos.yaml'],
    );
  });
});
