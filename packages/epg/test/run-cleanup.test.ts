// A run that cannot start leaves nothing behind (no run folder, no config.json):
// `epg finetune` with a missing finetune.init, `epg pretrain` with a dataset that
// is not there; a run that made its updates keeps its folder.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { removingUnstartedRun } from '../src/train/run-cleanup.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'src', 'cli.js');
const root = mkdtempSync(join(tmpdir(), 'epg-cleanup-'));
after(() => rmSync(root, { recursive: true, force: true }));

function epg(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const runFolders = (runs: string): string[] => (existsSync(runs) ? readdirSync(runs) : []);

test('epg finetune with a missing finetune.init fails and leaves no run folder', () => {
  const runs = join(root, 'runs-finetune');
  const missing = join(root, 'no-such-run');
  for (const mode of ['dm', 'cm']) {
    const r = epg(
      'finetune',
      '--mode',
      mode,
      '--config',
      `fashion-mnist-${mode}`,
      '--set',
      `runDir=${runs}`,
      '--set',
      `finetune.init=${missing}`,
    );
    assert.notEqual(r.code, 0, `${mode}: ${r.out}`);
    assert.match(r.err, /no-such-run/, `${mode}: the error names the path`);
    assert.deepEqual(runFolders(runs), [], `${mode}: run folders left behind`);
  }
});

test('epg pretrain on a dataset that is not there fails and leaves no run folder', () => {
  const runs = join(root, 'runs-pretrain');
  const r = epg(
    'pretrain',
    '--config',
    'fashion-mnist-pretrain',
    '--set',
    `runDir=${runs}`,
    '--set',
    `data.source=${join(root, 'no-such-dataset')}`,
  );
  assert.notEqual(r.code, 0, r.out);
  assert.deepEqual(runFolders(runs), []);
});

test('removingUnstartedRun keeps a folder in which an update was made, and a resumed one', async () => {
  const made = mkdtempSync(join(root, 'made-'));
  await assert.rejects(
    removingUnstartedRun(async (s) => {
      s.createdDir = made;
      s.updated = true;
      throw new Error('out of memory at step 7');
    }),
    /step 7/,
  );
  assert.ok(existsSync(made));
  const fresh = mkdtempSync(join(root, 'fresh-'));
  await assert.rejects(
    removingUnstartedRun(async (s) => {
      s.createdDir = fresh;
      throw new Error('cannot start');
    }),
    /cannot start/,
  );
  assert.ok(!existsSync(fresh));
});
