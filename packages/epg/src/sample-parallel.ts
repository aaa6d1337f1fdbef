// `epg sample` over several processes (under `epg launch`): the sample indices
// are dealt out in rounds of worldSize·batch consecutive indices, rank r taking
// the r-th block of `batch`; after each round the blocks are gathered (Gloo, on
// the CPU) to rank 0, which thus holds the samples in index order and writes one
// .npz. With per-index noise (diffusion/sample-noise.ts) the set is the same as
// one process draws.
import * as torch from '@epg/torch';
import { dist, type Tensor } from '@epg/torch';

/** This process's place in a sampling job: rank 0 of 1 when alone. */
export interface SamplingRanks {
  rank: number;
  worldSize: number;
  group: dist.ProcessGroup | null;
  /** Whether this job created the process group (and so destroys it). */
  owned: boolean;
}

/** Joins the job `epg launch` (or torchrun) described, or runs alone. */
export function joinSamplingGroup(): SamplingRanks {
  if (dist.isInitialized()) {
    const group = dist.getDefaultGroup();
    return { rank: group.rank, worldSize: group.size, group, owned: false };
  }
  const env = dist.distEnv();
  if (!env || env.worldSize === 1) return { rank: 0, worldSize: 1, group: null, owned: false };
  // Gloo whatever the device: only finished uint8 images travel, on the CPU.
  const group = dist.initProcessGroup({ backend: 'gloo' });
  return { rank: group.rank, worldSize: group.size, group, owned: true };
}

/** One GPU per process under `epg launch`: 'cuda' means cuda:LOCAL_RANK (as in training). */
export function rankDevice(device: torch.Device): torch.Device {
  const env = dist.distEnv();
  return device === 'cuda' && env && env.worldSize > 1 ? (`cuda:${env.localRank}` as torch.Device) : device;
}

export function leaveSamplingGroup(r: SamplingRanks): void {
  if (r.owned) dist.destroyProcessGroup();
}

/** One batch of one rank: indices start … start+count−1 (count may be 0 in the last round), and its round's extent. */
export interface RankBatch {
  start: number;
  count: number;
  roundStart: number;
  roundCount: number;
}

/** The batches of `rank`: every rank gets the same number (a gather per round), the last ones possibly empty. */
export function rankBatches(num: number, batch: number, rank: number, worldSize: number): RankBatch[] {
  if (!(batch > 0) || !Number.isInteger(batch))
    throw new RangeError(`batch size must be a positive integer, got ${batch}`);
  const out: RankBatch[] = [];
  for (let roundStart = 0; roundStart < num; roundStart += worldSize * batch) {
    const start = roundStart + rank * batch;
    out.push({
      start,
      count: Math.max(0, Math.min(batch, num - start)),
      roundStart,
      roundCount: Math.min(worldSize * batch, num - roundStart),
    });
  }
  return out;
}

/**
 * Gathers one round's images ([count, C, H, W] uint8 on the CPU, count ≤ batch)
 * to every rank, padded to `batch` rows each; returns the round's images in index
 * order on rank 0, null on the others. Alone, returns the images themselves.
 */
export function gatherRound(images: Tensor, b: RankBatch, batch: number, ranks: SamplingRanks): Tensor | null {
  const group = ranks.group;
  if (group === null) return images;
  return torch.tidy(() => {
    const n = images.shape[0]!;
    const padded =
      n === batch
        ? images
        : torch.cat([images, torch.zeros([batch - n, ...images.shape.slice(1)], { dtype: images.dtype })]);
    // Rank r's block holds indices roundStart + r·batch …: the gathered rows are in index order, padding at the end.
    const all = group.allGather(padded.contiguous());
    return ranks.rank === 0 ? all.slice(0, 0, b.roundCount).clone() : null;
  });
}
