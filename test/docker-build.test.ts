// scripts/docker-build-replay.sh, which replays the Dockerfile's build stage in CI (scripts/test.sh),
// on small build contexts: it must fail where `docker build` would (a build script run before the
// files it needs are copied; a path a later stage takes that the stage never made), copy only what
// COPY names minus .dockerignore, and follow WORKDIR as Docker does.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPLAY = fileURLToPath(new URL('../scripts/docker-build-replay.sh', import.meta.url));
const DOCKERFILE = fileURLToPath(new URL('../Dockerfile', import.meta.url));

/** A package whose `npm ci` runs a prepare script that compiles src/ with build.mjs, as Marquee's runs tsc. */
function buildContext(dockerfile: string, dockerignore = ''): string {
  const dir = mkdtempSync(join(tmpdir(), 'marquee-docker-context-'));
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'fixture', version: '1.0.0', private: true, scripts: { prepare: 'node build.mjs' } }),
  );
  writeFileSync(
    join(dir, 'package-lock.json'),
    JSON.stringify({ name: 'fixture', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'fixture', version: '1.0.0' } } }),
  );
  writeFileSync(
    join(dir, 'build.mjs'),
    "import { cpSync } from 'node:fs';\ncpSync('src', 'dist', { recursive: true });\n",
  );
  mkdirSync(join(dir, 'src', 'cache'), { recursive: true });
  writeFileSync(join(dir, 'src', 'main.js'), 'export {};\n');
  writeFileSync(join(dir, 'src', 'cache', 'big.bin'), 'left out by .dockerignore\n');
  writeFileSync(join(dir, 'Dockerfile'), dockerfile);
  if (dockerignore) writeFileSync(join(dir, '.dockerignore'), dockerignore);
  return dir;
}

function replay(context: string) {
  const result = spawnSync('bash', [REPLAY, '--context', context, '--file', join(context, 'Dockerfile')], { encoding: 'utf8' });
  return { code: result.status, output: result.stdout + result.stderr };
}

const HEAD = 'FROM node:22-bookworm-slim AS build\nRUN apt-get update && apt-get install -y python3\nWORKDIR /app\n';
const RUNTIME = 'FROM node:22-bookworm-slim\nCOPY --from=build /usr/local/bin/node /usr/local/bin/node\nCOPY --from=build /app/dist ./dist\n';

describe('Dockerfile build-stage replay', () => {
  it('fails when npm ci runs the prepare script before its sources are copied (the image that did not build)', () => {
    const context = buildContext(`${HEAD}COPY package.json package-lock.json ./\nRUN npm ci\nCOPY build.mjs ./\nCOPY src ./src\n${RUNTIME}`);
    const { code, output } = replay(context);
    assert.equal(code, 1, output);
    assert.match(output, /RUN failed \(exit \d+\) in WORKDIR \/app: npm ci/);
    assert.match(output, /build\.mjs/);
  });

  it('builds when the sources come first, copying what COPY names minus .dockerignore, with Docker\'s WORKDIR', () => {
    const context = buildContext(
      `${HEAD}COPY package.json package-lock.json build.mjs ./\nCOPY src ./src\n` +
        'RUN test ! -e src/cache && test -f src/main.js && test ! -e Dockerfile\n' +
        'RUN npm ci\nWORKDIR dist\nRUN test "$PWD" = "$(cd .. && pwd)/dist" && test -f main.js\n' +
        `ARG LABEL=made\nRUN echo "$LABEL" > stamp\n${RUNTIME}`,
      'src/cache\n**/*.log\n',
    );
    const { code, output } = replay(context);
    assert.equal(code, 0, output);
    assert.match(output, /RUN \(skipped: system packages come from this machine\) apt-get/);
    assert.match(output, /later stage copies \/app\/dist: present/);
    assert.match(output, /later stage copies \/usr\/local\/bin\/node: from the base image, not checked/);
  });

  it('fails when a later stage copies a path the build stage never made', () => {
    const context = buildContext(`${HEAD}COPY package.json package-lock.json build.mjs ./\nCOPY src ./src\n${RUNTIME}`);
    const { code, output } = replay(context);
    assert.equal(code, 1, output);
    assert.match(output, /a later stage copies \/app\/dist --from=build, which the stage did not make/);
  });

  it('fails when COPY names a file the context does not have', () => {
    const context = buildContext(`${HEAD}COPY package.json tsconfig.json ./\n`);
    const { code, output } = replay(context);
    assert.equal(code, 1, output);
    assert.match(output, /COPY tsconfig\.json: not in the build context/);
  });
});

describe('the image', () => {
  // The last stage, continuation lines joined: what `docker run` starts.
  const runtime = readFileSync(DOCKERFILE, 'utf8').replace(/\\\n/g, ' ').split(/^FROM /m).pop()!;

  it('runs tini as PID 1, which reaps orphaned processes (training workers) and passes signals on', () => {
    assert.match(runtime, /^RUN apt-get [^\n]*install [^\n]*\btini\b/m, 'tini is installed from Debian');
    assert.match(runtime, /^ENTRYPOINT \["\/usr\/bin\/tini", "--"\]$/m);
    assert.match(runtime, /^CMD \["node", "bin\/marquee.js", "serve"\]$/m);
  });

  it('checks liveness on /health; readiness (/ready) is for the orchestrator', () => {
    assert.match(runtime, /^HEALTHCHECK [^\n]*\/health'/m);
    assert.doesNotMatch(runtime, /^HEALTHCHECK [^\n]*\/ready/m);
  });
});
