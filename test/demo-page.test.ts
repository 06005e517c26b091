import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { launchBrowser } from './support/browser.js';
import { makeCatalogDir, posterPath, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { nearDuplicatesReady, startServer, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 40, val: 0, test: 4 });
/**
 * A prepared data dir (e.g. ./var after `npm start` offline: the whole catalog, the default model) to take the screenshots in docs/
 * against: MARQUEE_DEMO_DATA_DIR=var MARQUEE_SCREENSHOT_DIR=docs.
 */
const demoDataDir = process.env.MARQUEE_DEMO_DATA_DIR;
let server: RunningServer;
let browser: Browser;

/** A screenshot for docs/ (MARQUEE_SCREENSHOT_DIR) of the page or one part of it, once its images have loaded, as a palette PNG (a quarter of the bytes). */
async function screenshot(page: Page, name: string, part?: string): Promise<void> {
  const dir = process.env.MARQUEE_SCREENSHOT_DIR;
  if (!dir) return;
  await page.mouse.move(0, 0); // no hover highlight
  await page.evaluate(() => document.fonts.ready);
  await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('img')].every((img) => img.complete));
  const png = part ? await page.locator(part).screenshot() : await page.screenshot({ fullPage: true });
  writeFileSync(join(dir, name), await sharp(png).png({ palette: true, quality: 90, effort: 10 }).toBuffer());
}

/** The page with the requests it makes to the API, and the errors it throws, recorded. */
async function openPage(path = '/'): Promise<{ page: Page; requests: { method: string; url: URL; body: string | null }[]; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1360, height: 1100 } });
  const requests: { method: string; url: URL; body: string | null }[] = [];
  const errors: string[] = [];
  page.on('request', (request) => requests.push({ method: request.method(), url: new URL(request.url()), body: request.postData() }));
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${server.url}${path}`);
  return { page, requests, errors };
}

const last = (requests: { method: string; url: URL; body: string | null }[], method: string, path: RegExp) =>
  requests.filter((r) => r.method === method && path.test(r.url.pathname)).at(-1);

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
      ? await startServer({ MARQUEE_DATA_DIR: demoDataDir, MARQUEE_CATALOG: '', MARQUEE_PRECISION: 'auto', MARQUEE_BASE_WEIGHTS: 'none' })
      : await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir() });
    browser = await launchBrowser();
    await nearDuplicatesReady(server.url);
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
    await screenshot(page, 'demo.png');
    await page.close();
  });

  it('finds a poster by title from the keyboard, and searches from it and then from a result clicked', async () => {
    const { page, requests, errors } = await openPage();
    const wanted = rows.find((r) => r.title && r.title.length >= 6 && r.split === 'train')!;
    await page.locator('#q').focus();
    await page.keyboard.type(wanted.title.slice(0, -2));
    await page.locator('#suggestions button', { hasText: wanted.title }).waitFor();
    assert.equal(last(requests, 'GET', /^\/posters$/)?.url.searchParams.get('q'), wanted.title.slice(0, -2));

    await page.keyboard.press('ArrowDown');
    const first = (await page.evaluate(() => document.activeElement?.textContent)) ?? '';
    assert.ok(first.length > 0, 'a suggestion has the focus');
    await page.keyboard.press('Enter');
    await page.locator('#results .card').first().waitFor();
    assert.equal(await page.locator('#query-name').textContent(), first);
    const from = decodeURIComponent(/^#poster=(.+)$/.exec(new URL(page.url()).hash)![1]!);
    assert.ok(last(requests, 'GET', new RegExp(`^/posters/${from}/similar$`)), 'searched with GET /posters/{id}/similar');
    assert.equal(await page.locator('#results .card').count(), 8);

    const next = page.locator('#results .card .open').nth(2);
    const nextName = (await next.getAttribute('aria-label'))!.replace(/^Search from /, '');
    await next.click();
    await page.waitForFunction((name) => document.getElementById('query-name')?.textContent === name, nextName);
    await page.locator('#status', { hasText: /^Answered in/ }).waitFor();
    const nextId = decodeURIComponent(new URL(page.url()).hash.slice('#poster='.length));
    assert.notEqual(nextId, from);
    assert.ok(last(requests, 'GET', new RegExp(`^/posters/${nextId}/similar$`)));
    assert.ok(!(await page.locator('#results .card .open').evaluateAll((cards, name) => cards.some((c) => c.getAttribute('aria-label') === `Search from ${name}`), nextName)));

    // Typing again lists titles beside the results.
    await page.locator('#q').fill('');
    await page.locator('#q').pressSequentially(wanted.title.slice(0, 4));
    await page.locator('#suggestions button').first().waitFor();
    assert.equal(await page.locator('#results .card').count(), 8);
    await screenshot(page, 'demo-search.png', '#input');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('builds a recommend query from "more like this" and "less like this", and drops it again', async () => {
    const id = rows.find((r) => r.split === 'test')!.id;
    const { page, requests, errors } = await openPage(`/#poster=${id}`);
    await page.locator('#results .card').nth(7).waitFor();
    const names = await page.locator('#results .card .open').evaluateAll((cards) => cards.map((c) => c.getAttribute('aria-label')!.replace(/^Search from /, '')));
    await page.getByRole('button', { name: `More like ${names[0]}` }).click();
    await page.locator('#status', { hasText: /^Recommended in/ }).waitFor();
    await page.getByRole('button', { name: `Less like ${names[1]}` }).click();
    await page.waitForFunction(() => document.querySelectorAll('#example-list li').length === 2);
    await page.locator('#status', { hasText: /^Recommended in/ }).waitFor();
    await page.waitForFunction(() => document.getElementById('results')?.getAttribute('aria-busy') !== 'true');

    const request = last(requests, 'POST', /^\/posters\/recommend$/)!;
    const body = JSON.parse(request.body!) as { positive: string[]; negative: string[]; k: number };
    assert.equal(body.positive[0], id);
    assert.equal(body.positive.length, 2);
    assert.equal(body.negative.length, 1);
    assert.equal(body.k, 8);
    const shown = await page.locator('#results .card .open').evaluateAll((cards) => cards.map((c) => c.getAttribute('aria-label')!.replace(/^Search from /, '')));
    assert.ok(!shown.includes(names[0]!) && !shown.includes(names[1]!), 'the examples are not among the results');
    assert.deepEqual(await page.locator('#example-list li').allTextContents(), [`+ ${names[0]} ×`, `− ${names[1]} ×`]);
    assert.match((await page.locator('#results-heading').textContent()) ?? '', /^Recommended posters/);
    await screenshot(page, 'demo-recommend.png', '#results-panel');

    await page.getByRole('button', { name: 'Only the poster searched from' }).click();
    await page.locator('#status', { hasText: /^Answered in/ }).waitFor();
    assert.equal(await page.locator('#examples').isHidden(), true);
    assert.ok(requests.filter((r) => new RegExp(`^/posters/${id}/similar$`).test(r.url.pathname)).length >= 2);
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('sends the genre and year filters and the diversity with every search', async () => {
    const id = rows.find((r) => r.split === 'test')!.id;
    const { page, requests, errors } = await openPage(`/#poster=${id}`);
    await page.locator('#results .card').first().waitFor();
    await page.waitForFunction(() => document.querySelectorAll('#genre option').length > 2);
    // A genre and years that some catalog posters other than the one searched from have.
    const genre = 'Drama';
    const years = rows.filter((r) => r.id !== id && r.genres.split('|').includes(genre) && r.year).map((r) => Number(r.year)).sort((a, b) => a - b);
    const [from, to] = [years[0]!, years[Math.floor(years.length / 2)]!];
    await page.locator('#genre').selectOption(genre);
    await page.locator('#status', { hasText: /^Answered in/ }).waitFor();
    await page.locator('#year-from').fill(String(from));
    await page.locator('#year-to').fill(String(to));
    await page.locator('#year-to').press('Tab');
    await page.locator('#diversity').focus();
    for (let step = 0; step < 5; step++) await page.keyboard.press('ArrowRight');
    assert.equal(await page.locator('#diversity-value').textContent(), '0.5');
    await page.locator('#diversity').dispatchEvent('change');
    await page.waitForFunction(() => document.getElementById('results')?.getAttribute('aria-busy') !== 'true');
    await page.locator('#status', { hasText: /^Answered in/ }).waitFor();

    const params = last(requests, 'GET', /\/similar$/)!.url.searchParams;
    assert.deepEqual(
      [params.get('genre'), params.get('year_from'), params.get('year_to'), params.get('diversity')],
      [genre, String(from), String(to), '0.5'],
    );
    const cards = await page.locator('#results .card .open').evaluateAll((all) => all.map((c) => c.getAttribute('title')!));
    assert.ok(cards.length > 0);
    for (const title of cards) {
      assert.match(title, new RegExp(`: .*\\b${genre}\\b`), `${title} has the genre`);
      const year = Number(/\((\d{4})\):/.exec(title)?.[1]);
      assert.ok(year >= from && year <= to, `${title} is within the years`);
    }
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('badges an upload that is a near-duplicate of a catalog poster, and that poster among the results', async () => {
    const source = rows[5]!;
    const file = join(mkdtempSync(join(tmpdir(), 'marquee-copy-')), 'copy.jpg');
    await sharp(posterPath(source.id)).jpeg({ quality: 30 }).toFile(file);
    const { page, errors } = await openPage();
    await page.locator('#file').setInputFiles(file);
    await page.locator('#query-badge').waitFor({ state: 'visible' });
    const name = source.title ? `${source.title}${source.year ? ` (${source.year})` : ''}` : source.id;
    assert.equal(await page.locator('#query-badge').textContent(), `near-duplicate of ${name}`);
    const badged = page.locator('#results .card', { has: page.locator('.badge') });
    assert.equal(await badged.count(), 1);
    assert.equal(await badged.locator('.open').getAttribute('aria-label'), `Search from ${name}`);

    await page.locator('#file').setInputFiles(posterPath(source.id));
    await page.locator('#query-badge', { hasText: `same picture as ${name}` }).waitFor();
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('labels every control and names every button', async () => {
    const id = rows.find((r) => r.split === 'test')!.id;
    const { page } = await openPage(`/#poster=${id}`);
    await page.locator('#results .card').first().waitFor();
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll<HTMLInputElement | HTMLSelectElement>('input, select')].filter((c) => !c.labels?.length && !c.getAttribute('aria-label')).map((c) => c.id),
    );
    assert.deepEqual(unlabelled, []);
    const unnamed = await page.evaluate(() =>
      [...document.querySelectorAll('button')].filter((b) => !(b.getAttribute('aria-label') || b.textContent?.trim())).map((b) => b.outerHTML),
    );
    assert.deepEqual(unnamed, []);
    await page.close();
  });
});
