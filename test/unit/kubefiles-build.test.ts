/**
 * The `build` mode of the default kubefiles (docs/kubefiles.md, "Image builds"): the one build Job
 * fetches the commit with fetch.sh and builds it with the builder's arguments; the clone token and
 * the push secret are referenced only when the repo entry gives them. And the repos file's
 * `imageBuild` entry: its defaults and what it refuses.
 */
import { describe, expect, it } from 'vitest';
import type { V1Job } from '@kubernetes/client-node';
import { BUILD_LABEL, JOB_KIND_LABEL, type ResolvedImageBuild } from '../../domain/build.js';
import { buildName } from '../../domain/names.js';
import { resolveImageBuild } from '../../activities/image-build.js';
import {
  defaultKubefilesDir,
  KubefilesError,
  renderKubefiles,
  type KubefilesContext,
} from '../../lib/kubefiles.js';
import { kubefilesContext } from './kubefiles-fixture.js';
import { reposFileSchema } from '../../lib/settings.js';

const commit = {
  repo: 'acme/shop',
  targetBranch: '16.0',
  pr: 42,
  gitCommit: '0123456789abcdef0123456789abcdef01234567',
};
const name = buildName(commit);

function contextFor(
  imageBuild: Partial<ResolvedImageBuild> = {},
  cloneToken: { secret: string; key: string } | null = null,
): KubefilesContext {
  const image: ResolvedImageBuild = {
    ref: `registry.example.com/previews/acme-shop:${commit.gitCommit}`,
    registry: 'registry.example.com/previews',
    name: 'acme-shop',
    dockerfile: 'Dockerfile',
    context: '.',
    pushSecret: null,
    builderImage: 'gcr.io/kaniko-project/executor:v1.23.2',
    ...imageBuild,
  };
  return kubefilesContext(commit, {
    mode: 'build',
    source: { cloneToken },
    image: { name: 'registry.example.com/previews/acme-shop', tag: commit.gitCommit },
    imageBuild: image,
    job: { name: `${name}-build-1` },
  });
}

async function renderJob(context: KubefilesContext): Promise<V1Job> {
  const manifests = await renderKubefiles(defaultKubefilesDir, context);
  expect(manifests).toHaveLength(1);
  return manifests[0] as unknown as V1Job;
}

describe('the build mode of the default kubefiles', () => {
  it('renders one Job named job.name, labelled build, fetching then building the commit', async () => {
    const job = await renderJob(contextFor());
    expect(job.kind).toBe('Job');
    expect(job.metadata?.name).toBe(`${name}-build-1`);
    expect(job.metadata?.labels).toMatchObject({ [BUILD_LABEL]: name, [JOB_KIND_LABEL]: 'build' });
    const pod = job.spec?.template.spec;
    expect(job.spec?.template.metadata?.labels?.[JOB_KIND_LABEL]).toBe('build');
    const fetch = pod?.initContainers?.[0];
    expect(fetch?.command).toEqual(['sh', '/runboat/fetch.sh', '/workspace/src']);
    expect(fetch?.env?.find((e) => e.name === 'RUNBOAT_GIT_SHA')?.value).toBe(commit.gitCommit);
    expect(fetch?.env?.find((e) => e.name === 'RUNBOAT_GIT_PR')?.value).toBe('42');
    const builder = pod?.containers[0];
    expect(builder?.image).toBe('gcr.io/kaniko-project/executor:v1.23.2');
    expect(builder?.args).toEqual([
      '--context=dir:///workspace/src',
      '--dockerfile=/workspace/src/Dockerfile',
      `--destination=registry.example.com/previews/acme-shop:${commit.gitCommit}`,
    ]);
    expect(pod?.volumes?.map((v) => v.name)).toEqual(['workspace', 'scripts']);
    expect(pod?.volumes?.[1]?.configMap?.name).toBe(`${name}-scripts`);
    // Without a clone token, nothing in the Job refers to a Secret.
    expect(JSON.stringify(job)).not.toContain('secretKeyRef');
  });

  it('takes the context directory and Dockerfile of the checkout, and mounts the push secret', async () => {
    const job = await renderJob(
      contextFor({
        context: 'docker',
        dockerfile: 'docker/Dockerfile.preview',
        pushSecret: 'push',
      }),
    );
    const pod = job.spec?.template.spec;
    expect(pod?.containers[0]?.args?.slice(0, 2)).toEqual([
      '--context=dir:///workspace/src/docker',
      '--dockerfile=/workspace/src/docker/Dockerfile.preview',
    ]);
    expect(pod?.containers[0]?.volumeMounts).toContainEqual({
      name: 'registry-credentials',
      mountPath: '/kaniko/.docker',
      readOnly: true,
    });
    expect(pod?.volumes?.find((v) => v.name === 'registry-credentials')?.secret).toEqual({
      secretName: 'push',
      items: [{ key: '.dockerconfigjson', path: 'config.json' }],
    });
  });

  it('gives the fetch the clone token as a secretKeyRef only when the source has one', async () => {
    const job = await renderJob(contextFor({}, { secret: 'acme-clone', key: 'token' }));
    const fetch = job.spec?.template.spec?.initContainers?.[0];
    expect(fetch?.env?.find((e) => e.name === 'RUNBOAT_GIT_TOKEN')).toEqual({
      name: 'RUNBOAT_GIT_TOKEN',
      valueFrom: { secretKeyRef: { name: 'acme-clone', key: 'token' } },
    });
    // The builder itself never sees it.
    expect(JSON.stringify(job.spec?.template.spec?.containers)).not.toContain('acme-clone');
  });

  it('is checked like the other Job modes: a Job of another name is refused', async () => {
    const context = { ...contextFor(), job: { name: `${name}-build-9` } };
    const manifests = await renderKubefiles(defaultKubefilesDir, context);
    expect(manifests[0]?.metadata.name).toBe(`${name}-build-9`);
    await expect(
      renderKubefiles(defaultKubefilesDir, { ...context, job: undefined }),
    ).rejects.toThrow(KubefilesError);
  });
});

describe('imageBuild in the repos file', () => {
  const entry = (imageBuild: unknown, image?: string) => [
    { repo: 'acme/shop', branch: '.*', builds: [{ ...(image ? { image } : {}), imageBuild }] },
  ];

  it('takes defaults and needs no image; the image is <registry>/<owner-name>:<sha>', () => {
    const [repo] = reposFileSchema.parse(entry({ registry: 'registry.example.com/previews' }));
    const options = repo?.builds[0]?.imageBuild;
    expect(options).toEqual({
      registry: 'registry.example.com/previews',
      dockerfile: 'Dockerfile',
      context: '.',
      builderImage: 'gcr.io/kaniko-project/executor:v1.23.2',
    });
    expect(resolveImageBuild({ ...commit, repo: 'Acme/Shop' }, options!).ref).toBe(
      `registry.example.com/previews/acme-shop:${commit.gitCommit}`,
    );
  });

  it('refuses a build with neither image nor imageBuild, and paths outside the checkout', () => {
    expect(
      reposFileSchema.safeParse([{ repo: 'a/b', branch: '.*', builds: [{}] }]).error?.issues[0],
    ).toMatchObject({
      path: [0, 'builds', 0, 'image'],
      message: 'required unless imageBuild is set',
    });
    for (const bad of [
      { registry: 'Registry.Example.com' },
      { registry: 'r.example.com', context: '../outside' },
      { registry: 'r.example.com', dockerfile: '/etc/Dockerfile' },
      { registry: 'r.example.com', pushSecret: 'Not_A_Secret' },
      { registry: 'r.example.com', unknown: true },
    ]) {
      expect(reposFileSchema.safeParse(entry(bad)).success, JSON.stringify(bad)).toBe(false);
    }
  });
});
