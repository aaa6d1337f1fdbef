// The launcher (`epg-torch launch`, `epg launch`): starts the processes of a
// data-parallel run on this machine, following torchrun's environment contract
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
// MASTER_PORT), so that programs started by it also run under torchrun, SLURM
// or Kubernetes launchers that set the same variables.
//
// When a rank fails, the launcher stops the others and exits with that rank's
// status and the end of its error output. Signals are forwarded to all ranks.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { availableParallelism, constants } from 'node:os';

import { defineCommand, formatHelp, parseCommand, UsageError } from '../cli-args.js';

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  /** Default: a free port when nnodes is 1, else 29500. */
  masterPort?: number;
  /** What each rank runs: a .js file (run by this Node) or a program, with its arguments. */
  command: string[];
  /** Seconds the other ranks get to exit after SIGTERM before SIGKILL. */
  graceSeconds?: number;
  env?: NodeJS.ProcessEnv;
  log?: (line: string) => void;
}

export interface LaunchResult {
  /** 0 when every rank succeeded; otherwise the failed rank's exit code (128 + n for signal n). */
  exitCode: number;
  /** The first rank that failed, with how and the end of its error output. */
  failure: { rank: number; code: number | null; signal: NodeJS.Signals | null; stderrTail: string } | null;
}

const TAIL_BYTES = 4096;
/** How long after the first failure the launcher waits for the others' before stopping them. */
const SETTLE_MS = 1500;
/**
 * Errors a rank reports because another one died (Gloo, NCCL and the store say
 * so in these words): such a rank is a casualty, not the cause.
 */
const PEER_LOSS =
  /Connection closed by peer|Connection reset by peer|remote worker|Broken pipe|NCCL.*(remote|peer)|failed to recv|Socket Timeout/i;

type Failure = NonNullable<LaunchResult['failure']>;

/**
 * The failure to report: the first one that is not a peer-loss error (the
 * rank that died first often exits last), else the first one.
 */
export function rootCause(failures: readonly Failure[]): Failure | null {
  return failures.find((f) => f.signal !== null || !PEER_LOSS.test(f.stderrTail)) ?? failures[0] ?? null;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The program and arguments one rank runs: JavaScript files run on this Node. */
function resolveCommand(command: string[]): [string, string[]] {
  const [first, ...rest] = command;
  if (first === undefined) throw new Error('launch: no command to run');
  if (/\.(c|m)?js$/.test(first)) return [process.execPath, [first, ...rest]];
  return [first, rest];
}

function checkCount(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new Error(`launch: --${name} must be an integer >= ${min}, got ${v}`);
}

export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  const log = o.log ?? ((l: string) => console.error(l));
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  checkCount('nproc-per-node', o.nprocPerNode, 1);
  checkCount('nnodes', nnodes, 1);
  checkCount('node-rank', nodeRank, 0);
  if (o.masterPort !== undefined && !(Number.isInteger(o.masterPort) && o.masterPort >= 1 && o.masterPort <= 65535))
    throw new Error(`launch: --master-port must be a TCP port (1..65535), got ${o.masterPort}`);
  if (nodeRank >= nnodes) throw new Error(`launch: --node-rank ${nodeRank} is not below --nnodes ${nnodes}`);
  if (nnodes > 1 && !o.masterAddr)
    throw new Error('launch: --master-addr is required with --nnodes > 1 (the address of node 0)');
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (nnodes === 1 ? await freePort() : 29500);
  const worldSize = nnodes * o.nprocPerNode;
  const [program, args] = resolveCommand(o.command);
  const baseEnv = o.env ?? process.env;
  // As torchrun, one thread pool per process must not oversubscribe the CPU.
  const threads = String(Math.max(1, Math.floor(availableParallelism() / o.nprocPerNode)));

  const children: ChildProcess[] = [];
  const tails: string[] = [];
  const failures: Failure[] = [];
  let stopping = false;

  const stopAll = (signal: NodeJS.Signals): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  };
  let killTimer: NodeJS.Timeout | undefined;
  let settleTimer: NodeJS.Timeout | undefined;
  const stopOthers = (): void => {
    if (stopping) return;
    stopping = true;
    stopAll('SIGTERM');
    killTimer = setTimeout(() => stopAll('SIGKILL'), (o.graceSeconds ?? 10) * 1000);
    killTimer.unref();
  };
  // The ranks that lost a peer fail within moments of the one that died; let
  // them, so that the report can tell the cause from the casualties.
  const onFailure = (f: Failure): void => {
    failures.push(f);
    settleTimer ??= setTimeout(stopOthers, SETTLE_MS);
  };

  // A signal for the launcher goes to every rank. Ranks that stop because of it
  // (exit 128 + its number, as a trainer does after saving, or die of it) did
  // not fail; any other exit after it still did.
  const forwarded = new Set<NodeJS.Signals>();
  const forward = (signal: NodeJS.Signals) => () => {
    forwarded.add(signal);
    stopAll(signal);
  };
  const stoppedBy = (code: number | null, signal: NodeJS.Signals | null): boolean =>
    [...forwarded].some((f) => signal === f || code === 128 + constants.signals[f]);
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);

  log(`launch: ${worldSize} processes (${nnodes} node(s) × ${o.nprocPerNode}), rendezvous ${masterAddr}:${masterPort}`);
  const exits = Array.from({ length: o.nprocPerNode }, (_, localRank) => {
    const rank = nodeRank * o.nprocPerNode + localRank;
    const env: NodeJS.ProcessEnv = {
      ...baseEnv,
      RANK: String(rank),
      WORLD_SIZE: String(worldSize),
      LOCAL_RANK: String(localRank),
      LOCAL_WORLD_SIZE: String(o.nprocPerNode),
      GROUP_RANK: String(nodeRank),
      GROUP_WORLD_SIZE: String(nnodes),
      ROLE_RANK: String(rank),
      ROLE_WORLD_SIZE: String(worldSize),
      MASTER_ADDR: masterAddr,
      MASTER_PORT: String(masterPort),
      OMP_NUM_THREADS: baseEnv.OMP_NUM_THREADS ?? threads,
    };
    const child = spawn(program, args, { env, stdio: ['ignore', 'inherit', 'pipe'] });
    children.push(child);
    tails[localRank] = '';
    child.stderr!.on('data', (d: Buffer) => {
      process.stderr.write(d);
      tails[localRank] = (tails[localRank] + d.toString()).slice(-TAIL_BYTES);
    });
    return new Promise<void>((resolve) => {
      child.on('error', (e) => {
        onFailure({ rank, code: 127, signal: null, stderrTail: `cannot start ${program}: ${e.message}` });
        resolve();
      });
      child.on('close', (code, signal) => {
        if ((code !== 0 || signal !== null) && !stopping && !stoppedBy(code, signal))
          onFailure({ rank, code, signal, stderrTail: tails[localRank]! });
        resolve();
      });
    });
  });
  try {
    await Promise.all(exits);
  } finally {
    clearTimeout(killTimer);
    clearTimeout(settleTimer);
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
  const f = rootCause(failures);
  if (!f) {
    // Every rank exited 0, or all were stopped by a forwarded signal.
    const first = [...forwarded][0];
    if (first !== undefined) return { exitCode: 128 + constants.signals[first], failure: null };
    const signalled = children.find((c) => c.signalCode !== null);
    if (signalled) return { exitCode: 128 + constants.signals[signalled.signalCode!], failure: null };
    return { exitCode: 0, failure: null };
  }
  const how = f.signal ? `was killed by ${f.signal}` : `exited with code ${f.code}`;
  const lastLines = f.stderrTail.trim().split('\n').slice(-8).join('\n');
  log(
    `\nlaunch: rank ${f.rank} ${how}; the other ranks were stopped` +
      (failures.length > 1 ? ` (${failures.length - 1} failed after losing it).` : '.') +
      (lastLines ? `\n--- last lines of rank ${f.rank}'s error output ---\n${lastLines}` : ''),
  );
  const exitCode = f.signal ? 128 + constants.signals[f.signal] : (f.code ?? 1);
  return { exitCode, failure: f };
}

/** The launch command's flag table; `program` is the CLI that offers it ('epg', 'epg-torch'). */
export function launchCommand(program: string) {
  return defineCommand({
    name: `${program} launch`,
    summary: "run a command as a data-parallel job over several processes (torchrun's contract)",
    positionals: '<command ...>',
    stopAtPositional: true,
    flags: {
      'nproc-per-node': { type: 'integer', value: 'N', required: true, help: 'processes on this machine' },
      nnodes: { type: 'integer', value: 'M', help: 'machines in the job (default 1)' },
      'node-rank': { type: 'integer', value: 'R', help: "this machine's index, 0..M-1 (default 0)" },
      'master-addr': { type: 'string', value: 'A', help: 'the address of node 0 (required with --nnodes > 1)' },
      'master-port': {
        type: 'integer',
        value: 'P',
        help: 'the rendezvous port (default: a free one on one node, else 29500)',
      },
    },
    notes: `Starts N processes on this machine with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
MASTER_PORT set; launch options come before the command. If a process fails, the others are stopped and its
error is shown. Multi-node: run the same command on every node with --nnodes, its --node-rank and node 0's
--master-addr. EPG_RENDEZVOUS_TIMEOUT (seconds, default 300) bounds the wait for all processes to join.`,
  });
}

/** @deprecated Use formatHelp(launchCommand(program)). The launch usage without the program's name. */
export const LAUNCH_USAGE = formatHelp(launchCommand(''))
  .replace(/^usage: /, '')
  .trimStart();

/** @deprecated A launch command line that cannot be run: now cli-args' UsageError. */
export { UsageError as LaunchUsageError } from '../cli-args.js';

/**
 * Parses `--nproc-per-node N [--nnodes M ...] <command ...>`: the options end
 * at the first word that is not one; the rest is the command. Returns null for
 * --help; throws a UsageError naming the flag.
 */
export function parseLaunchArgs(argv: string[]): Omit<LaunchOptions, 'log' | 'env' | 'graceSeconds'> | null {
  const p = parseCommand(launchCommand('launch'), argv);
  if (p.help) return null;
  const v = p.values;
  if (p.rest.length === 0) throw new UsageError('no command to launch');
  return {
    nprocPerNode: v['nproc-per-node'],
    command: p.rest,
    ...(v.nnodes !== undefined ? { nnodes: v.nnodes } : {}),
    ...(v['node-rank'] !== undefined ? { nodeRank: v['node-rank'] } : {}),
    ...(v['master-addr'] !== undefined ? { masterAddr: v['master-addr'] } : {}),
    ...(v['master-port'] !== undefined ? { masterPort: v['master-port'] } : {}),
  };
}
