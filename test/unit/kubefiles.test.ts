import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import {
  annotations,
  BUILD_LABEL,
  CLEANUP_FINALIZER,
  JOB_KIND_LABEL,
  STATUS_LABEL,
} from '../../domain/build.js';
import { buildName } from '../../domain/names.js';
import {
  checkManifests,
  defaultKubefilesDir,
  KubefilesError,
  renderKubefiles,
  type KubefilesContext,
  type KubefilesMode,
  type Manifest,
} from '../../lib/kubefiles.js';
import { kubefilesContext } from './kubefiles-fixture.js';

const goldenDir = fileURLToPath(new URL('./__golden__', import.meta.url));
const renderedModes = ['deployment', 'initialize', 'cleanup'] as const;

interface Variation {
  targetBranch?: string;
  env?: Record<string, string>;
  templateVars?: Record<string, unknown>;
}

function contextFor(mode: KubefilesMode, variation: Variation = {}): KubefilesContext {
  const commit = {
    repo: 'acme/shop',
    targetBranch: variation.targetBranch ?? '16.0',
    pr: 42,
    gitCommit: '0123456789abcdef0123456789abcdef01234567',
  };
  const name = buildName(commit);
  return kubefilesContext(commit, {
    mode,
    source: { addons: 'sale,stock' },
    env: variation.env ?? { ADDONS: 'sale,stock' },
    secretEnv: { PGPASSWORD: 's3cret' },
    templateVars: variation.templateVars ?? {},
    ...(mode === 'initialize' && { job: { name: `${name}-init-1` } }),
    ...(mode === 'cleanup' && { job: { name: `${name}-cleanup-1` } }),
  });
}

function render(mode: KubefilesMode, variation?: Variation): Promise<Manifest[]> {
  return renderKubefiles(defaultKubefilesDir, contextFor(mode, variation));
}

/** Every key path of a value, array indices included, each ending with the type of its leaf. */
function keyPaths(value: unknown, prefix: string[] = []): string[] {
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value);
    if (entries.length === 0) return [`${JSON.stringify(prefix)}: empty`];
    return entries.flatMap(([key, child]) => keyPaths(child, [...prefix, key]));
  }
  return [`${JSON.stringify(prefix)}: ${value === null ? 'null' : typeof value}`];
}

function find(manifests: Manifest[], kind: string, name?: string): Manifest {
  const found = manifests.find(
    (m) => m.kind === kind && (name === undefined || m.metadata.name === name),
  );
  if (!found) throw new Error(`no ${kind} ${name ?? ''}`);
  return found;
}

function at(value: unknown, ...path: (string | number)[]): unknown {
  return path.reduce<unknown>(
    (node, key) => (node as Record<string | number, unknown> | undefined)?.[key],
    value,
  );
}

function isDnsName(host: string): boolean {
  return (
    host.length <= 253 &&
    host.split('.').every((label) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(label))
  );
}

describe('default kubefiles', () => {
  it.each(renderedModes)('render %s as in the golden file', async (mode) => {
    const manifests = await render(mode);
    // Quoted and laid out as prettier would, since `npm run lint` checks the golden files too.
    const text = manifests
      .map((manifest) => YAML.stringify(manifest, { singleQuote: true, blockQuote: 'literal' }))
      .join('---\n');
    const golden = join(goldenDir, `${mode}.yaml`);
    if (process.env.UPDATE_GOLDEN === '1') await writeFile(golden, text);
    expect(text).toBe(await readFile(golden, 'utf8'));
  });

  it('use the label, annotation and finalizer names of domain/build.ts', async () => {
    const context = contextFor('deployment');
    const deployment = find(await render('deployment'), 'Deployment');
    expect(deployment.metadata.labels).toEqual({
      [BUILD_LABEL]: context.buildName,
      [STATUS_LABEL]: 'todo',
    });
    expect(deployment.metadata.annotations).toEqual({
      [annotations.repo]: 'acme/shop',
      [annotations.targetBranch]: '16.0',
      [annotations.pr]: '42',
      [annotations.gitCommit]: context.commit.sha,
      [annotations.headRepo]: 'acme/shop',
      [annotations.initStatus]: 'todo',
    });
    expect(deployment.metadata.finalizers).toEqual([CLEANUP_FINALIZER]);
    for (const mode of ['initialize', 'cleanup'] as const) {
      const [job] = await render(mode);
      expect(job?.metadata.labels?.[JOB_KIND_LABEL]).toBe(mode);
      expect(at(job, 'spec', 'template', 'metadata', 'labels', JOB_KIND_LABEL)).toBe(mode);
    }
  });

  it("give the init Job the build's commit as environment variables, and a token only as a Secret reference", async () => {
    const context = contextFor('initialize');
    const envOf = (job: Manifest | undefined) =>
      Object.fromEntries(
        (at(job, 'spec', 'template', 'spec', 'containers', 0, 'env') as { name: string }[]).map(
          (variable) => [variable.name, variable],
        ),
      );
    const [plain] = await render('initialize');
    expect(at(plain, 'spec', 'template', 'spec', 'containers', 0, 'command')).toEqual([
      'sh',
      '/runboat/init.sh',
    ]);
    expect(envOf(plain)).toMatchObject({
      RUNBOAT_GIT_REPO: { value: 'acme/shop' },
      RUNBOAT_GIT_SHA: { value: context.commit.sha },
      RUNBOAT_GIT_PR: { value: '42' },
      RUNBOAT_GIT_URL: { value: 'https://github.com/acme/shop.git' },
      RUNBOAT_FETCH: { value: 'auto' },
      RUNBOAT_INSTALL: { value: 'addons-path' },
      RUNBOAT_ADDONS: { value: 'sale,stock' },
    });
    expect(envOf(plain).RUNBOAT_GIT_TOKEN).toBeUndefined();
    const [withToken] = await renderKubefiles(defaultKubefilesDir, {
      ...context,
      source: { ...context.source, cloneToken: { secret: 'shop-clone', key: 'token' } },
    });
    expect(envOf(withToken).RUNBOAT_GIT_TOKEN).toEqual({
      name: 'RUNBOAT_GIT_TOKEN',
      valueFrom: { secretKeyRef: { name: 'shop-clone', key: 'token' } },
    });
  });

  it('ship the scripts unrendered in a ConfigMap the init Job and the Deployment mount', async () => {
    const manifests = await render('deployment');
    const scripts = manifests.find((m) => m.metadata.name.endsWith('-scripts'));
    for (const file of ['fetch.sh', 'init.sh', 'start.sh']) {
      expect((scripts?.data as Record<string, string>)[file]).toBe(
        await readFile(join(defaultKubefilesDir, 'scripts', file), 'utf8'),
      );
    }
    const [job] = await render('initialize');
    for (const pod of [
      at(find(manifests, 'Deployment'), 'spec', 'template', 'spec'),
      at(job, 'spec', 'template', 'spec'),
    ]) {
      expect(at(pod, 'volumes')).toContainEqual({
        name: 'scripts',
        configMap: { name: scripts?.metadata.name },
      });
    }
  });

  it('read files outside the kubefiles directory never', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'runboat-kubefiles-'));
    await writeFile(
      join(dir, 'deployment.yaml.njk'),
      "data: {{ fileContent('../../etc/passwd') | yaml }}\n",
    );
    await expect(renderKubefiles(dir, contextFor('deployment'))).rejects.toThrow(
      /outside the kubefiles directory/,
    );
  });

  it('annotate a branch build with an empty PR', async () => {
    const context = contextFor('deployment');
    const manifests = await renderKubefiles(defaultKubefilesDir, {
      ...context,
      commit: { ...context.commit, pr: null },
    });
    expect(find(manifests, 'Deployment').metadata.annotations?.[annotations.pr]).toBe('');
  });

  it('name the database after the build, whatever the env says', async () => {
    const manifests = await render('deployment', { env: { PGDATABASE: 'other', ADDONS: 'sale' } });
    expect(find(manifests, 'ConfigMap').data).toEqual({
      ADDONS: 'sale',
      PGDATABASE: contextFor('deployment').buildName,
    });
  });

  it('read the documented template variables', async () => {
    const templateVars = {
      storageSize: '5Gi',
      resources: { limits: { memory: '3Gi' } },
      initResources: { limits: { memory: '4Gi' } },
      mailImage: 'mailcatcher:1',
      ingressClassName: 'nginx',
      initDeadlineSeconds: 60,
      cleanupDeadlineSeconds: 30,
      initPodLabels: { team: 'shop' },
      initPodAnnotations: { 'example.com/note': 'hello' },
      cleanupPodLabels: { team: 'cleaners' },
    };
    const manifests = await render('deployment', { templateVars });
    const pod = at(find(manifests, 'Deployment'), 'spec', 'template', 'spec');
    expect(at(find(manifests, 'PersistentVolumeClaim'), 'spec', 'resources', 'requests')).toEqual({
      storage: '5Gi',
    });
    expect(at(pod, 'containers', 0, 'resources')).toEqual(templateVars.resources);
    expect(at(pod, 'containers', 1, 'image')).toBe('mailcatcher:1');
    for (const ingress of manifests.filter((m) => m.kind === 'Ingress')) {
      expect(at(ingress, 'spec', 'ingressClassName')).toBe('nginx');
    }
    const [init] = await render('initialize', { templateVars });
    expect(at(init, 'spec', 'activeDeadlineSeconds')).toBe(60);
    expect(at(init, 'spec', 'template', 'metadata', 'labels', 'team')).toBe('shop');
    expect(at(init, 'spec', 'template', 'metadata', 'annotations')).toEqual(
      templateVars.initPodAnnotations,
    );
    expect(at(init, 'spec', 'template', 'spec', 'containers', 0, 'resources')).toEqual(
      templateVars.initResources,
    );
    const [cleanup] = await render('cleanup', { templateVars });
    expect(at(cleanup, 'spec', 'activeDeadlineSeconds')).toBe(30);
    expect(at(cleanup, 'spec', 'template', 'metadata', 'labels', 'team')).toBe('cleaners');
  });
});

describe('hostile values', () => {
  const hostile = [
    'x: y',
    'a\nb: c',
    '"quoted"',
    "'single'",
    '{{ evil }}',
    '- item',
    '#comment',
    'feature/ünïcødé/日本',
    'x'.repeat(250),
    'a/b/c',
    '${VAR}',
    ']]}}',
    'key: [1, 2]\n---\nkind: Secret',
    'del\u007f c1\u0085\u0090 bom\ufeff',
  ];
  const plainVars = { initPodLabels: { team: 'plain' } };

  async function expectSameStructure(variation: Variation, plain: Variation) {
    for (const mode of renderedModes) {
      const expected = await render(mode, plain);
      const actual = await render(mode, variation);
      // The build name is a hash of the branch: compare names without it.
      const kindsAndNames = (manifests: Manifest[], context: KubefilesContext) =>
        manifests.map((m) => [m.kind, m.metadata.name.replace(context.buildName, '<build>')]);
      expect(kindsAndNames(actual, contextFor(mode, variation))).toEqual(
        kindsAndNames(expected, contextFor(mode, plain)),
      );
      actual.forEach((manifest, index) => {
        expect(keyPaths(manifest)).toEqual(keyPaths(expected[index]));
      });
    }
  }

  it.each(hostile)('as a branch name %j stay one value', async (branch) => {
    await expectSameStructure({ targetBranch: branch }, { targetBranch: '16.0' });
    const manifests = await render('deployment', { targetBranch: branch });
    const deployment = find(manifests, 'Deployment');
    expect(deployment.metadata.annotations?.[annotations.targetBranch]).toBe(branch);
    const hosts = manifests
      .filter((m) => m.kind === 'Ingress')
      .map((m) => at(m, 'spec', 'rules', 0, 'host'));
    expect(hosts).toHaveLength(2);
    for (const host of hosts) {
      expect(typeof host === 'string' && isDnsName(host), String(host)).toBe(true);
    }
  });

  it.each(hostile.slice(0, 5).concat(hostile.slice(-2)))(
    'as an env value or pod label %j stay one value',
    async (value) => {
      await expectSameStructure(
        { env: { ADDONS: value }, templateVars: { initPodLabels: { team: value } } },
        { env: { ADDONS: 'sale' }, templateVars: plainVars },
      );
      const manifests = await render('deployment', { env: { ADDONS: value } });
      expect(at(find(manifests, 'ConfigMap'), 'data', 'ADDONS')).toBe(value);
      const [init] = await render('initialize', {
        templateVars: { initPodLabels: { team: value } },
      });
      expect(at(init, 'spec', 'template', 'metadata', 'labels', 'team')).toBe(value);
    },
  );

  it('keep the mail host a DNS label when the slug is already 63 characters', async () => {
    const context = contextFor('deployment', { targetBranch: 'y'.repeat(100) });
    expect(context.buildSlug).toHaveLength(63);
    const mail = find(
      await render('deployment', { targetBranch: 'y'.repeat(100) }),
      'Ingress',
      `${context.buildName}-mail`,
    );
    const host = at(mail, 'spec', 'rules', 0, 'host') as string;
    expect(isDnsName(host)).toBe(true);
    expect(host).toMatch(/-pr42-0123456789ab-mail\.runboat\.example\.com$/);
  });
});

describe('checkManifests', () => {
  async function checkAfter(mode: KubefilesMode, mutate: (manifests: Manifest[]) => void) {
    const manifests = structuredClone(await render(mode));
    mutate(manifests);
    return () => checkManifests(manifests, contextFor(mode));
  }

  it('accepts what the default kubefiles render', async () => {
    for (const mode of renderedModes) {
      expect(await checkAfter(mode, () => {})).not.toThrow();
    }
  });

  it.each<[string, KubefilesMode, (manifests: Manifest[]) => void, string]>([
    [
      'a kind the mode does not allow',
      'deployment',
      (m) => m.push({ ...find(m, 'ConfigMap'), kind: 'ClusterRole' }),
      'kind ClusterRole is not allowed in mode deployment',
    ],
    [
      'a name not prefixed with the build name',
      'deployment',
      (m) => (find(m, 'Service').metadata.name = 'other-service'),
      'name must start with the build name',
    ],
    [
      'a missing build label',
      'deployment',
      (m) => delete find(m, 'Secret').metadata.labels?.[BUILD_LABEL],
      `(Secret ${contextFor('deployment').buildName}-secret-env): missing label ${BUILD_LABEL}=`,
    ],
    [
      'a pod template without the build label',
      'initialize',
      (m) => ((at(m[0], 'spec', 'template', 'metadata') as Manifest['metadata']).labels = {}),
      `pod template missing label ${BUILD_LABEL}=`,
    ],
    [
      'a Deployment with replicas',
      'deployment',
      (m) => ((find(m, 'Deployment').spec as { replicas: number }).replicas = 1),
      'the Deployment must have spec.replicas 0',
    ],
    [
      'a Deployment without the finalizer',
      'deployment',
      (m) => (find(m, 'Deployment').metadata.finalizers = []),
      `the Deployment must have the finalizer ${CLEANUP_FINALIZER}`,
    ],
    [
      'another namespace',
      'deployment',
      (m) => (find(m, 'Ingress').metadata.namespace = 'kube-system'),
      'namespace must be the build namespace runboat-builds',
    ],
    [
      'a second Job',
      'initialize',
      (m) => m.push(structuredClone(m[0] as Manifest)),
      `document 1 (Job ${contextFor('initialize').job?.name}): mode initialize must render exactly one Job`,
    ],
    [
      'a Job named otherwise',
      'cleanup',
      (m) => ((m[0] as Manifest).metadata.name += 'x'),
      'the Job must be named',
    ],
    [
      'no Deployment',
      'deployment',
      (m) =>
        m.splice(
          m.findIndex((doc) => doc.kind === 'Deployment'),
          1,
        ),
      'must render exactly one Deployment',
    ],
    ['a document that is no mapping', 'cleanup', (m) => m.unshift([] as never), 'document 0 (? ?)'],
  ])('rejects %s', async (_, mode, mutate, message) => {
    const check = await checkAfter(mode, mutate);
    expect(check).toThrow(KubefilesError);
    expect(check).toThrow(message);
  });
});

describe('renderKubefiles', () => {
  async function kubefilesDir(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'runboat-kubefiles-'));
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    return dir;
  }

  it('returns nothing for a start hook the directory does not have', async () => {
    const dir = await kubefilesDir({});
    expect(await renderKubefiles(dir, contextFor('start'))).toEqual([]);
  });

  it('fails on a missing initialize kubefile', async () => {
    const dir = await kubefilesDir({});
    const rendering = renderKubefiles(dir, contextFor('initialize'));
    await expect(rendering).rejects.toThrow(KubefilesError);
    await expect(rendering).rejects.toMatchObject({
      mode: 'initialize',
      file: join(dir, 'initialize.yaml.njk'),
    });
  });

  it('names the file when a template reads an undefined variable', async () => {
    const dir = await kubefilesDir({ 'stop.yaml.njk': 'kind: {{ nowhere | yaml }}\n' });
    const rendering = renderKubefiles(dir, contextFor('stop'));
    await expect(rendering).rejects.toThrow(KubefilesError);
    await expect(rendering).rejects.toThrow('stop.yaml.njk');
  });

  it('names the file when the output is not YAML', async () => {
    const dir = await kubefilesDir({ 'stop.yaml.njk': 'a: b: c\n' });
    await expect(renderKubefiles(dir, contextFor('stop'))).rejects.toThrow('stop.yaml.njk');
  });

  it('turns any text into a label value with the labelValue filter', async () => {
    const template = [
      'apiVersion: v1',
      'kind: ConfigMap',
      'metadata:',
      '  name: {{ (buildName ~ "-hook") | yaml }}',
      '  labels:',
      '    runboat/build: {{ buildName | yaml }}',
      '    branch: {{ commit.targetBranch | labelValue | yaml }}',
      '---',
    ].join('\n');
    const dir = await kubefilesDir({ 'start.yaml.njk': template });
    const label = async (targetBranch: string) => {
      const [hook] = await renderKubefiles(dir, contextFor('start', { targetBranch }));
      return hook?.metadata.labels?.branch;
    };
    expect(await label('feature/ünïcødé/日本')).toBe('feature-unic-de');
    expect(await label('-_.x.-_')).toBe('x');
    expect(await label('日本')).toBe('');
    expect(await label(`${'a'.repeat(62)}-b`)).toBe('a'.repeat(62));
  });
});
