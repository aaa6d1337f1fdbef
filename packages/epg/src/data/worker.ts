// A decode worker: opens a dataset from its WorkerSourceSpec, then fills
// slices of shared batch buffers with the images and labels it is asked for.
// Imports nothing from @epg/torch (it cannot load in a worker thread).
import { parentPort, workerData } from 'node:worker_threads';

import type { WorkerSource, WorkerSourceSpec } from './types.js';

/** A request: write images `indices` at pixels[pixelOffset + k·itemBytes], labels at labels[labelOffset + k]. */
export interface DecodeTask {
  id: number;
  indices: Int32Array;
  pixels: SharedArrayBuffer;
  pixelOffset: number;
  labels: SharedArrayBuffer;
  labelOffset: number;
}

export interface DecodeReply {
  id: number;
  error?: string;
}

async function open(spec: WorkerSourceSpec): Promise<WorkerSource> {
  const mod = (await import(spec.module)) as Record<string, unknown>;
  const factory = mod[spec.factory];
  if (typeof factory !== 'function') throw new Error(`${spec.module} has no function ${spec.factory}`);
  return (factory as (o: unknown) => WorkerSource)(spec.options);
}

if (parentPort !== null) {
  const port = parentPort;
  const source = open((workerData as { spec: WorkerSourceSpec }).spec);
  source.catch(() => undefined); // reported with the first task
  port.on('message', (task: DecodeTask | null) => {
    // null: the pool is closing. Closing the port lets this thread end after
    // the image it is decoding (terminate() could stop it inside zlib, which
    // Node's worker teardown then aborts on: "close before init").
    if (task === null) {
      port.close();
      return;
    }
    void (async () => {
      try {
        const src = await source;
        const n = src.itemBytes;
        const labels = new Int32Array(task.labels, task.labelOffset * 4, task.indices.length);
        for (let k = 0; k < task.indices.length; k++) {
          const dest = new Uint8Array(task.pixels, task.pixelOffset + k * n, n);
          labels[k] = src.readInto(task.indices[k]!, dest);
        }
        port.postMessage({ id: task.id } satisfies DecodeReply);
      } catch (e) {
        port.postMessage({ id: task.id, error: e instanceof Error ? e.message : String(e) } satisfies DecodeReply);
      }
    })();
  });
}
