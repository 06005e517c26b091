import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Locator, Page } from 'playwright-core';
import { launchBrowser } from './support/browser.js';
import { makeCatalogDir, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { startServer, type RunningServer } from './support/server.js';

const TOKEN = 'swagger-token';
let server: RunningServer;
let browser: Browser;

async function execute(block: Locator): Promise<{ status: string; body: any }> {
  await block.locator('button.execute').click();
  const row = block.locator('.live-responses-table tr.response').first();
  await row.waitFor();
  const status = (await row.locator('.response-col_status').textContent())?.trim() ?? '';
  const body = await row.locator('.response-col_description pre').first().textContent();
  return { status, body: JSON.parse(body ?? 'null') };
}

async function open(page: Page, id: string): Promise<Locator> {
  const block = page.locator(`#${id}`);
  await block.locator('.opblock-summary').click();
  await block.locator('.try-out__btn').click();
  return block;
}

describe('retraining from Swagger UI', () => {
  before(async () => {
    server = await startServer({
      MARQUEE_CATALOG: makeCatalogDir(subsetRows({ train: 40, val: 12, test: 4 })),
      MARQUEE_BASE_MODEL: testModelDir(),
      MARQUEE_ADMIN_TOKEN: TOKEN,
    });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('authorizes, starts a retrain, watches the job and sees the gate decide', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
    await page.goto(`${server.url}/docs`);
    await page.locator('.btn.authorize').first().click();
    await page.locator('.modal-ux input[type=text], .modal-ux input[type=password]').first().fill(TOKEN);
    await page.locator('.modal-ux button.authorize').click();
    await page.locator('.modal-ux button.btn-done').click();

    const retrain = await open(page, 'operations-admin-startRetrain');
    // force: the candidate is activated whatever the gate finds, so the outcome is one (the gate's
    // two verdicts are tested in test/retrain.test.ts); the gate still measures both.
    await retrain.locator('textarea.body-param__text').fill(JSON.stringify({ mode: 'head', epochs: 1, force: true }));
    const started = await execute(retrain);
    assert.equal(started.status, '202', JSON.stringify(started.body));
    const id = started.body.id as string;

    const watch = await open(page, 'operations-admin-getJob');
    await watch.locator('input[placeholder="id"]').fill(id);
    let job: any;
    for (let i = 0; i < 240; i++) {
      job = (await execute(watch)).body;
      if (['succeeded', 'rejected', 'failed', 'cancelled'].includes(job.state)) break;
      await page.waitForTimeout(500);
    }
    assert.equal(job.state, 'succeeded', `${job.state}: ${job.error}`);
    assert.equal(job.metrics.forced, true);
    assert.equal(typeof job.metrics.candidateScore, 'number');
    assert.equal(typeof job.metrics.activeScore, 'number');
    assert.equal(job.metrics.better, job.metrics.candidateScore > job.metrics.activeScore);

    const models = await open(page, 'operations-admin-listModels');
    const listed = (await execute(models)).body;
    assert.equal(listed.active, job.model_version, 'the candidate serves');
  });
});
