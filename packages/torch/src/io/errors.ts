// The one error class of checkpoint IO: every failure names the file and the problem.

/** A checkpoint (safetensors, .pt, zip) could not be read or written. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
  /** The file involved. */
  readonly file: string;
  /** The problem, without the file name. */
  readonly problem: string;

  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(`${file}: ${problem}`, options);
    this.file = file;
    this.problem = problem;
  }
}

/** A short description of an unknown thrown value. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
