/**
 * A build's timeline told from its workflow's history (api/timeline.ts), on recorded histories
 * of real runs (test/fixtures/histories): what a person reads on the build page.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { historyFromJSON } from '../../dev/history-json.js';
import { timelineEntries, workflowLink } from '../../api/timeline.js';

const dir = join(import.meta.dirname, '..', 'fixtures', 'histories', '0.2.0-dev');

function entriesOf(fixture: string) {
  const history = historyFromJSON(JSON.parse(readFileSync(join(dir, fixture), 'utf8')));
  return timelineEntries(history.events ?? []);
}

const titles = (entries: { title: string }[]) => entries.map((entry) => entry.title);

describe('timelineEntries', () => {
  it('tells a reset build from queued to undeployed, in order, with times', () => {
    const entries = entriesOf('redeploy.json');
    expect(titles(entries)).toEqual([
      'queued',
      'todo',
      'init slot granted',
      'init started',
      'initializing',
      'init ended: succeeded',
      'stopped',
      'reset asked for',
      'todo',
      'init slot granted',
      'init started',
      'initializing',
      'init ended: succeeded',
      'stopped',
      'start asked for',
      'starting',
      'started',
      'reset asked for',
      'todo',
      'init slot granted',
      'init started',
      'initializing',
      'init ended: succeeded',
      'stopped',
      'undeploy asked for',
      'undeploying',
      'undeployed',
    ]);
    expect(entries[0]).toMatchObject({ kind: 'queued', detail: 'asked for through the API' });
    const times = entries.map((entry) => Date.parse(entry.time));
    expect(times.every((time) => time > Date.parse('2026-01-01'))).toBe(true);
    expect(entries.find((entry) => entry.title === 'init ended: succeeded')?.detail).toMatch(
      /^[0-9a-f]+-init-1$/,
    );
  });

  it('says why an init failed', () => {
    const failed = entriesOf('init-failure.json').find((entry) => entry.kind === 'failure');
    expect(failed).toMatchObject({ title: 'init ended: failed' });
    expect(failed?.detail).toMatch(/-init-1: BackoffLimitExceeded/);
  });

  it('says that the fleet stopped a build, and why', () => {
    const evicted = entriesOf('fleet-evicting.stopped.json').filter((e) => e.kind === 'evicted');
    expect(evicted).toEqual([
      expect.objectContaining({
        title: 'stopped by the fleet',
        detail: expect.stringContaining('RUNBOAT_MAX_STARTED') as unknown,
      }),
    ]);
    const undeployed = entriesOf('fleet-evicting.undeployed.json').filter(
      (e) => e.kind === 'evicted',
    );
    expect(undeployed[0]?.title).toBe('undeployed by the fleet');
    expect(undeployed[0]?.detail).toContain('RUNBOAT_MAX_DEPLOYED');
  });

  it('tells drift once per change, with how often it was seen', () => {
    const drift = entriesOf('drift-scaled.json').filter((entry) => entry.kind === 'drift');
    expect(drift.map((entry) => entry.detail)).toEqual([
      'its Deployment was scaled by hand to 1: taken as a start (2 times)',
      'its Deployment was scaled by hand to 0: taken as a stop (4 times)',
    ]);
  });

  it('marks where a run continued as new', () => {
    const entries = entriesOf('continue-as-new.run-2.json');
    expect(entries[0]).toMatchObject({ kind: 'run', title: 'continued as new' });
    // The status carried over is not told again.
    expect(entries[1]?.kind).not.toBe('status');
  });
});

describe('workflowLink', () => {
  it('links the workflow in the Temporal UI, or nothing without its base URL', () => {
    expect(workflowLink('http://temporal.example:8233/', 'default', 'b1234')).toBe(
      'http://temporal.example:8233/namespaces/default/workflows/b1234',
    );
    expect(workflowLink('https://t.example/ui', 'a b', 'x/y')).toBe(
      'https://t.example/ui/namespaces/a%20b/workflows/x%2Fy',
    );
    expect(workflowLink(undefined, 'default', 'b1234')).toBeNull();
  });
});
