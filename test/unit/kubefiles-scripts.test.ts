/**
 * The scripts of the default kubefiles (kubefiles/default/scripts, kubefiles/README.md "Scripts of
 * default/") run for real, under /bin/sh, against a local git repository: a bare origin with several
 * commits on main, a branch and a pull request ref on no branch, reached by a file URL, over smart
 * HTTP (git http-backend behind a loopback server that wants the token) and as GitHub-like tarballs.
 * Stand-ins for odoo, createdb, dropdb and pip come first on the PATH and record each call; git,
 * curl and wget are wrapped to record their argv before running the real ones.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const scriptsDir = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'kubefiles',
  'default',
  'scripts',
);
const REPO = 'acme/shop';
const BUILD = 'bc3874cd391ada29';
const TOKEN = 'ghs_runboatScriptsTestToken4711';
const UNKNOWN_SHA = '0123456789abcdef0123456789abcdef01234567';
const TIMEOUT = 60_000;

/** One call of a stand-in or wrapped tool, as it recorded it. */
interface Call {
  name: string;
  env: Record<string, string>;
  argv: string[];
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  calls: Call[];
  /** The record file as text: every argv of every recorded tool. */
  record: string;
}

let root = '';
let systemPath = '';
let realGit = '';
let origin = '';
let server: Server | undefined;
let httpBase = '';
let closedPortUrl = '';
let caseCount = 0;
let recordCount = 0;
/** Commits of the origin, by name. */
const sha: Record<'c1' | 'c2' | 'c3' | 'c4' | 'p1' | 'p2', string> = {
  c1: '',
  c2: '',
  c3: '',
  c4: '',
  p1: '',
  p2: '',
};
/** Authorization headers the loopback server saw on git requests, and whether each was right. */
const gitAuth: boolean[] = [];

const short = (commit: string) => commit.slice(0, 12);
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function gitEnv(): NodeJS.ProcessEnv {
  return {
    PATH: systemPath,
    HOME: root,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: join(root, 'gitconfig'),
    GIT_AUTHOR_NAME: 'Runboat Test',
    GIT_AUTHOR_EMAIL: 'test@runboat.invalid',
    GIT_COMMITTER_NAME: 'Runboat Test',
    GIT_COMMITTER_EMAIL: 'test@runboat.invalid',
    GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z',
    GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z',
    LANG: 'C',
  };
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync(realGit, args, { cwd, env: gitEnv(), encoding: 'utf8' }).trim();
}

/** Writes (or, for null, deletes) files in the work tree and commits them all. */
function commit(work: string, message: string, files: Record<string, string | null>): string {
  for (const [path, content] of Object.entries(files)) {
    const file = join(work, path);
    if (content === null) {
      rmSync(file, { recursive: true });
    } else {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, content);
    }
  }
  git(work, 'add', '-A');
  git(work, 'commit', '-q', '-m', message);
  return git(work, 'rev-parse', 'HEAD');
}

const manifest = (name: string) =>
  `{"name": "${name}", "version": "16.0.1.0.0", "depends": ["base"]}\n`;

function writeScript(path: string, text: string): void {
  writeFileSync(path, text);
  chmodSync(path, 0o755);
}

/** Appends one line per call: name, env fields, "--", argv; tab-separated. */
const recordLine = [
  'record() {',
  '  { printf \'%s\' "$1"; shift',
  '    printf \'\\tPGDATABASE=%s\\tPYTHONPATH=%s\\t--\' "${PGDATABASE-}" "${PYTHONPATH-}"',
  '    for a in "$@"; do printf \'\\t%s\' "$a"; done',
  '    printf \'\\n\'; } >>"$RUNBOAT_TEST_RECORD"',
  '}',
].join('\n');

/** Stand-ins that behave like the real tools where it matters: a database must exist to be used. */
function writeStandIns(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const head = `#!/bin/sh\nset -eu\n${recordLine}\n`;
  writeScript(
    join(dir, 'dropdb'),
    `${head}record dropdb "$@"
if [ $# -ne 2 ] || [ "$1" != --if-exists ]; then echo "dropdb stand-in: unexpected $*" >&2; exit 2; fi
rm -f "$RUNBOAT_TEST_STATE/dbs/$2"
`,
  );
  writeScript(
    join(dir, 'createdb'),
    `${head}record createdb "$@"
if [ $# -ne 1 ]; then echo "createdb stand-in: unexpected $*" >&2; exit 2; fi
if [ -e "$RUNBOAT_TEST_STATE/dbs/$1" ]; then
  echo "createdb: error: database \\"$1\\" already exists" >&2; exit 1
fi
mkdir -p "$RUNBOAT_TEST_STATE/dbs"
: >"$RUNBOAT_TEST_STATE/dbs/$1"
`,
  );
  writeScript(
    join(dir, 'odoo'),
    `${head}record odoo "$@"
db= data= paths= init=
while [ $# -gt 0 ]; do
  case $1 in
    -d) db=$2; shift ;;
    --database=*) db=\${1#*=} ;;
    --data-dir=*) data=\${1#*=} ;;
    --addons-path=*) paths=\${1#*=} ;;
    --stop-after-init) init=1 ;;
  esac
  shift
done
if [ -z "$db" ] || [ ! -e "$RUNBOAT_TEST_STATE/dbs/$db" ]; then
  echo "odoo stand-in: database '$db' does not exist" >&2; exit 1
fi
old_ifs=$IFS; IFS=,
for p in $paths; do
  if [ ! -d "$p" ]; then echo "odoo stand-in: addons path $p is no directory" >&2; exit 1; fi
done
IFS=$old_ifs
if [ -n "\${RUNBOAT_TEST_ODOO_FAIL-}" ]; then echo "odoo stand-in: ImportError: no module named x" >&2; exit 1; fi
if [ -n "$init" ]; then mkdir -p "$data/filestore/$db"; : >"$data/filestore/$db/attachment"; fi
`,
  );
  writeScript(
    join(dir, 'pip'),
    `${head}record pip "$@"
if [ "\${1-}" != install ] || [ "\${2-}" != --target ] || [ -z "\${3-}" ]; then
  echo "pip stand-in: unexpected $*" >&2; exit 2
fi
target=$3; shift 3
while [ $# -gt 0 ]; do
  case $1 in
    -r) if [ ! -f "$2" ]; then echo "pip stand-in: no file $2" >&2; exit 1; fi; shift ;;
    -*) ;;
    *) if [ ! -d "$1" ]; then echo "pip stand-in: no package at $1" >&2; exit 1; fi ;;
  esac
  shift
done
mkdir -p "$target"
: >"$target/installed-by-pip"
`,
  );
}

/** Wrappers that record their argv, then run the real tool. */
function writeWrappers(dir: string, tools: string[]): void {
  mkdirSync(dir, { recursive: true });
  for (const tool of tools) {
    const real = execFileSync('sh', ['-c', `command -v ${tool}`], {
      env: { PATH: systemPath },
      encoding: 'utf8',
    }).trim();
    writeScript(
      join(dir, tool),
      `#!/bin/sh\nset -eu\n${recordLine}\nrecord ${tool} "$@"\nexec ${real} "$@"\n`,
    );
  }
}

/** A directory holding only the tools named, linked to the system's. */
function writeMinimalBin(dir: string, tools: string[]): void {
  mkdirSync(dir, { recursive: true });
  for (const tool of tools) {
    const real = execFileSync('sh', ['-c', `command -v ${tool}`], {
      env: { PATH: systemPath },
      encoding: 'utf8',
    }).trim();
    symlinkSync(real, join(dir, tool));
  }
}

function parseCalls(record: string): Call[] {
  return record
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const fields = line.split('\t');
      const separator = fields.indexOf('--');
      const env: Record<string, string> = {};
      for (const field of fields.slice(1, separator)) {
        const at = field.indexOf('=');
        env[field.slice(0, at)] = field.slice(at + 1);
      }
      return { name: fields[0] ?? '', env, argv: fields.slice(separator + 1) };
    });
}

interface RunOptions {
  /** The build's volume; a fresh one when not given. */
  data?: string;
  /** PATH instead of stand-ins, wrappers and the system's. */
  path?: string;
  args?: string[];
}

/** A fresh directory for one run's volume. */
function freshData(): string {
  caseCount += 1;
  const dir = join(root, 'cases', String(caseCount));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Runs one of the scripts under /bin/sh with the given environment on top of the test's. */
async function run(
  script: 'init.sh' | 'start.sh' | 'fetch.sh',
  env: Record<string, string | undefined>,
  options: RunOptions = {},
): Promise<Result> {
  const data = options.data ?? freshData();
  recordCount += 1;
  const recordFile = join(root, 'records', `${recordCount}.record`);
  writeFileSync(recordFile, '');
  const childEnv: NodeJS.ProcessEnv = {
    ...gitEnv(),
    PATH: options.path ?? `${join(root, 'standins')}:${join(root, 'wrappers')}:${systemPath}`,
    TMPDIR: join(root, 'tmp'),
    RUNBOAT_TEST_RECORD: recordFile,
    RUNBOAT_TEST_STATE: join(data, 'state'),
    PGDATABASE: BUILD,
    RUNBOAT_DATA_DIR: join(data, 'volume'),
    RUNBOAT_GIT_REPO: REPO,
    RUNBOAT_GIT_URL: pathToFileURL(origin).href,
  };
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete childEnv[key];
    else childEnv[key] = value;
  }
  const child = spawn('/bin/sh', [join(scriptsDir, script), ...(options.args ?? [])], {
    env: childEnv,
    cwd: data,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((done) => child.on('close', done));
  const record = readFileSync(recordFile, 'utf8');
  return { code, stdout, stderr, calls: parseCalls(record), record };
}

const volume = (data: string) => join(data, 'volume');
const names = (result: Result) => result.calls.map((call) => call.name);
const callsOf = (result: Result, name: string) => result.calls.filter((c) => c.name === name);

/** The argv of the one odoo call; fails the test when there is not exactly one. */
function odooCall(result: Result): Call {
  const calls = callsOf(result, 'odoo');
  expect(calls).toHaveLength(1);
  return calls[0] as Call;
}

/** The value of `-i` in an argv. */
const installed = (call: Call) => call.argv[call.argv.indexOf('-i') + 1];
const addonsPathOf = (call: Call) =>
  call.argv.find((arg) => arg.startsWith('--addons-path='))?.slice('--addons-path='.length);

/**
 * A failure of the scripts is one "runboat: error:" line on stderr, the last line of the log: the
 * line the orchestrator shows as the build's failure reason (activities/jobs.ts).
 */
function failureLine(result: Result): string {
  expect(result.code, result.stdout + result.stderr).not.toBe(0);
  const lines = result.stderr.trim().split('\n');
  expect(lines.filter((line) => line.startsWith('runboat: error: '))).toHaveLength(1);
  return lines[lines.length - 1] ?? '';
}

function expectSuccess(result: Result): void {
  expect(result.code, result.stdout + result.stderr).toBe(0);
}

function expectNoToken(result: Result): void {
  expect(result.stdout).not.toContain(TOKEN);
  expect(result.stderr).not.toContain(TOKEN);
  expect(result.record).not.toContain(TOKEN);
  const basic = Buffer.from(`x-access-token:${TOKEN}`).toString('base64');
  expect(result.record).not.toContain(basic);
}

const read = (path: string) => readFileSync(path, 'utf8');

/** Serves git's smart HTTP (git http-backend as a CGI) to clients sending the token. */
function serveGit(req: IncomingMessage, res: ServerResponse, url: URL): void {
  const expected = `Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`;
  gitAuth.push(req.headers.authorization === expected);
  if (req.headers.authorization !== expected) {
    res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="runboat test"' }).end();
    return;
  }
  const backend = spawn(realGit, ['http-backend'], {
    env: {
      ...gitEnv(),
      GIT_PROJECT_ROOT: join(root, 'origin'),
      GIT_HTTP_EXPORT_ALL: '1',
      PATH_INFO: url.pathname,
      QUERY_STRING: url.search.slice(1),
      REQUEST_METHOD: req.method ?? 'GET',
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
      HTTP_GIT_PROTOCOL: req.headers['git-protocol']?.toString() ?? '',
      REMOTE_USER: 'x-access-token',
      REMOTE_ADDR: '127.0.0.1',
    },
  });
  req.pipe(backend.stdin);
  const chunks: Buffer[] = [];
  backend.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  backend.on('close', () => {
    const output = Buffer.concat(chunks);
    const end = output.indexOf('\r\n\r\n');
    const headers: Record<string, string> = {};
    let status = 200;
    for (const line of output.subarray(0, end).toString().split('\r\n')) {
      const at = line.indexOf(':');
      const name = line.slice(0, at).trim();
      const value = line.slice(at + 1).trim();
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
      else headers[name] = value;
    }
    res.writeHead(status, headers).end(output.subarray(end + 4));
  });
}

/** GitHub's tarball endpoint: the archive of a sha, to a client sending the token. */
function serveTarball(req: IncomingMessage, res: ServerResponse, commit: string): void {
  if (req.headers.authorization !== `Bearer ${TOKEN}`) {
    res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"message":"Bad creds"}');
    return;
  }
  try {
    execFileSync(realGit, ['cat-file', '-e', `${commit}^{commit}`], {
      cwd: origin,
      env: gitEnv(),
      stdio: 'ignore',
    });
  } catch {
    res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"message":"Not Found"}');
    return;
  }
  const archive = execFileSync(
    realGit,
    ['archive', '--format=tar.gz', `--prefix=acme-shop-${commit.slice(0, 7)}/`, commit],
    { cwd: origin, env: gitEnv() },
  );
  res.writeHead(200, { 'Content-Type': 'application/x-gzip' }).end(archive);
}

beforeAll(async () => {
  root = realpathSync(mkdtempSync(join(tmpdir(), 'kubefiles-scripts-')));
  systemPath = process.env.PATH ?? '/usr/bin:/bin';
  realGit = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();
  mkdirSync(join(root, 'tmp'));
  mkdirSync(join(root, 'records'));
  writeFileSync(join(root, 'gitconfig'), '');
  writeFileSync(join(root, 'gitconfig-v0'), '[protocol]\n\tversion = 0\n');

  // main: c1 → c2 → c4; the branch feature: c2 → c3; refs/pull/7/head: c2 → p1 → p2, on no branch.
  const work = join(root, 'work');
  git(root, 'init', '-q', '-b', 'main', work);
  sha.c1 = commit(work, 'Two addons', {
    'README.md': '# shop\n',
    VERSION: '1\n',
    'shop_base/__manifest__.py': manifest('Shop Base'),
    'shop_base/__init__.py': '',
    'shop_sale/__manifest__.py': manifest('Shop Sale'),
    'shop_sale/__init__.py': '',
  });
  mkdirSync(join(work, 'setup', 'shop_stock', 'odoo', 'addons'), { recursive: true });
  // As in OCA repositories: setup/<addon>/odoo/addons/<addon> links back to the addon.
  symlinkSync('../../../../shop_stock', join(work, 'setup/shop_stock/odoo/addons/shop_stock'));
  sha.c2 = commit(work, 'A third addon, Python requirements and packages', {
    VERSION: '2\n',
    'requirements.txt': 'requests\n',
    'shop_stock/__manifest__.py': manifest('Shop Stock'),
    'shop_stock/__init__.py': '',
    'setup/shop_stock/setup.py': 'import setuptools\nsetuptools.setup()\n',
    'shop_sale/pyproject.toml': '[build-system]\nrequires = ["whool"]\n',
  });
  git(work, 'checkout', '-q', '-b', 'feature');
  sha.c3 = commit(work, 'An addon under addons/', {
    'feature.txt': 'feature\n',
    'addons/shop_extra/__manifest__.py': manifest('Shop Extra'),
    'addons/shop_extra/__init__.py': '',
  });
  git(work, 'checkout', '-q', 'main');
  sha.c4 = commit(work, 'Later on main', { VERSION: '3\n', 'later.txt': 'later\n' });
  git(work, 'checkout', '-q', '-b', 'pr', sha.c2);
  sha.p1 = commit(work, 'Pull request, first push', { 'pr.txt': 'one\n' });
  sha.p2 = commit(work, 'Pull request, second push', { 'pr.txt': 'two\n' });
  git(work, 'checkout', '-q', 'main');

  origin = join(root, 'origin', 'acme', 'shop.git');
  git(root, 'init', '-q', '--bare', origin);
  git(work, 'push', '-q', origin, 'main', 'feature', `${sha.p2}:refs/pull/7/head`);
  git(work, 'branch', '-q', '-D', 'pr');

  writeStandIns(join(root, 'standins'));
  writeWrappers(join(root, 'wrappers'), ['git', 'curl', 'wget']);
  // No git, no curl: the auto method must take the tarball, with wget.
  writeMinimalBin(join(root, 'minimal'), [
    'base64',
    'cat',
    'cp',
    'cut',
    'dirname',
    'grep',
    'gzip',
    'head',
    'mkdir',
    'mktemp',
    'paste',
    'rm',
    'sed',
    'sh',
    'sort',
    'tar',
    'tr',
  ]);
  writeWrappers(join(root, 'minimal'), ['wget']);

  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const tarball = /^\/repos\/acme\/shop\/tarball\/([0-9a-f]{40})$/.exec(url.pathname);
    if (tarball?.[1]) serveTarball(req, res, tarball[1]);
    else if (url.pathname.startsWith('/acme/shop.git/')) serveGit(req, res, url);
    else res.writeHead(404).end();
  });
  await new Promise<void>((done) => server?.listen(0, '127.0.0.1', done));
  httpBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const closed = createServer();
  await new Promise<void>((done) => closed.listen(0, '127.0.0.1', done));
  closedPortUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/acme/shop.git`;
  await new Promise<void>((done) => closed.close(() => done()));
}, TIMEOUT);

afterAll(async () => {
  await new Promise<void>((done) => (server ? server.close(() => done()) : done()));
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('init.sh fetching with git', () => {
  it(
    'checks out an older commit of main: its files, none of later commits, its addons installed',
    async () => {
      const data = freshData();
      const result = await run('init.sh', { RUNBOAT_GIT_SHA: sha.c1 }, { data });
      expectSuccess(result);
      const src = join(volume(data), 'src');
      expect(read(join(src, '.runboat-commit'))).toBe(`${sha.c1}\n`);
      expect(read(join(src, 'VERSION'))).toBe('1\n');
      expect(existsSync(join(src, 'shop_stock'))).toBe(false);
      expect(existsSync(join(src, 'later.txt'))).toBe(false);
      expect(existsSync(join(src, 'requirements.txt'))).toBe(false);
      expect(result.stdout).toContain(`runboat: fetched acme/shop at ${short(sha.c1)} (git)\n`);
      expect(result.stdout).toContain('runboat: installing shop_base,shop_sale\n');
      // The database is dropped, created, then the addons of the checkout installed in it.
      expect(names(result).filter((name) => name !== 'git')).toEqual([
        'dropdb',
        'createdb',
        'odoo',
      ]);
      expect(callsOf(result, 'dropdb')[0]?.argv).toEqual(['--if-exists', BUILD]);
      expect(callsOf(result, 'createdb')[0]?.argv).toEqual([BUILD]);
      const odoo = odooCall(result);
      expect(odoo.argv).toEqual([
        `--data-dir=${volume(data)}`,
        `--addons-path=${src}`,
        '-d',
        BUILD,
        '-i',
        'shop_base,shop_sale',
        '--stop-after-init',
        '--without-demo=False',
      ]);
      expect(odoo.env.PYTHONPATH).toBe(join(volume(data), 'python'));
      expect(read(join(volume(data), 'runboat', 'addons-path'))).toBe(`${src}\n`);
      expect(read(join(volume(data), 'runboat', 'pythonpath'))).toBe(
        `${join(volume(data), 'python')}\n`,
      );
      // The fetch asked the origin for exactly the sha, shallow.
      expect(callsOf(result, 'git').map((call) => call.argv)).toContainEqual([
        'fetch',
        '-q',
        '--no-tags',
        '--depth',
        '1',
        'origin',
        sha.c1,
      ]);
    },
    TIMEOUT,
  );

  it(
    'checks out the head of a branch: addons/ joins the addons path, requirements.txt is installed',
    async () => {
      const data = freshData();
      const result = await run(
        'init.sh',
        { RUNBOAT_GIT_SHA: sha.c3, RUNBOAT_ODOO_ARGS: ' --log-level=warn  --workers=0' },
        { data },
      );
      expectSuccess(result);
      const src = join(volume(data), 'src');
      expect(read(join(src, '.runboat-commit'))).toBe(`${sha.c3}\n`);
      expect(read(join(src, 'feature.txt'))).toBe('feature\n');
      expect(existsSync(join(src, 'later.txt'))).toBe(false);
      const odoo = odooCall(result);
      expect(addonsPathOf(odoo)).toBe(`${src},${src}/addons`);
      expect(installed(odoo)).toBe('shop_base,shop_extra,shop_sale,shop_stock');
      expect(odoo.argv.slice(-2)).toEqual(['--log-level=warn', '--workers=0']);
      expect(callsOf(result, 'pip').map((call) => call.argv)).toEqual([
        ['install', '--target', join(volume(data), 'python'), '-r', join(src, 'requirements.txt')],
      ]);
      expect(existsSync(join(volume(data), 'python', 'installed-by-pip'))).toBe(true);
      // pip ran before the database was created.
      expect(names(result).filter((name) => name !== 'git')).toEqual([
        'dropdb',
        'pip',
        'createdb',
        'odoo',
      ]);
    },
    TIMEOUT,
  );

  it(
    'checks out the commit of a pull request ref that is on no branch',
    async () => {
      const data = freshData();
      const result = await run(
        'init.sh',
        { RUNBOAT_GIT_SHA: sha.p2, RUNBOAT_GIT_PR: '7' },
        { data },
      );
      expectSuccess(result);
      const src = join(volume(data), 'src');
      expect(read(join(src, '.runboat-commit'))).toBe(`${sha.p2}\n`);
      expect(read(join(src, 'pr.txt'))).toBe('two\n');
      expect(result.stdout).toContain(`runboat: fetched acme/shop at ${short(sha.p2)} (git)\n`);
      expect(git(src, 'rev-parse', 'HEAD')).toBe(sha.p2);
    },
    TIMEOUT,
  );

  it(
    'falls back to refs/pull/7/head, deepened, when the server refuses an unadvertised sha',
    async () => {
      // Protocol v0: the server takes only advertised tips; p1 is the parent of the PR's tip.
      const data = freshData();
      const result = await run(
        'init.sh',
        {
          RUNBOAT_GIT_SHA: sha.p1,
          RUNBOAT_GIT_PR: '7',
          GIT_CONFIG_GLOBAL: join(root, 'gitconfig-v0'),
        },
        { data },
      );
      expectSuccess(result);
      const src = join(volume(data), 'src');
      expect(read(join(src, '.runboat-commit'))).toBe(`${sha.p1}\n`);
      expect(read(join(src, 'pr.txt'))).toBe('one\n');
      expect(result.stdout).toContain(
        `runboat: the server refused ${short(sha.p1)} by its sha; fetching refs/pull/7/head\n`,
      );
      expect(result.stdout).toContain(
        `runboat: fetched acme/shop at ${short(sha.p1)} (git, via refs/pull/7/head)\n`,
      );
      const fetches = callsOf(result, 'git')
        .map((call) => call.argv)
        .filter((argv) => argv[0] === 'fetch');
      expect(fetches).toEqual([
        ['fetch', '-q', '--no-tags', '--depth', '1', 'origin', sha.p1],
        [
          'fetch',
          '-q',
          '--no-tags',
          '--depth',
          '1',
          'origin',
          '+refs/pull/7/head:refs/runboat/fetched',
        ],
        [
          'fetch',
          '-q',
          '--no-tags',
          '--deepen=10',
          'origin',
          '+refs/pull/7/head:refs/runboat/fetched',
        ],
      ]);
    },
    TIMEOUT,
  );

  it(
    'falls back to the branch (RUNBOAT_GIT_BRANCH) when the server refuses an older commit of main',
    async () => {
      const result = await run('init.sh', {
        RUNBOAT_GIT_SHA: sha.c1,
        RUNBOAT_GIT_BRANCH: 'main',
        GIT_CONFIG_GLOBAL: join(root, 'gitconfig-v0'),
      });
      expectSuccess(result);
      expect(result.stdout).toContain(
        `runboat: fetched acme/shop at ${short(sha.c1)} (git, via refs/heads/main)\n`,
      );
    },
    TIMEOUT,
  );

  it(
    'an unknown sha exits 1 with "runboat: commit … not found", before creating any database',
    async () => {
      const result = await run('init.sh', { RUNBOAT_GIT_SHA: UNKNOWN_SHA });
      expect(failureLine(result)).toBe(
        `runboat: error: commit ${UNKNOWN_SHA} not found in acme/shop (branch deleted or force-pushed?)`,
      );
      expect(result.code).toBe(1);
      expect(names(result).filter((name) => name !== 'git')).toEqual(['dropdb']);
    },
    TIMEOUT,
  );

  it(
    'a commit on neither the server (refusing shas) nor the pull request ref: not found',
    async () => {
      const result = await run('init.sh', {
        RUNBOAT_GIT_SHA: UNKNOWN_SHA,
        RUNBOAT_GIT_PR: '7',
        GIT_CONFIG_GLOBAL: join(root, 'gitconfig-v0'),
      });
      expect(failureLine(result)).toBe(
        `runboat: error: commit ${UNKNOWN_SHA} not found in acme/shop ` +
          '(not on refs/pull/7/head either: force-pushed since the build was asked for?)',
      );
      // It deepened the ref until it held the ref's whole history (4 commits), then gave up.
      const fetches = callsOf(result, 'git')
        .map((call) => call.argv)
        .filter((argv) => argv[0] === 'fetch');
      expect(fetches.map((argv) => argv.slice(3, -2))).toEqual([
        ['--depth', '1'],
        ['--depth', '1'],
        ['--deepen=10'],
      ]);
    },
    TIMEOUT,
  );

  it(
    'an unreachable repository exits 1 with "runboat: cannot reach" and git\'s reason',
    async () => {
      const missing = join(root, 'origin', 'acme', 'missing.git');
      const noPath = await run('init.sh', {
        RUNBOAT_GIT_SHA: sha.c1,
        RUNBOAT_GIT_URL: pathToFileURL(missing).href,
      });
      expect(failureLine(noPath)).toBe(
        `runboat: error: cannot reach ${pathToFileURL(missing).href}: fatal: '${missing}' does not appear to be a git repository`,
      );
      const closedPort = await run('init.sh', {
        RUNBOAT_GIT_SHA: sha.c1,
        RUNBOAT_GIT_PR: '7',
        RUNBOAT_GIT_URL: closedPortUrl,
      });
      const line = failureLine(closedPort);
      expect(line).toMatch(
        new RegExp(
          `^${escape(`runboat: error: cannot reach ${closedPortUrl}: fatal: unable to access '${closedPortUrl}/': `)}.*[Cc]onnect`,
        ),
      );
      expect(names(closedPort).filter((name) => name !== 'git')).toEqual(['dropdb']);
    },
    TIMEOUT,
  );

  it(
    'a private repository over HTTP: the token reaches git as a header only, never argv or the log',
    async () => {
      const data = freshData();
      const url = `${httpBase}/acme/shop.git`;
      gitAuth.length = 0;
      const result = await run(
        'init.sh',
        { RUNBOAT_GIT_SHA: sha.c3, RUNBOAT_GIT_URL: url, RUNBOAT_GIT_TOKEN: TOKEN },
        { data },
      );
      expectSuccess(result);
      expect(read(join(volume(data), 'src', '.runboat-commit'))).toBe(`${sha.c3}\n`);
      expect(gitAuth.length).toBeGreaterThan(0);
      expect(gitAuth.every((right) => right)).toBe(true);
      expectNoToken(result);
      // Nothing of the token is kept in the checkout's git config either.
      expect(read(join(volume(data), 'src', '.git', 'config'))).not.toContain('Authorization');

      const without = await run('init.sh', { RUNBOAT_GIT_SHA: sha.c3, RUNBOAT_GIT_URL: url });
      expect(failureLine(without)).toBe(
        `runboat: error: cannot reach ${url}: fatal: could not read Username for '${httpBase}': terminal prompts disabled`,
      );

      // A token written into the URL itself is taken out of what is printed.
      const inUrl = await run('init.sh', {
        RUNBOAT_GIT_SHA: sha.c3,
        RUNBOAT_GIT_URL: closedPortUrl.replace('://', `://x-access-token:${TOKEN}@`),
        RUNBOAT_GIT_TOKEN: TOKEN,
      });
      expect(failureLine(inUrl)).toMatch(
        new RegExp(`^${escape(`runboat: error: cannot reach ${closedPortUrl}: `)}`),
      );
      expect(inUrl.stdout + inUrl.stderr).not.toContain(TOKEN);
    },
    TIMEOUT,
  );
});

describe('init.sh choosing and installing addons', () => {
  it(
    'installs exactly the addons RUNBOAT_ADDONS names; the legacy ADDONS when it is unset',
    async () => {
      const named = await run('init.sh', {
        RUNBOAT_GIT_SHA: sha.c2,
        RUNBOAT_ADDONS: ' shop_stock , shop_sale',
        ADDONS: 'sale',
      });
      expectSuccess(named);
      expect(installed(odooCall(named))).toBe('shop_stock,shop_sale');
      expect(named.stdout).toContain('runboat: installing shop_stock,shop_sale\n');

      const legacy = await run('init.sh', { RUNBOAT_GIT_SHA: sha.c2, ADDONS: 'sale,stock' });
      expectSuccess(legacy);
      expect(installed(odooCall(legacy))).toBe('sale,stock');

      const every = await run('init.sh', { RUNBOAT_GIT_SHA: sha.c2, RUNBOAT_ADDONS: '' });
      expectSuccess(every);
      expect(installed(odooCall(every))).toBe('shop_base,shop_sale,shop_stock');
    },
    TIMEOUT,
  );

  it(
    'refuses an addon the checkout does not have, before creating the database',
    async () => {
      const result = await run('init.sh', {
        RUNBOAT_GIT_SHA: sha.c1,
        RUNBOAT_ADDONS: 'shop_sale,shop_stock',
      });
      expect(failureLine(result)).toBe(
        `runboat: error: addon shop_stock is not in acme/shop at ${short(sha.c1)} (found: shop_base,shop_sale)`,
      );
      expect(callsOf(result, 'createdb')).toEqual([]);
      expect(callsOf(result, 'odoo')).toEqual([]);
    },
    TIMEOUT,
  );

  it(
    'RUNBOAT_INSTALL=none runs no pip; =pip installs the requirements, then every package at once',
    async () => {
      const none = await run('init.sh', { RUNBOAT_GIT_SHA: sha.c2, RUNBOAT_INSTALL: 'none' });
      expectSuccess(none);
      expect(callsOf(none, 'pip')).toEqual([]);
      expect(installed(odooCall(none))).toBe('shop_base,shop_sale,shop_stock');

      const data = freshData();
      const pip = await run(
        'init.sh',
        { RUNBOAT_GIT_SHA: sha.c2, RUNBOAT_INSTALL: 'pip', RUNBOAT_PIP_ARGS: '--no-deps' },
        { data },
      );
      expectSuccess(pip);
      const src = join(volume(data), 'src');
      const target = join(volume(data), 'python');
      expect(callsOf(pip, 'pip').map((call) => call.argv)).toEqual([
        ['install', '--target', target, '--no-deps', '-r', join(src, 'requirements.txt')],
        [
          'install',
          '--target',
          target,
          '--no-deps',
          join(src, 'shop_sale'),
          join(src, 'setup/shop_stock'),
        ],
      ]);
      // The OCA setup/ tree holds a link to the addon but is not an addons directory.
      expect(addonsPathOf(odooCall(pip))).toBe(src);
    },
    TIMEOUT,
  );

  it(
    'an odoo that fails fails the init with one runboat: error: line after its own output',
    async () => {
      const result = await run('init.sh', {
        RUNBOAT_GIT_SHA: sha.c1,
        RUNBOAT_TEST_ODOO_FAIL: '1',
      });
      expect(result.stderr).toContain('odoo stand-in: ImportError: no module named x\n');
      expect(failureLine(result)).toBe(
        `runboat: error: odoo could not install shop_base,shop_sale of acme/shop at ${short(sha.c1)} (see above)`,
      );
    },
    TIMEOUT,
  );

  it(
    'a re-run for another sha starts clean: checkout, Python packages, filestore and database',
    async () => {
      const data = freshData();
      const first = await run('init.sh', { RUNBOAT_GIT_SHA: sha.c3 }, { data });
      expectSuccess(first);
      const src = join(volume(data), 'src');
      const filestore = join(volume(data), 'filestore', BUILD);
      expect(existsSync(join(filestore, 'attachment'))).toBe(true);
      expect(existsSync(join(volume(data), 'python', 'installed-by-pip'))).toBe(true);

      const second = await run('init.sh', { RUNBOAT_GIT_SHA: sha.c1 }, { data });
      expectSuccess(second);
      expect(read(join(src, '.runboat-commit'))).toBe(`${sha.c1}\n`);
      expect(existsSync(join(src, 'feature.txt'))).toBe(false);
      expect(existsSync(join(src, 'addons'))).toBe(false);
      expect(existsSync(join(src, 'requirements.txt'))).toBe(false);
      // c1 has no requirements: nothing of the first run's packages is left.
      expect(existsSync(join(volume(data), 'python', 'installed-by-pip'))).toBe(false);
      // Dropped first (createdb would have refused an existing database), then recreated.
      expect(names(second).filter((name) => name !== 'git')).toEqual([
        'dropdb',
        'createdb',
        'odoo',
      ]);
      expect(addonsPathOf(odooCall(second))).toBe(src);
      expect(installed(odooCall(second))).toBe('shop_base,shop_sale');
      expect(existsSync(filestore)).toBe(true);
      expect(second.stdout).toContain(
        `runboat: initialized ${BUILD} with acme/shop at ${short(sha.c1)}`,
      );
    },
    TIMEOUT,
  );

  it(
    'the filestore of the previous run is removed before the new checkout',
    async () => {
      const data = freshData();
      const filestore = join(volume(data), 'filestore', BUILD);
      mkdirSync(filestore, { recursive: true });
      writeFileSync(join(filestore, 'stale'), 'from a previous commit');
      const result = await run('init.sh', { RUNBOAT_GIT_SHA: UNKNOWN_SHA }, { data });
      expect(failureLine(result)).toMatch(/^runboat: error: commit .* not found/);
      expect(existsSync(join(filestore, 'stale'))).toBe(false);
      expect(existsSync(join(volume(data), 'runboat', 'addons-path'))).toBe(false);
    },
    TIMEOUT,
  );
});

describe('fetch.sh with tarballs', () => {
  const tarballUrl = (commit: string) => `${httpBase}/repos/acme/shop/tarball/${commit}`;

  it(
    'downloads the tarball of the sha with the token (curl), never showing the token',
    async () => {
      const data = freshData();
      const dest = join(data, 'src');
      const result = await run(
        'fetch.sh',
        {
          RUNBOAT_GIT_SHA: sha.c2,
          RUNBOAT_FETCH: 'tarball',
          RUNBOAT_TARBALL_URL: tarballUrl(sha.c2),
          RUNBOAT_GIT_TOKEN: TOKEN,
        },
        { data, args: [dest] },
      );
      expectSuccess(result);
      expect(read(join(dest, '.runboat-commit'))).toBe(`${sha.c2}\n`);
      expect(read(join(dest, 'VERSION'))).toBe('2\n');
      expect(existsSync(join(dest, 'shop_stock', '__manifest__.py'))).toBe(true);
      expect(existsSync(join(dest, 'later.txt'))).toBe(false);
      expect(result.stdout).toContain(`runboat: fetched acme/shop at ${short(sha.c2)} (tarball)\n`);
      expect(names(result)).toEqual(['curl']);
      expectNoToken(result);
    },
    TIMEOUT,
  );

  it(
    'without the token: cannot reach (HTTP 401); an unknown sha: not found (HTTP 404)',
    async () => {
      const noToken = await run(
        'fetch.sh',
        {
          RUNBOAT_GIT_SHA: sha.c2,
          RUNBOAT_FETCH: 'tarball',
          RUNBOAT_TARBALL_URL: tarballUrl(sha.c2),
        },
        { args: ['src'] },
      );
      expect(failureLine(noToken)).toBe(
        `runboat: error: cannot reach ${tarballUrl(sha.c2)}: HTTP 401`,
      );

      const unknown = await run(
        'fetch.sh',
        {
          RUNBOAT_GIT_SHA: UNKNOWN_SHA,
          RUNBOAT_FETCH: 'tarball',
          RUNBOAT_TARBALL_URL: tarballUrl(UNKNOWN_SHA),
          RUNBOAT_GIT_TOKEN: TOKEN,
        },
        { args: ['src'] },
      );
      expect(failureLine(unknown)).toBe(
        `runboat: error: commit ${UNKNOWN_SHA} not found in acme/shop (HTTP 404 from ` +
          `${tarballUrl(UNKNOWN_SHA)}: a private repository needs RUNBOAT_GIT_TOKEN)`,
      );
      expectNoToken(unknown);
    },
    TIMEOUT,
  );

  it(
    'without git on the PATH, auto takes the tarball; wget gets the token from a private wgetrc',
    async () => {
      const data = freshData();
      const result = await run(
        'init.sh',
        {
          RUNBOAT_GIT_SHA: sha.c3,
          RUNBOAT_TARBALL_URL: tarballUrl(sha.c3),
          RUNBOAT_GIT_TOKEN: TOKEN,
        },
        { data, path: `${join(root, 'standins')}:${join(root, 'minimal')}` },
      );
      expectSuccess(result);
      const src = join(volume(data), 'src');
      expect(read(join(src, '.runboat-commit'))).toBe(`${sha.c3}\n`);
      expect(existsSync(join(src, 'addons', 'shop_extra', '__manifest__.py'))).toBe(true);
      expect(result.stdout).toContain(`runboat: fetched acme/shop at ${short(sha.c3)} (tarball)\n`);
      expect(names(result)).toEqual(['dropdb', 'wget', 'wget', 'pip', 'createdb', 'odoo']);
      // Asked whether it is GNU wget, then the download: no header on its command line.
      expect(callsOf(result, 'wget').map((call) => call.argv)).toEqual([
        ['--version'],
        [
          '-nv',
          '-O',
          expect.stringMatching(/\/runboat-fetch\.\w+\/source\.tar\.gz$/),
          '--',
          tarballUrl(sha.c3),
        ],
      ]);
      expect(installed(odooCall(result))).toBe('shop_base,shop_extra,shop_sale,shop_stock');
      expectNoToken(result);
      // The private directory that held the wgetrc is gone.
      expect(readdirSync(join(root, 'tmp'))).toEqual([]);
    },
    TIMEOUT,
  );
});

describe('start.sh', () => {
  it(
    'fails clearly before init ran, without starting odoo',
    async () => {
      const data = freshData();
      const result = await run('start.sh', { RUNBOAT_GIT_SHA: sha.c1 }, { data });
      expect(failureLine(result)).toBe(
        `runboat: error: ${BUILD} is not initialized: ${volume(data)}/runboat/addons-path is missing ` +
          '(init.sh writes it)',
      );
      expect(result.calls).toEqual([]);
    },
    TIMEOUT,
  );

  it(
    'execs odoo with the addons path and PYTHONPATH init recorded, and its own arguments',
    async () => {
      const data = freshData();
      expectSuccess(await run('init.sh', { RUNBOAT_GIT_SHA: sha.c3 }, { data }));
      const src = join(volume(data), 'src');
      const result = await run(
        'start.sh',
        { RUNBOAT_GIT_SHA: sha.c3, PYTHONPATH: '/opt/site' },
        { data, args: [`--database=${BUILD}`, '--workers=0'] },
      );
      expectSuccess(result);
      expect(result.stdout).toBe(`runboat: starting acme/shop at ${sha.c3}\n`);
      expect(result.calls).toHaveLength(1);
      const odoo = odooCall(result);
      expect(odoo.argv).toEqual([
        `--addons-path=${src},${src}/addons`,
        `--database=${BUILD}`,
        '--workers=0',
      ]);
      expect(odoo.env.PYTHONPATH).toBe(`${join(volume(data), 'python')}:/opt/site`);

      const other = await run('start.sh', { RUNBOAT_GIT_SHA: sha.c1 }, { data });
      expect(failureLine(other)).toBe(
        `runboat: error: ${BUILD} holds commit ${sha.c3}, not ${sha.c1}: reset the build`,
      );
    },
    TIMEOUT,
  );
});
