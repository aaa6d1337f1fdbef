// Random streams as pure functions of where a run is, so that a resumed (or
// re-sharded) run derives the same ones without saved state.

/** A uniform number in [0, 1) from (seed, step): the pre-training noise index is resumable without state. */
export function hashUniform(seed: number, step: number): number {
  let h = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(step + 0x632be5ab, 0xc2b2ae35)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/** A seed for (seed, rank, step): each rank's own random stream, re-derived on resume. */
export function rankSeed(seed: number, rank: number, step: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [rank, step]) {
    h = Math.imul(h ^ v, 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}
