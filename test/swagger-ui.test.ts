import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser } from './support/browser.js';
import { makeCatalogDir, posterPath, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { startServer, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 20, val: 0, test: 0 });
let server: RunningServer;
let browser: Browser;
let otherSite: Server;

describe('Swagger UI', () => {
  before(async () => {
    // Admin routes opened without a token, as a developer runs it on their own machine.
    server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: '', MARQUEE_ADMIN_OPEN_LOOPBACK: '1' });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    otherSite?.close();
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

  it('runs admin writes in loopback mode (it sends X-Marquee-Admin), which a page of another site cannot', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 2000 } });
    await page.goto(`${server.url}/docs`);
    const block = page.locator('#operations-admin-activateModel');
    await block.locator('.opblock-summary').click();
    await block.locator('.try-out__btn').click();
    await block.locator('input[placeholder="version"]').fill('base-nope');
    await block.locator('button.execute').click();
    const status = block.locator('.live-responses-table tr.response .response-col_status').first();
    await status.waitFor();
    // Past the loopback checks to the route itself, which has no such version.
    assert.equal((await status.textContent())?.trim(), '404');

    // A page the developer visits on another site posts a form and a text/plain fetch to the admin routes.
    otherSite = createServer((_request, response) => {
      response.setHeader('content-type', 'text/html');
      response.end(`<form id="f" method="post" enctype="multipart/form-data" action="${server.url}/admin/posters"><input name="id" value="csrf-poster"></form>`);
    });
    await new Promise<void>((resolve) => otherSite.listen(0, '127.0.0.1', resolve));
    const other = await browser.newPage();
    await other.goto(`http://127.0.0.1:${(otherSite.address() as AddressInfo).port}/`);
    const activation = other.waitForResponse((response) => response.url().endsWith('/activate'));
    await other.evaluate((url) => void fetch(`${url}/admin/models/base-nope/activate`, { method: 'POST', mode: 'no-cors', body: '{}' }), server.url);
    assert.equal((await activation).status(), 403);
    const [posted] = await Promise.all([other.waitForNavigation(), other.evaluate(() => (document.getElementById('f') as HTMLFormElement).submit())]);
    assert.equal(posted?.status(), 403);
    assert.equal(JSON.parse((await posted?.text()) ?? '{}').error.code, 'admin_origin_refused');
    assert.equal((await fetch(`${server.url}/posters/csrf-poster`)).status, 404);
  });
});
