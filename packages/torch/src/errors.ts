/** An error raised by libtorch (ATen's message, prefixed with the operator's name). */
export class TorchError extends Error {
  override name = 'TorchError';
}

/** A tensor was used after it was disposed. */
export class DisposedTensorError extends Error {
  override name = 'DisposedTensorError';
  constructor() {
    super(
      'tensor was disposed: it was freed by dispose() or by the end of the scope that created it. ' +
        'Keep it with keep(t), return it from the scope, or create it outside the scope.',
    );
  }
}

/**
 * Rethrows a native error with the right class: argument errors are TypeErrors,
 * libtorch errors are TorchErrors. Both keep the native message.
 */
export function rethrowNative(e: unknown): never {
  if (e instanceof Error) {
    const code = (e as Error & { code?: string }).code;
    if (code === 'EPG_TORCH') {
      const err = new TorchError(e.message);
      throw err;
    }
  }
  throw e;
}
