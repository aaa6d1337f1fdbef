// The data pipeline of a training run: the configured source, the Loader, and
// the per-stage batch preparation on the device (pre-training views, or
// fine-tuning flips and label dropout), with its random stream saved in
// checkpoints so a resumed run sees the same batches and augmentations.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import type { Tensor } from '@epg/torch';

import {
  clampRange,
  denormalize,
  finetuneBatch,
  ImageFolder,
  loadFashionMnist,
  Loader,
  pretrainViews,
  saveImageGrid,
  ShardDataset,
  type ImageDataset,
  type LoaderState,
} from '../data/index.js';
import type { DataConfig, TrainConfig } from './config.js';
import { rankSeed } from './seeds.js';
import type { DataPipeline, RankInfo } from './trainer.js';

/** The CIFAR-10 copy of the shared datasets folder (see shared/datasets/README.md), or $EPG_CIFAR10. */
export function cifar10Path(): string {
  if (process.env.EPG_CIFAR10) return resolve(process.env.EPG_CIFAR10);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    for (const c of [
      join(dir, 'shared', 'datasets', 'cifar10-jpeg.zip'),
      join(dir, '..', 'shared', 'datasets', 'cifar10-jpeg.zip'),
    ])
      if (existsSync(c)) return resolve(c);
    dir = dirname(dir);
  }
  throw new Error(
    'CIFAR-10 not found: expected ../shared/datasets/cifar10-jpeg.zip beside the repository, or set EPG_CIFAR10',
  );
}

/** Opens data.source: 'fashion-mnist', 'cifar10', a shard folder (epg prepare), or an ImageFolder directory / zip. */
export function openDataset(d: DataConfig): ImageDataset {
  if (d.source === 'fashion-mnist') return loadFashionMnist({ split: d.split });
  if (d.source === 'cifar10') return ImageFolder.open({ root: cifar10Path(), subdir: d.split });
  if (!existsSync(d.source))
    throw new Error(`data.source '${d.source}' does not exist (expected fashion-mnist, cifar10, a folder or a zip)`);
  if (existsSync(join(d.source, 'index.json'))) return ShardDataset.open(d.source);
  return ImageFolder.open({ root: d.source, ...(d.subdir ? { subdir: d.subdir } : {}) });
}

/**
 * The configured source behind a Loader. In a data-parallel run each rank loads
 * its slice of every global batch (the epoch order and the position are global,
 * so a run can resume on a different number of ranks) and augments it with its
 * own random stream.
 */
export async function createDataPipeline(
  cfg: TrainConfig,
  device: torch.Device,
  seed: number,
  ranks: RankInfo = { rank: 0, worldSize: 1 },
): Promise<DataPipeline> {
  const dataset = openDataset(cfg.data);
  if (dataset.length < cfg.batchSize)
    throw new Error(`the dataset has ${dataset.length} images, fewer than one batch of ${cfg.batchSize}`);
  if (cfg.stage !== 'pretrain' && dataset.numClasses > cfg.numClasses)
    throw new Error(
      `the dataset has ${dataset.numClasses} classes but numClasses is ${cfg.numClasses}; set --set numClasses=${dataset.numClasses}`,
    );
  const norm = cfg.data.normalization;
  const distributed = ranks.worldSize > 1;
  const augment = new torch.Generator(device, distributed ? rankSeed(seed + 2, ranks.rank, 0) : seed + 2);
  let start: LoaderState = { epoch: 0, position: 0 };
  let loader: Loader | null = null;
  const open = (): Loader =>
    (loader ??= new Loader(dataset, {
      batchSize: cfg.batchSize,
      seed,
      numWorkers: cfg.data.workers,
      start,
      rank: ranks.rank,
      worldSize: ranks.worldSize,
    }));
  return {
    imageSize: dataset.height,
    channels: dataset.channels,
    numClasses: dataset.numClasses,
    clamp: clampRange(norm, dataset.channels),
    async next() {
      const b = await open().next();
      try {
        return torch.tidy(() => {
          // To a GPU through pinned memory, without waiting for the device (the
          // host allocator keeps the pinned block until the copy has run).
          const toDevice = (t: Tensor): Tensor =>
            device.startsWith('cuda') ? t.pinMemory().to({ device, nonBlocking: true }) : t.to({ device });
          const images = toDevice(b.images);
          const labels = toDevice(b.labels);
          if (cfg.stage === 'pretrain') return { labels, ...pretrainViews(images, { generator: augment, norm }) };
          const { x, y } = finetuneBatch(images, labels, {
            generator: augment,
            norm,
            labelDropout: cfg.stage === 'dm' ? cfg.finetune.labelDropout : 0,
            nullClass: cfg.numClasses,
          });
          return { x, labels: y };
        });
      } finally {
        b.images.dispose();
        b.labels.dispose();
      }
    },
    state() {
      return { loader: open().state(), augment: Buffer.from(augment.getState()).toString('base64') };
    },
    restore(state) {
      if (loader) throw new Error('restore() must come before the first batch');
      start = state.loader as LoaderState;
      // The checkpoint holds rank 0's stream; in a data-parallel run every rank
      // re-derives its own from the position instead.
      if (distributed) augment.manualSeed(rankSeed(seed + 2, ranks.rank, start.epoch * 1e6 + start.position));
      else augment.setState(Buffer.from(state.augment as string, 'base64'));
    },
    saveGrid(path: string, images: Tensor, nrow: number) {
      torch.tidy(() => saveImageGrid(path, denormalize(images.cpu(), norm), nrow));
    },
    async close() {
      await loader?.close();
      augment.dispose();
    },
  };
}
