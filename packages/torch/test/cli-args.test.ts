// The declarative command-line parser (cli-args.ts): one flag table gives the
// parse and the --help text; unknown flags and bad values are errors naming the flag.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { defineCommand, formatHelp, parseCommand, UsageError } from '../src/cli-args.js';
import { launchCommand, parseLaunchArgs } from '../src/distributed/launch.js';

const cmd = defineCommand({
  name: 'tool run',
  summary: 'runs',
  flags: {
    num: { type: 'number', default: 64, help: 'how many' },
    steps: { type: 'integer', help: 'steps' },
    mode: { type: 'string', choices: ['dm', 'cm'], help: 'mode' },
    set: { type: 'list', value: 'k=v', help: 'override' },
    'no-png': { type: 'boolean', help: 'no PNGs' },
    nice: { type: 'integer', help: 'priority' },
  },
});

test('values, defaults, lists, switches and --flag=value', () => {
  const p = parseCommand(cmd, ['--steps', '3', '--set', 'a=1', '--set=b=2', '--no-png', '--mode=cm', '--nice', '-10']);
  assert.deepEqual(p.values, { num: 64, steps: 3, mode: 'cm', set: ['a=1', 'b=2'], 'no-png': true, nice: -10 });
  assert.equal(p.help, false);
  assert.equal(parseCommand(cmd, ['-h']).help, true);
  assert.equal(parseCommand(cmd, ['--num', '2', '--num', '5']).values.num, 5);
});

test('errors name the flag and the fix', () => {
  const throwsUsage = (argv: string[], re: RegExp): void =>
    assert.throws(
      () => parseCommand(cmd, argv),
      (e: unknown) => e instanceof UsageError && re.test(e.message),
    );
  throwsUsage(['--bogus'], /unknown option --bogus; valid options: --num, --steps, .*--help/);
  throwsUsage(['--num', 'x'], /--num must be a number, got 'x'/);
  throwsUsage(['--steps', '1.5'], /--steps must be an integer, got '1.5'/);
  throwsUsage(['--mode', 'xx'], /--mode must be dm or cm, got 'xx'/);
  throwsUsage(['--steps'], /--steps needs a value/);
  throwsUsage(['--no-png=1'], /--no-png is a switch/);
  throwsUsage(['stray'], /takes no positional arguments, got 'stray'/);
});

test('--help is generated from the table: every flag, its placeholder and default', () => {
  const help = formatHelp(cmd);
  assert.match(help, /^usage: tool run \[options\]/);
  for (const name of Object.keys(cmd.flags)) assert.match(help, new RegExp(`--${name}\\b`));
  assert.match(help, /--num N +how many \(default 64\)/);
  assert.match(help, /--mode dm\|cm/);
  assert.match(help, /--set k=v +override \(repeatable\)/);
});

test('the launcher: options end at the command', () => {
  assert.deepEqual(parseLaunchArgs(['--nproc-per-node', '2', 'x.js', '--nproc-per-node', '9', '--help']), {
    nprocPerNode: 2,
    command: ['x.js', '--nproc-per-node', '9', '--help'],
  });
  assert.equal(parseLaunchArgs(['--help']), null);
  assert.throws(() => parseLaunchArgs(['x.js']), /--nproc-per-node is required/);
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', '2']), /no command to launch/);
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', 'two', 'x.js']), /--nproc-per-node must be an integer/);
  assert.match(formatHelp(launchCommand('epg')), /^usage: epg launch \[options\] <command \.\.\.>/);
});
