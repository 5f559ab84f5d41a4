/**
 * `npm run image`: builds the image (`Dockerfile`) for real on this machine with podman, on a base
 * image assembled here, since no registry image can be pulled (docs/operations.md, "The image:
 * how it was built here"):
 *
 * 1. the base `localhost/runboat-node-base:<tag>`: `mmdebstrap` makes a minimal Debian of this
 *    machine's suite with `tini` and `ca-certificates`; this machine's Node (binary and npm) is
 *    copied in, since Debian's own `nodejs` is older than the project needs; a user `node` 1000:1000
 *    as in the official images; the tarball is imported with `podman import`. The tag is a hash of
 *    the recipe, the suite and the Node version, so a second run finds it and skips this step;
 * 2. the project image `localhost/runboat-temporal:latest`: `podman build --build-arg
 *    NODE_IMAGE=<the base>` (its layers are cached by podman too);
 * 3. its size.
 *
 * The podman flags that this kind of machine needs (a cgroup v1/v2 hybrid that crun rejects, no
 * CAP_SYS_RESOURCE to raise rlimits, no systemd) are found by {@link podmanSetup} and shared with
 * the image test. Missing Debian packages (podman, runc, mmdebstrap) are installed with apt-get.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommandFailedError, runCommand } from './run-command.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The repository of the locally assembled base images. */
export const BASE_REPOSITORY = 'localhost/runboat-node-base';
/** The project image that {@link buildImage} tags. */
export const IMAGE = 'localhost/runboat-temporal:latest';
/** Bumped whenever the base recipe below changes, so that the base is assembled anew. */
const BASE_RECIPE = 1;
/** Debian packages of the base besides `minbase` (Node comes from this machine). */
const BASE_PACKAGES = ['ca-certificates', 'tini', 'libstdc++6'];
/** Node's extra CA certificates of this machine (see {@link assembleBase}). */
const LOCAL_CAS = '/usr/local/share/ca-certificates';

/** Prints a progress line. */
export type Log = (line: string) => void;
const defaultLog: Log = (line) => console.log(`[image] ${line}`);

/** How podman is run on this machine. */
export interface PodmanSetup {
  /** Global flags, before the subcommand. */
  global: string[];
  /** Flags of `podman run` and `podman build` (resource limits). */
  container: string[];
}

/** Runs a command with its output on ours (long steps), or captured when `quiet`. */
async function run(file: string, args: string[], quiet: boolean, cwd = projectRoot): Promise<void> {
  if (quiet) {
    await runCommand(file, args, { cwd });
    return;
  }
  await new Promise<void>((resolveRun, reject) => {
    const child = spawn(file, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolveRun()
        : reject(new Error(`${file} ${args.slice(0, 3).join(' ')}… failed (exit ${code})`)),
    );
  });
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? '')
    .split(':')
    .some((dir) => dir !== '' && existsSync(join(dir, command)));
}

/** Installs the Debian packages of the commands that are missing (as root, with apt-get). */
export async function ensureHostPackages(log: Log = defaultLog): Promise<void> {
  const wanted: Record<string, string> = {
    podman: 'podman',
    runc: 'runc',
    mmdebstrap: 'mmdebstrap',
  };
  const missing = Object.entries(wanted)
    .filter(([command]) => !onPath(command))
    .map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0 || !onPath('apt-get')) {
    throw new Error(`missing ${missing.join(', ')}: install them (Debian: apt-get install)`);
  }
  log(`apt-get install ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  await runCommand('apt-get', ['update', '-qq'], { env });
  await runCommand('apt-get', ['install', '-y', '-qq', ...missing], { env });
}

/** A hard limit of this process (`/proc/self/limits`), or undefined when unlimited/unknown. */
function hardLimit(name: string): number | undefined {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(name));
  const value = Number(line?.slice(name.length).trim().split(/\s+/)[1]);
  return Number.isFinite(value) ? value : undefined;
}

let setup: Promise<PodmanSetup> | undefined;

/**
 * The podman flags for this machine, tried once with a container of the base image: the default
 * OCI runtime first, then runc (crun 1.8 refuses a cgroup v1/v2 hybrid). The rlimits podman sets by
 * default (nofile 1048576) need CAP_SYS_RESOURCE, which a container VM may lack: the container
 * gets this process's own open-files limit and 4096 processes instead.
 */
export function podmanSetup(baseImage: string, log: Log = defaultLog): Promise<PodmanSetup> {
  setup ??= (async () => {
    const global = existsSync('/run/systemd/system')
      ? []
      : ['--cgroup-manager=cgroupfs', '--events-backend=file'];
    const nofile = Math.min(hardLimit('Max open files') ?? 65536, 65536);
    const container = ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', 'nproc=4096:4096'];
    const errors: string[] = [];
    for (const runtime of [[], ['--runtime', 'runc']]) {
      const candidate = { global: [...global, ...runtime], container };
      try {
        await runCommand('podman', [
          ...candidate.global,
          'run',
          '--rm',
          ...container,
          baseImage,
          'true',
        ]);
        log(`podman runs containers with: ${[...candidate.global, ...container].join(' ')}`);
        return candidate;
      } catch (error) {
        errors.push(error instanceof CommandFailedError ? error.output.trim() : String(error));
      }
    }
    throw new Error(`podman cannot run a container here:\n${errors.join('\n')}`);
  })();
  return setup;
}

/** The base's tag: the Node version, the suite and a hash of everything that goes into it. */
export function baseTag(): string {
  const osRelease = readFileSync('/etc/os-release', 'utf8');
  const suite = /^VERSION_CODENAME=(.+)$/m.exec(osRelease)?.[1] ?? 'stable';
  const cas = existsSync(LOCAL_CAS)
    ? readdirSync(LOCAL_CAS)
        .sort()
        .map((name) => readFileSync(join(LOCAL_CAS, name), 'utf8'))
    : [];
  const hash = createHash('sha256')
    .update(JSON.stringify({ BASE_RECIPE, BASE_PACKAGES, suite, cas, node: process.version }))
    .digest('hex')
    .slice(0, 10);
  return `${process.version.slice(1)}-${suite}-${hash}`;
}

async function imageExists(ref: string): Promise<boolean> {
  try {
    await runCommand('podman', ['image', 'exists', ref]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Assembles the base image unless it exists and returns its reference. Node is this machine's
 * (`process.execPath` and the npm beside it). The machine's own CA certificates, if any, are
 * trusted in the base (and `NODE_EXTRA_CA_CERTS` points at the bundle) so that `npm ci` in the
 * build reaches the registry the way this machine does.
 */
export async function ensureBaseImage(
  options: { log?: Log; quiet?: boolean } = {},
): Promise<string> {
  const log = options.log ?? defaultLog;
  const ref = `${BASE_REPOSITORY}:${baseTag()}`;
  if (await imageExists(ref)) {
    log(`base ${ref}: already built`);
    return ref;
  }
  const suite = /^VERSION_CODENAME=(.+)$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1];
  if (!suite) throw new Error('/etc/os-release names no VERSION_CODENAME');
  const node = process.execPath;
  const npm = resolve(dirname(node), '..', 'lib', 'node_modules', 'npm');
  if (!existsSync(join(npm, 'bin', 'npm-cli.js'))) throw new Error(`no npm at ${npm}`);
  const work = await mkdtemp(join(tmpdir(), 'runboat-base-'));
  const tarball = join(work, 'rootfs.tar');
  const started = Date.now();
  try {
    log(
      `base ${ref}: mmdebstrap ${suite} (minbase + ${BASE_PACKAGES.join(', ')}), Node ${process.version} from ${node}`,
    );
    const sources = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'].filter(
      (file) => existsSync(file) && readFileSync(file, 'utf8').includes('debian'),
    );
    const hooks = [
      `cp ${node} "$1/usr/bin/node"`,
      `mkdir -p "$1/usr/lib/node_modules" && cp -a ${npm} "$1/usr/lib/node_modules/"`,
      'ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/bin/npm"',
      'ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/bin/npx"',
      // The user of the official Node images, so that `USER 1000:1000` has a name and a home.
      'echo "node:x:1000:1000::/home/node:/bin/sh" >> "$1/etc/passwd"',
      'echo "node:x:1000:" >> "$1/etc/group"',
      'mkdir -p "$1/home/node" && chown 1000:1000 "$1/home/node"',
      `if [ -d ${LOCAL_CAS} ]; then cp ${LOCAL_CAS}/*.crt "$1${LOCAL_CAS}/" 2>/dev/null; chroot "$1" update-ca-certificates >/dev/null; fi`,
      'chroot "$1" node --version',
    ];
    await run(
      'mmdebstrap',
      [
        '--variant=minbase',
        `--include=${BASE_PACKAGES.join(',')}`,
        '--aptopt=APT::Install-Recommends "false"',
        '--dpkgopt=path-exclude=/usr/share/doc/*',
        '--dpkgopt=path-exclude=/usr/share/man/*',
        '--dpkgopt=path-exclude=/usr/share/locale/*',
        ...hooks.map((hook) => `--customize-hook=${hook}`),
        suite,
        tarball,
        ...sources,
      ],
      options.quiet ?? false,
    );
    log(`base ${ref}: podman import`);
    await runCommand('podman', [
      'import',
      '--change',
      'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt',
      '--change',
      `ENV NODE_VERSION=${process.version.slice(1)}`,
      '--change',
      'CMD ["node"]',
      tarball,
      ref,
    ]);
    log(`base ${ref}: ${await imageSize(ref)} in ${Math.round((Date.now() - started) / 1000)}s`);
    return ref;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The size of an image as podman reports it, e.g. `229 MB`. */
export async function imageSize(ref: string): Promise<string> {
  const bytes = Number(
    (await runCommand('podman', ['image', 'inspect', '--format', '{{.Size}}', ref])).trim(),
  );
  return `${Math.round(bytes / 1e6)} MB`;
}

/** What {@link buildImage} built. */
export interface BuiltImage {
  image: string;
  base: string;
  size: string;
  setup: PodmanSetup;
  seconds: number;
}

/**
 * Builds the project image from the working tree on the local base. The build's containers use
 * the host's network (`npm ci` and `apt-get` reach their registries as this machine does).
 */
export async function buildImage(
  options: { log?: Log; quiet?: boolean } = {},
): Promise<BuiltImage> {
  const log = options.log ?? defaultLog;
  const started = Date.now();
  await ensureHostPackages(log);
  const base = await ensureBaseImage(options);
  const podman = await podmanSetup(base, log);
  log(`podman build -t ${IMAGE} --build-arg NODE_IMAGE=${base}`);
  await run(
    'podman',
    [
      ...podman.global,
      'build',
      '--network=host',
      ...podman.container,
      '--build-arg',
      `NODE_IMAGE=${base}`,
      '--tag',
      IMAGE,
      '--file',
      'Dockerfile',
      '.',
    ],
    options.quiet ?? false,
  );
  const seconds = Math.round((Date.now() - started) / 1000);
  const size = await imageSize(IMAGE);
  log(`${IMAGE}: ${size} (base ${await imageSize(base)}), built in ${seconds}s`);
  return { image: IMAGE, base, size, setup: podman, seconds };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  buildImage().catch((error: unknown) => {
    console.error(`[image] ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
