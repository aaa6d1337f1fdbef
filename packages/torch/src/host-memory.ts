// How the CPU heap behind tensors is kept (glibc malloc's thresholds).
//
// A training step frees its intermediate tensors together when its scope ends,
// which leaves the top of the heap free. With glibc's defaults that memory is
// returned to the OS (trimmed), and large blocks get fresh mmaps, so the next
// step faults the same memory back in page by page: 18,000–31,000 page faults
// per EPG-T/4 step on the CPU, about 9% of its time (BENCHMARKS.md). Python
// frees each tensor as soon as it is unreferenced, so its heap churns less.
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
 * Applied once when @epg/torch loads, unless EPG_HOST_MALLOC=default or
 * GLIBC_TUNABLES sets malloc options (the user's own choice wins).
 */
export function applyDefaultHostMemoryPolicy(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env['EPG_HOST_MALLOC'] === 'default') return false;
  if (/glibc\.malloc\./.test(env['GLIBC_TUNABLES'] ?? '')) return false;
  return keepHostMemoryMapped();
}

/** Whether the load-time policy was applied in this process. */
export const hostMemoryKeptMapped: boolean = applyDefaultHostMemoryPolicy();
