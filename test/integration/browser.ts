/**
 * The headless Chromium the browser tests drive through playwright-core: the system's own
 * Chromium, with nothing of its own reaching the network (no QUIC, updates, sync or background
 * requests), so that the only traffic is the test's.
 */
import { chromium, type Browser } from 'playwright-core';

/** Launches Chromium for a test file; close it in the file's afterAll. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
