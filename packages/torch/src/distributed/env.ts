// The launcher contract of torchrun (and of SLURM/Kubernetes launchers that
// follow it): every process learns its place from environment variables.
//   RANK, WORLD_SIZE            this process's global rank and the process count
//   LOCAL_RANK, LOCAL_WORLD_SIZE  its rank on this machine and the count there
//   MASTER_ADDR, MASTER_PORT    where rank 0 serves the rendezvous store

export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
}

function intVar(env: NodeJS.ProcessEnv, name: string, min: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min)
    throw new Error(`${name}=${JSON.stringify(raw)}: expected an integer >= ${min} (set by epg launch or torchrun)`);
  return v;
}

/**
 * The distributed environment set by a launcher, or null when this process was
 * started alone (no WORLD_SIZE, or WORLD_SIZE=1 without a MASTER_ADDR).
 * Inconsistent values are errors naming the variable.
 */
export function distEnv(env: NodeJS.ProcessEnv = process.env): DistEnv | null {
  const worldSize = intVar(env, 'WORLD_SIZE', 1);
  if (worldSize === undefined) return null;
  const rank = intVar(env, 'RANK', 0);
  if (rank === undefined)
    throw new Error('WORLD_SIZE is set but RANK is not: start the processes with epg launch or torchrun');
  if (rank >= worldSize) throw new Error(`RANK=${rank} is not below WORLD_SIZE=${worldSize}`);
  const localRank = intVar(env, 'LOCAL_RANK', 0) ?? rank;
  const localWorldSize = intVar(env, 'LOCAL_WORLD_SIZE', 1) ?? worldSize;
  if (localRank >= localWorldSize)
    throw new Error(`LOCAL_RANK=${localRank} is not below LOCAL_WORLD_SIZE=${localWorldSize}`);
  const masterAddr = env.MASTER_ADDR || '127.0.0.1';
  const masterPort = intVar(env, 'MASTER_PORT', 1) ?? 29500;
  if (masterPort > 65535) throw new Error(`MASTER_PORT=${masterPort}: expected a TCP port (1..65535)`);
  return { rank, worldSize, localRank, localWorldSize, masterAddr, masterPort };
}
