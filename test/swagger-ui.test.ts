import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser } from './support/browser.js';
import { makeCatalogDir, posterPath, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { startServer, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 20, val: 0, test: 0 });
let server: RunningServer;
let browser: Browser;

describe('Swagger UI', () => {
  before(async () => {
    server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir() });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('lists every endpoint and runs an upload from the page', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 2000 } });
    await page.goto(`${server.url}/docs`);
    await page.waitForSelector('.opblock');
    const operations = await page.$$eval('.opblock-summary-path', (nodes) => nodes.map((n) => n.getAttribute('data-path')));
    for (const path of ['/posters/similar', '/posters/genre', '/posters/embed', '/posters', '/posters/{id}', '/posters/{id}/image', '/health', '/ready', '/metrics']) {
      assert.ok(operations.includes(path), `${path} is listed (${operations.join(', ')})`);
    }

    const block = page.locator('#operations-posters-findSimilarPosters');
    await block.locator('.opblock-summary').click();
    await block.locator('.try-out__btn').click();
    await block.locator('input[type=file]').setInputFiles(posterPath(rows[2]!.id));
    await block.locator('button.execute').click();
    const status = block.locator('.live-responses-table tr.response .response-col_status').first();
    await status.waitFor();
    assert.equal((await status.textContent())?.trim(), '200');
    const body = await block.locator('.live-responses-table tr.response .response-col_description pre').first().textContent();
    const parsed = JSON.parse(body ?? '{}') as { catalog_match: { id: string }; results: unknown[] };
    assert.equal(parsed.catalog_match.id, rows[2]!.id);
    assert.equal(parsed.results.length, 8);
    if (process.env.MARQUEE_SCREENSHOT) await page.screenshot({ path: process.env.MARQUEE_SCREENSHOT, fullPage: false });
  });
});
