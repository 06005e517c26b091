import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import sharp from 'sharp';
import { launchBrowser } from './support/browser.js';
import { makeCatalogDir, posterPath, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { startServer, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 40, val: 0, test: 4 });
/** A prepared data dir (e.g. ./var, the whole catalog embedded) to take docs/demo.png against: MARQUEE_DEMO_DATA_DIR=var. */
const demoDataDir = process.env.MARQUEE_DEMO_DATA_DIR;
let server: RunningServer;
let browser: Browser;

/** A poster the catalog does not hold as such: a test poster with its borders cropped off, re-encoded. */
async function croppedPoster(id: string): Promise<string> {
  const file = join(mkdtempSync(join(tmpdir(), 'marquee-upload-')), `${id}-cropped.jpg`);
  const image = sharp(posterPath(id));
  const { width, height } = await image.metadata();
  const dx = Math.round(width! * 0.05);
  const dy = Math.round(height! * 0.05);
  await image.extract({ left: dx, top: dy, width: width! - 2 * dx, height: height! - 2 * dy }).jpeg({ quality: 85 }).toFile(file);
  return file;
}

describe('demo page', () => {
  before(async () => {
    server = demoDataDir
      ? await startServer({ MARQUEE_DATA_DIR: demoDataDir, MARQUEE_CATALOG: '' })
      : await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir() });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('is at / and /demo', async () => {
    const root = await fetch(`${server.url}/`, { redirect: 'manual' });
    assert.equal(root.status, 302);
    assert.equal(root.headers.get('location'), '/demo/');
    const demo = await fetch(`${server.url}/demo`, { redirect: 'manual' });
    assert.ok([301, 302].includes(demo.status), `/demo answered ${demo.status}`);
    const page = await fetch(`${server.url}/demo/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(await page.text(), /<script type="module" src="demo.js">/);
    const missing = await fetch(`${server.url}/demo/nope.js`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as any).error.code, 'not_found');
  });

  it('serves the embedding map of the catalog', async () => {
    const response = await fetch(`${server.url}/posters/map`);
    assert.equal(response.status, 200);
    const map = (await response.json()) as any;
    if (!demoDataDir) assert.equal(map.points.length, rows.length);
    assert.equal(map.method, 'umap');
    assert.equal(map.genres.reduce((n: number, g: { count: number }) => n + g.count, 0), map.points.length);
    for (const point of map.points) assert.ok(point.x >= 0 && point.x <= 1 && point.y >= 0 && point.y <= 1);
    assert.deepEqual((await (await fetch(`${server.url}/posters/map`)).json()) as any, map, 'cached: the same map again');
  });

  it('shows the nearest posters, the genre bars and the map marker for a poster uploaded through the page', async (t) => {
    const page = await browser.newPage({ viewport: { width: 1360, height: 1100 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const loading = performance.now();
    await page.goto(`${server.url}/`);
    await page.waitForFunction(() => /posters, /.test(document.getElementById('map-info')?.textContent ?? ''));
    const loaded = performance.now() - loading;

    const query = rows.find((r) => r.split === 'test')!;
    const searching = performance.now();
    await page.locator('#file').setInputFiles(await croppedPoster(query.id));
    await page.locator('#results .card').nth(7).waitFor();
    await page.locator('#map-marker').waitFor({ state: 'visible' });
    const answered = performance.now() - searching;
    t.diagnostic(`page and map loaded in ${Math.round(loaded)} ms; upload answered and drawn in ${Math.round(answered)} ms`);

    assert.equal(await page.locator('#results .card').count(), 8);
    const similarities = await page.locator('#results .card .sim').allTextContents();
    for (const text of similarities) assert.match(text, /^-?\d\.\d{3}$/);
    assert.ok((await page.locator('#genres li').count()) >= 1);
    assert.match((await page.locator('#genres li.top .value').textContent()) ?? '', /^\d+%$/);
    assert.match((await page.locator('#status').textContent()) ?? '', /^Answered in \d+ ms/);
    assert.equal(await page.locator('#legend li').count() > 0, true);

    const box = (await page.locator('#map').boundingBox())!;
    const marker = (await page.locator('#map-marker').boundingBox())!;
    const centre = { x: marker.x + marker.width / 2, y: marker.y + marker.height / 2 };
    assert.ok(centre.x >= box.x && centre.x <= box.x + box.width && centre.y >= box.y && centre.y <= box.y + box.height, 'the marker is on the map');
    assert.deepEqual(errors, []);
    if (process.env.MARQUEE_SCREENSHOT) {
      await page.evaluate(() => document.fonts.ready);
      await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('#results img')].every((img) => img.complete));
      await page.screenshot({ path: process.env.MARQUEE_SCREENSHOT, fullPage: true });
    }
    await page.close();
  });
});
