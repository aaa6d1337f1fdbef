// How the CPU heap behind tensors is kept (glibc malloc's thresholds).
//
// A training step frees its intermediate tensors together when its scope ends,
// which leaves the top of the heap free. With glibc's defaults that memory is
// returned to the OS (trimmed), and large blocks get fresh mmaps, so the next
// step faults the same memory back in page by page: 18,000–37,000 page faults
// per EPG-T/4 step on the CPU, up to ~15% of its time (BENCHMARKS.md, "Page
// faults"; bench/page-faults.ts). Python frees each tensor as soon as it is
// unreferenced, so its heap churns less.
import { native } from './native.js';

/** Blocks up to this size come from the heap, not from their own mmap (glibc's largest allowed value). */
export const HOST_MMAP_THRESHOLD = 32 * 2 ** 20;
/** Free memory at the top of the heap kept before any is returned to the OS. */
export const HOST_TRIM_THRESHOLD = 2 ** 30;

/**
 * Keeps CPU memory that tensors free mapped for reuse: blocks up to
 * mmapThreshold bytes come from the heap, and up to trimThreshold bytes of free
 * heap stay with the process. The process then keeps its peak heap (as
 * PyTorch's caching allocators keep theirs) and a steady training loop stops
 * faulting its memory back in every step. Returns false where the C library is
 * not glibc.
 */
export function keepHostMemoryMapped(
  mmapThreshold: number = HOST_MMAP_THRESHOLD,
  trimThreshold: number = HOST_TRIM_THRESHOLD,
): boolean {
  return native.setMallocOptions(mmapThreshold, trimThreshold);
}

/**
 * Applied once when @epg/torch loads, unless EPG_HOST_MALLOC=default or the
 * user set these thresholds for glibc already (GLIBC_TUNABLES'
 * glibc.malloc.{mmap,trim}_threshold/top_pad/mmap_max, or the older
 * MALLOC_*_ variables): the user's own choice wins. The process keeps its
 * peak heap for its lifetime once this is applied.
 */
export function applyDefaultHostMemoryPolicy(env: NodeJS.ProcessEnv = process.env): boolean {
  const choice = env['EPG_HOST_MALLOC'];
  if (choice === 'default') return false;
  if (choice !== undefined && choice !== '' && choice !== 'keep')
    console.warn(`@epg/torch: EPG_HOST_MALLOC=${choice} is not 'default' or 'keep'; keeping freed memory mapped`);
  if (/glibc\.malloc\.(mmap_threshold|trim_threshold|top_pad|mmap_max)/.test(env['GLIBC_TUNABLES'] ?? '')) return false;
  if (['MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_', 'MALLOC_MMAP_MAX_'].some((k) => env[k]))
    return false;
  return keepHostMemoryMapped();
}

/** Whether the load-time policy was applied in this process. */
export const hostMemoryKeptMapped: boolean = applyDefaultHostMemoryPolicy();
