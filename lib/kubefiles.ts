/**
 * Kubefiles: a directory of nunjucks templates, one per mode, rendered into Kubernetes manifests.
 * Rendered output is parsed and checked against the contract of docs/kubefiles.md before anything is
 * applied, so that a broken or hostile template cannot touch objects of another build.
 */
import { readFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { join, relative, resolve, isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import nunjucks from 'nunjucks';
import YAML from 'yaml';
import {
  BUILD_LABEL,
  CLEANUP_FINALIZER,
  JOB_KIND_LABEL,
  type BuildSource,
  type JobKind,
  type ResolvedImageBuild,
} from '../domain/build.js';

/**
 * What a kubefile renders: the build's objects, its init, cleanup or image build Job, or a
 * start/stop hook.
 */
export type KubefilesMode = 'deployment' | 'initialize' | 'cleanup' | 'build' | 'start' | 'stop';

/** Everything a kubefile template can read. */
export interface KubefilesContext {
  namespace: string;
  mode: KubefilesMode;
  /** From `buildName()` of domain/names.ts. */
  buildName: string;
  /** Host label, from `buildSlug()` of domain/names.ts. */
  buildSlug: string;
  /** e.g. `runboat.example.com`. */
  buildDomain: string;
  commit: {
    repo: string;
    targetBranch: string;
    pr: number | null;
    sha: string;
    /** Pull requests: the repo of the head commit, when known. */
    headRepo: string | null;
    /** The commit's message, one line (`commitNote` of domain/build.ts); '' when unknown. */
    message?: string;
    /** The commit's author, one line; '' when unknown. */
    author?: string;
  };
  /** Where the build's commit is fetched from, what is installed, and whether it is trusted. */
  source: BuildSource;
  image: { name: string; tag: string };
  /** Non-secret env of the build. */
  env: Record<string, string>;
  /** Secret env of the build. */
  secretEnv: Record<string, string>;
  /** Free-form per-repo variables (see kubefiles/README.md). */
  templateVars: Record<string, unknown>;
  /**
   * The image the build Job builds and pushes (repo entries with `imageBuild`); then `image` is
   * that image. Null without one.
   */
  imageBuild?: ResolvedImageBuild | null;
  /**
   * Modes initialize/cleanup/build: the Job's name (`<build>-init-N`, `<build>-cleanup-N`,
   * `<build>-build-N`).
   */
  job?: { name: string };
}

/** A parsed Kubernetes manifest. */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** A kubefile is missing, does not render, does not parse, or breaks the contract. */
export class KubefilesError extends Error {
  constructor(
    message: string,
    readonly mode: KubefilesMode,
    readonly file?: string,
  ) {
    super(message);
    this.name = 'KubefilesError';
  }
}

/** Absolute path of the default kubefiles directory (kubefiles/default of this repo). */
export const defaultKubefilesDir: string = fileURLToPath(
  new URL('../kubefiles/default', import.meta.url),
);

const DNS_LABEL_MAX = 63;
const optionalModes: readonly KubefilesMode[] = ['start', 'stop'];
const allowedKinds: Record<KubefilesMode, readonly string[]> = {
  deployment: ['Deployment', 'Service', 'Ingress', 'ConfigMap', 'Secret', 'PersistentVolumeClaim'],
  initialize: ['Job'],
  cleanup: ['Job'],
  build: ['Job'],
  start: ['Job', 'ConfigMap'],
  stop: ['Job', 'ConfigMap'],
};
const podTemplateKinds: readonly string[] = ['Deployment', 'Job'];

/**
 * JSON is valid YAML flow text, and stays one scalar whatever the string holds. YAML 1.2 forbids a
 * few characters JSON leaves raw (DEL, C1 controls, U+FFFE/F): those are escaped too, so that the
 * rendered text is valid for any YAML parser, not only the tolerant one we use.
 */
function yamlFilter(value: unknown): string {
  const json = value === undefined ? undefined : JSON.stringify(value);
  if (json === undefined) throw new Error(`yaml filter: cannot emit ${String(value)}`);
  return json.replace(
    /[\u007f-\u0084\u0086-\u009f\ufffe\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Any text as a valid label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends. */
function labelValueFilter(value: unknown): string {
  if (value === undefined) throw new Error('labelValue filter: cannot emit undefined');
  return String(value)
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .slice(0, DNS_LABEL_MAX)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
}

/**
 * The text of a file of the kubefiles directory as it is, not rendered (scripts hold `{#` and
 * `{{`), e.g. `{{ fileContent('scripts/init.sh') | yaml }}`. Nothing outside the directory.
 */
function fileContent(dir: string, path: string): string {
  const file = resolve(dir, String(path));
  const inside = relative(dir, file);
  if (inside.startsWith('..') || isAbsolute(inside)) {
    throw new Error(`fileContent: ${path} is outside the kubefiles directory`);
  }
  return readFileSync(file, 'utf8');
}

const environments = new Map<string, nunjucks.Environment>();

/** One Environment per directory, so that its compiled templates are reused across renders. */
function environmentFor(dir: string): nunjucks.Environment {
  let env = environments.get(dir);
  if (!env) {
    env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dir, { noCache: false }), {
      autoescape: false,
      throwOnUndefined: true,
      trimBlocks: true,
      lstripBlocks: true,
    });
    env.addFilter('yaml', yamlFilter);
    env.addFilter('labelValue', labelValueFilter);
    env.addGlobal('fileContent', (path: string) => fileContent(dir, path));
    environments.set(dir, env);
  }
  return env;
}

/**
 * Renders `<dir>/<mode>.yaml.njk`, parses every YAML document, checks them, returns them. A missing
 * file for the optional modes start/stop returns []; for the other modes it is a KubefilesError.
 */
export async function renderKubefiles(dir: string, context: KubefilesContext): Promise<Manifest[]> {
  const { mode } = context;
  const absoluteDir = resolve(dir);
  const file = `${mode}.yaml.njk`;
  const path = join(absoluteDir, file);
  try {
    await access(path);
  } catch {
    if (optionalModes.includes(mode)) return [];
    throw new KubefilesError(`${path}: no such kubefile (mode ${mode})`, mode, path);
  }
  let text: string;
  try {
    text = environmentFor(absoluteDir).render(file, context);
  } catch (error) {
    throw new KubefilesError(`${path}: ${(error as Error).message}`, mode, path);
  }
  const documents: unknown[] = [];
  for (const doc of YAML.parseAllDocuments(text)) {
    const [parseError] = doc.errors;
    if (parseError) throw new KubefilesError(`${path}: ${parseError.message}`, mode, path);
    const value: unknown = doc.toJS();
    // Conditionals in a template easily leave an empty document behind a `---`, as kubectl allows.
    if (value !== null) documents.push(value);
  }
  return check(documents, context, path);
}

/**
 * The checks, exported for tests: every document is a mapping with apiVersion/kind/metadata.name;
 * its kind is allowed for the mode; its name is the build name or starts with it and a '-'; it and
 * its pod template carry the build label; its namespace, when present, is the build's. Mode
 * `deployment` has exactly one Deployment, named after the build, with replicas 0 and the cleanup
 * finalizer; initialize/cleanup/build have exactly one Job, named `context.job.name`, with the job-kind
 * label. Throws KubefilesError naming the document index, kind, name and the rule broken.
 */
export function checkManifests(manifests: unknown[], context: KubefilesContext): Manifest[] {
  return check(manifests, context);
}

function check(manifests: unknown[], context: KubefilesContext, file?: string): Manifest[] {
  const { mode, buildName } = context;
  const fail = (message: string): never => {
    throw new KubefilesError(file ? `${file}: ${message}` : message, mode, file);
  };
  const isJobMode = mode === 'initialize' || mode === 'cleanup' || mode === 'build';
  if (isJobMode && !context.job) fail(`mode ${mode} needs context.job`);
  let deployments = 0;
  let jobs = 0;

  manifests.forEach((doc, index) => {
    const metadata = isRecord(doc) ? doc.metadata : undefined;
    const kind = isRecord(doc) && typeof doc.kind === 'string' ? doc.kind : '';
    const name = isRecord(metadata) && typeof metadata.name === 'string' ? metadata.name : '';
    const broken = (rule: string): never =>
      fail(`document ${index} (${kind || '?'} ${name || '?'}): ${rule}`);

    if (!isRecord(doc)) return broken('a document must be a mapping');
    if (typeof doc.apiVersion !== 'string' || !doc.apiVersion) broken('apiVersion is required');
    if (!kind) broken('kind is required');
    if (!isRecord(metadata) || !name) return broken('metadata.name is required');
    if (!allowedKinds[mode].includes(kind)) {
      broken(`kind ${kind} is not allowed in mode ${mode} (${allowedKinds[mode].join(', ')})`);
    }
    if (name !== buildName && !name.startsWith(`${buildName}-`)) {
      broken(`name must start with the build name ${buildName}`);
    }
    if (metadata.namespace !== undefined && metadata.namespace !== context.namespace) {
      broken(`namespace must be the build namespace ${context.namespace}`);
    }
    if (labelOf(metadata, BUILD_LABEL) !== buildName) {
      broken(`missing label ${BUILD_LABEL}=${buildName}`);
    }
    const spec = isRecord(doc.spec) ? doc.spec : {};
    if (podTemplateKinds.includes(kind)) {
      const template = isRecord(spec.template) ? spec.template : {};
      if (labelOf(template.metadata, BUILD_LABEL) !== buildName) {
        broken(`pod template missing label ${BUILD_LABEL}=${buildName}`);
      }
    }
    if (mode === 'deployment' && kind === 'Deployment') {
      if (++deployments > 1) broken('mode deployment must render exactly one Deployment');
      if (name !== buildName) broken(`the Deployment must be named ${buildName}`);
      const finalizers = metadata.finalizers;
      if (!Array.isArray(finalizers) || !finalizers.includes(CLEANUP_FINALIZER)) {
        broken(`the Deployment must have the finalizer ${CLEANUP_FINALIZER}`);
      }
      // The workflow scales up only after the database is initialized.
      if (spec.replicas !== 0) broken('the Deployment must have spec.replicas 0');
    }
    if (isJobMode && kind === 'Job') {
      if (++jobs > 1) broken(`mode ${mode} must render exactly one Job`);
      if (name !== context.job?.name) broken(`the Job must be named ${context.job?.name}`);
      // The workflow finds and watches its Jobs by this label.
      if (labelOf(metadata, JOB_KIND_LABEL) !== (mode satisfies JobKind)) {
        broken(`missing label ${JOB_KIND_LABEL}=${mode}`);
      }
    }
  });

  if (mode === 'deployment' && deployments === 0) {
    fail(`mode deployment must render exactly one Deployment, named ${buildName}`);
  }
  if (isJobMode && jobs === 0) fail(`mode ${mode} must render exactly one Job`);
  return manifests as Manifest[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function labelOf(metadata: unknown, label: string): unknown {
  if (!isRecord(metadata) || !isRecord(metadata.labels)) return undefined;
  return metadata.labels[label];
}
