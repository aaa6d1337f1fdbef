// `npx epg` works from the repository root after the README's set-up (the
// workspace's bin is linked even though dist/ did not exist at `npm ci`), and
// every command's --help lists each flag of its table (help and parser are one).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

function npxEpg(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync('npx', ['--no-install', 'epg', ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('npx epg --help and npx epg info run from the repository root', () => {
  const help = npxEpg('--help');
  assert.equal(help.code, 0, `npx epg --help failed (is node_modules/.bin/epg linked? run npm run setup): ${help.err}`);
  assert.match(help.out, /usage: epg <command>/);
  const info = npxEpg('info', '--json');
  assert.equal(info.code, 0, info.err);
  assert.ok((JSON.parse(info.out) as { devices: string[] }).devices.includes('cpu'));
});

test('epg sample --help lists --no-png (the flag the hand-written help had left out)', () => {
  const r = npxEpg('sample', '--help');
  assert.equal(r.code, 0, r.err);
  for (const flag of ['--checkpoint', '--no-png', '--cuda-graph', '--append-zero', '--labels'])
    assert.match(r.out, new RegExp(`${flag}\\b`), flag);
});
