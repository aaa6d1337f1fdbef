// Declarative command lines: each command is one table of flags (type,
// default, help), parsed by Node's util.parseArgs, and its --help text is
// generated from the same table, so the two cannot disagree. Generic (it knows
// nothing of EPG): the epg CLI, the launcher and the benchmark scripts use it.
import { parseArgs } from 'node:util';

/** How a flag's value is read: a string, a finite number, an integer, a switch, or a repeatable string. */
export type FlagType = 'string' | 'number' | 'integer' | 'boolean' | 'list';

export interface Flag {
  type: FlagType;
  /** One line for --help. */
  help: string;
  /** The value's placeholder in --help (default: N for numbers, VALUE else). */
  value?: string;
  /** The value when the flag is absent (shown in --help). */
  default?: string | number;
  /** The allowed values of a string flag. */
  choices?: readonly string[];
  /** An absent required flag is a usage error. */
  required?: boolean;
}

export type Flags = Record<string, Flag>;

export interface Command<F extends Flags = Flags> {
  /** The program and command, as typed: 'epg sample'. */
  name: string;
  /** One line: what the command does (also listed by the program's help). */
  summary: string;
  /** The positional arguments as shown in --help ('<source> <output>'); absent: none are accepted. */
  positionals?: string;
  /** The most positional arguments accepted (default: any number when positionals is set). */
  maxPositionals?: number;
  /** Options end at the first positional; it and the words after it are returned in `rest` (a launcher's command). */
  stopAtPositional?: boolean;
  flags: F;
  /** Lines after the flag list: presets, examples, remarks. */
  notes?: string;
}

type ValueOf<T extends Flag> = T['type'] extends 'boolean'
  ? boolean
  : T['type'] extends 'list'
    ? string[]
    : T['type'] extends 'number' | 'integer'
      ? number
      : T['choices'] extends readonly (infer C)[]
        ? C
        : string;

/** The parsed values: flags with a default, switches, lists and required flags are always present. */
export type FlagValues<F extends Flags> = {
  [K in keyof F]: F[K] extends { type: 'boolean' | 'list' } | { default: unknown } | { required: true }
    ? ValueOf<F[K]>
    : ValueOf<F[K]> | undefined;
};

export interface Parsed<F extends Flags> {
  values: FlagValues<F>;
  positionals: string[];
  /** The words from the first positional on (stopAtPositional commands only). */
  rest: string[];
  /** --help or -h was given (then nothing else was checked). */
  help: boolean;
}

/** A command line that cannot be run: the message names the flag and the fix; print it with the command's help. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Declares a command (the identity, for type inference of its flag table). */
export function defineCommand<const F extends Flags>(command: Command<F>): Command<F> {
  return command;
}

const placeholder = (f: Flag): string =>
  f.value ?? (f.choices ? f.choices.join('|') : f.type === 'number' || f.type === 'integer' ? 'N' : 'VALUE');

/** The --help text of a command, from its table. */
export function formatHelp(command: Command): string {
  const rows = Object.entries(command.flags).map(([name, f]) => {
    const left = f.type === 'boolean' ? `--${name}` : `--${name} ${placeholder(f)}`;
    const extra = [
      f.type === 'list' ? 'repeatable' : '',
      f.required ? 'required' : '',
      f.default !== undefined ? `default ${f.default}` : '',
    ].filter(Boolean);
    return [left, f.help + (extra.length ? ` (${extra.join('; ')})` : '')] as const;
  });
  rows.push(['--help', 'this help']);
  const width = Math.min(30, Math.max(...rows.map(([l]) => l.length)));
  const lines = [
    `usage: ${command.name} [options]${command.positionals ? ` ${command.positionals}` : ''}`,
    `  ${command.summary}`,
    '',
    'options:',
    ...rows.map(([l, r]) => (l.length > width ? `  ${l}\n  ${' '.repeat(width)}  ${r}` : `  ${l.padEnd(width)}  ${r}`)),
  ];
  if (command.notes) lines.push('', command.notes);
  return lines.join('\n');
}

/**
 * Parses argv against a command's table. The word after a value flag is its
 * value even when it starts with '-' (`--nice -10`), as `--flag=value` is.
 * Unknown flags, missing values, bad numbers and choices are UsageErrors that
 * name the flag (and, for unknown ones, list the valid flags).
 */
export function parseCommand<F extends Flags>(command: Command<F>, argv: readonly string[]): Parsed<F> {
  const flags: Flags = command.flags;
  const valid = (): string => [...Object.keys(flags), 'help'].map((n) => `--${n}`).join(', ');
  // Join `--flag value` into `--flag=value` and find where a launcher's command starts.
  const args: string[] = [];
  let rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      if (command.stopAtPositional) rest = argv.slice(i + 1);
      else args.push(...argv.slice(i));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      if (command.stopAtPositional) {
        rest = argv.slice(i);
        break;
      }
      args.push(a);
      continue;
    }
    const name = a.startsWith('--') ? a.slice(2) : '';
    const f = flags[name];
    if (f !== undefined && f.type !== 'boolean') {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value (${placeholder(f)})`);
      args.push(`--${name}=${argv[++i]}`);
    } else args.push(a);
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        ...Object.fromEntries(
          Object.entries(flags).map(([name, f]) => [
            name,
            f.type === 'boolean'
              ? { type: 'boolean' as const }
              : { type: 'string' as const, multiple: f.type === 'list' },
          ]),
        ),
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    const code = (e as { code?: string }).code;
    const option = /'(-[^' ]+)/.exec((e as Error).message)?.[1] ?? '';
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
      throw new UsageError(`unknown option ${option}; valid options: ${valid()}`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE')
      throw new UsageError(`${option} is a switch and takes no value`);
    throw new UsageError((e as Error).message);
  }
  const raw = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const positionals = parsed.positionals;
  if (raw.help === true) return { values: {} as FlagValues<F>, positionals, rest, help: true };
  const max = command.positionals === undefined ? 0 : (command.maxPositionals ?? Infinity);
  if (positionals.length > max)
    throw new UsageError(
      max === 0
        ? `${command.name} takes no positional arguments, got '${positionals.join(' ')}' (options start with --)`
        : `${command.name} takes ${command.positionals}, got ${positionals.length} arguments`,
    );
  const values: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(flags)) {
    const v = raw[name];
    if (f.type === 'boolean') values[name] = v === true;
    else if (f.type === 'list') values[name] = (v as string[] | undefined) ?? [];
    else if (v === undefined) {
      if (f.required) throw new UsageError(`--${name} is required`);
      values[name] = f.default;
    } else values[name] = convert(name, f, v as string);
  }
  return { values: values as FlagValues<F>, positionals, rest, help: false };
}

function convert(name: string, f: Flag, v: string): string | number {
  if (f.type === 'number' || f.type === 'integer') {
    const n = v.trim() === '' ? NaN : Number(v);
    if (f.type === 'integer' && !Number.isInteger(n)) throw new UsageError(`--${name} must be an integer, got '${v}'`);
    if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`);
    return n;
  }
  if (f.choices && !f.choices.includes(v))
    throw new UsageError(`--${name} must be ${f.choices.slice(0, -1).join(', ')} or ${f.choices.at(-1)}, got '${v}'`);
  return v;
}

/** The program-level help: usage and each command's summary. */
export function formatProgramHelp(program: string, commands: readonly Command[]): string {
  const short = (c: Command): string => c.name.slice(program.length + 1);
  const width = Math.max(...commands.map((c) => short(c).length));
  return [
    `usage: ${program} <command> [options]   (${program} <command> --help for details)`,
    '',
    ...commands.map((c) => `  ${short(c).padEnd(width)}  ${c.summary}`),
  ].join('\n');
}
