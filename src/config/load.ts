/**
 * Settings for the CLI: flags > ECHO_* env vars > config file (JSON/YAML) > defaults, every layer
 * parsed by the one schema in `schema.ts`. Pure: reads argv, the env object it is given and the
 * config file, never touches process.exit or stdout (those belong to src/cli, STYLE practice 8).
 */
import { readFileSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { ConfigError } from '../errors.js';
import { DEFAULTS, mergeSettings, parseLayer, SETTINGS } from './schema.js';
import type { SettingDefinition, Settings } from './schema.js';

/** YAML is parsed only for a YAML config file: the parser is loaded then, not at every start. */
function parseYaml(text: string): unknown {
  const yaml = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yaml.parse(text);
}

export interface CliParse {
  command: 'serve' | 'help' | 'version' | string;
  settings: Readonly<Settings>;
  rest: string[];
  configPath?: string;
}

const FLAGS: ReadonlyMap<string, SettingDefinition> = new Map(SETTINGS.map((d) => [d.flag, d]));
const CONFIG_FLAG = '--config';
const CONFIG_ENV = 'ECHO_CONFIG';

interface Tokens {
  command: string | undefined;
  /** --help / --version anywhere win over the command word. */
  forced: 'help' | 'version' | undefined;
  rest: string[];
  /** Raw flag values keyed by setting name. */
  flags: Record<string, unknown>;
  config: string | undefined;
  /** The first problem; kept rather than thrown so that `--help` still works next to a typo. */
  error: ConfigError | undefined;
}

function tokenize(argv: readonly string[]): Tokens {
  const t: Tokens = { command: undefined, forced: undefined, rest: [], flags: {}, config: undefined, error: undefined };
  const problem = (setting: string, message: string): void => {
    t.error ??= new ConfigError(setting, message);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      t.rest.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      if (t.command === undefined) t.command = arg;
      else t.rest.push(arg);
      continue;
    }
    if (arg === '-h' || arg === '--help') {
      t.forced ??= 'help';
      continue;
    }
    if (arg === '-v' || arg === '--version') {
      t.forced ??= 'version';
      continue;
    }

    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    // Booleans never take the next word (`--insecure serve` must keep `serve` as the command).
    const takeValue = (): string | undefined => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) {
        problem(name, 'missing value');
        return undefined;
      }
      i++;
      return next;
    };
    const def = FLAGS.get(name);
    const negated = name.startsWith('--no-') ? FLAGS.get(`--${name.slice(5)}`) : undefined;
    if (name === CONFIG_FLAG) {
      t.config = takeValue() ?? t.config;
    } else if (def?.kind === 'bool') {
      t.flags[def.name] = inline ?? true;
    } else if (def) {
      const value = takeValue();
      const prev = t.flags[def.name];
      // A repeated list flag adds to the list: `--ws-path /a --ws-path /b`.
      if (value !== undefined) {
        t.flags[def.name] = def.kind === 'list' && typeof prev === 'string' ? `${prev},${value}` : value;
      }
    } else if (negated?.kind === 'bool') {
      if (inline !== undefined) problem(name, `takes no value; use ${negated.flag}=${inline} instead`);
      else t.flags[negated.name] = false;
    } else {
      problem(name, `unknown flag (see --help)`);
    }
  }
  return t;
}

function envLayer(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const def of SETTINGS) {
    const value = env[def.env];
    // `ECHO_X=` in an env file or compose file means "not set", not "set to empty".
    if (value !== undefined && value !== '') out[def.name] = value;
  }
  return out;
}

/** Read a JSON/YAML config file; `shown` is the path as the user wrote it, used in errors. */
function fileLayer(path: string, shown: string, source: string): Partial<Settings> {
  const ext = extname(path).toLowerCase();
  if (ext !== '.json' && ext !== '.yaml' && ext !== '.yml') {
    throw new ConfigError(source, `'${shown}' must end in .json, .yaml or .yml`);
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConfigError(source, `cannot read '${shown}' (${code})`);
  }
  let data: unknown;
  try {
    // Editors on Windows may save a BOM, which JSON.parse rejects.
    data = ext === '.json' ? JSON.parse(text.replace(/^\uFEFF/, '')) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(shown, `invalid ${ext === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  if (data === null || data === undefined) return {}; // an empty file sets nothing
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(shown, 'must contain a mapping of setting names to values');
  }
  return parseLayer(data as Record<string, unknown>, { file: shown });
}

/**
 * argv = process.argv.slice(2). Commands: first non-flag word ('serve' default); later words and
 * everything after `--` go to `rest`. `--config FILE` (or ECHO_CONFIG) loads JSON/YAML by extension
 * (.json/.yaml/.yml), relative to `opts.cwd`. `--help`/`-h` => command 'help'; `--version`/`-v` =>
 * 'version' (both return DEFAULTS instead of throwing when settings are invalid). Flags: `--flag
 * value` and `--flag=value`; booleans `--insecure`, `--no-insecure`, `--insecure=false`. An unknown
 * flag => ConfigError naming it. A flag missing its value => ConfigError. Every layer is validated,
 * even where a higher one overrides it, so a broken file is reported before it matters.
 */
export function loadSettings(argv: string[], env: NodeJS.ProcessEnv, opts: { cwd?: string } = {}): CliParse {
  const t = tokenize(argv);
  const command = t.forced ?? t.command ?? 'serve';
  try {
    if (t.error) throw t.error;
    // Flags first, so that the error reported is about what was just typed.
    const flags = parseLayer(t.flags, 'flag');
    const fromEnv = parseLayer(envLayer(env), 'env');
    const envConfig = env[CONFIG_ENV] === '' ? undefined : env[CONFIG_ENV];
    const shown = t.config ?? envConfig;
    const configPath = shown === undefined ? undefined : resolve(opts.cwd ?? process.cwd(), shown);
    const file =
      configPath === undefined || shown === undefined
        ? {}
        : fileLayer(configPath, shown, t.config !== undefined ? CONFIG_FLAG : CONFIG_ENV);
    const settings = mergeSettings(file, fromEnv, flags);
    const result: CliParse = { command, settings, rest: t.rest };
    if (configPath !== undefined) result.configPath = configPath;
    return result;
  } catch (err) {
    // Help and version must work even with a broken environment or config file.
    if ((command === 'help' || command === 'version') && err instanceof ConfigError) {
      return { command, settings: DEFAULTS, rest: t.rest };
    }
    throw err;
  }
}

const KIB_UNITS: ReadonlyArray<[number, string]> = [
  [2 ** 30, 'GiB'],
  [2 ** 20, 'MiB'],
  [2 ** 10, 'KiB'],
];
const MS_UNITS: ReadonlyArray<[number, string]> = [
  [3_600_000, 'h'],
  [60_000, 'm'],
  [1000, 's'],
];

/** `1048576 bytes (1 MiB)`, `30000 ms (30s)`: the exact number plus a readable form. */
function humanize(n: number, units: ReadonlyArray<[number, string]>, sep: string): string {
  const hit = units.find(([size]) => n !== 0 && n % size === 0);
  return hit ? ` (${n / hit[0]}${sep}${hit[1]})` : '';
}

function placeholder(def: SettingDefinition): string {
  switch (def.kind) {
    case 'port':
      return '<port|off>';
    case 'duration':
      return '<ms|30s|5m>';
    case 'bytes':
      return '<bytes|64KiB|1MiB>';
    case 'enum':
      return `<${(def.choices ?? []).join('|')}>`;
    case 'list':
      return '<a,b,...>';
    case 'path':
      return '<path|off>';
    case 'bool':
      return '';
    default:
      return `<${[def.kind, ...Object.keys(def.words ?? {})].join('|')}>`;
  }
}

function describeDefault(def: SettingDefinition): string {
  if (def.defaultText !== undefined) return def.defaultText;
  const v = def.default;
  if (v === null) return 'off';
  if (Array.isArray(v)) return v.join(',');
  if (typeof v !== 'number') return String(v);
  const unit = def.unit ? ` ${def.unit}` : '';
  if (def.kind === 'bytes') return `${v}${unit}${humanize(v, KIB_UNITS, ' ')}`;
  if (def.kind === 'duration') return `${v}${unit}${humanize(v, MS_UNITS, '')}`;
  return `${v}${unit}`;
}

function describeRange(def: SettingDefinition): string | undefined {
  const unit = def.unit ? ` ${def.unit}` : '';
  if (def.kind === 'port') return `0..65535`;
  if (def.max !== undefined) return `${def.min ?? 0}..${def.max}${unit}`;
  if (def.min !== undefined && def.min > 0) return `>= ${def.min}${unit}`;
  return undefined;
}

function optionHelp(def: SettingDefinition): string {
  const head = def.kind === 'bool' ? `${def.flag}, --no-${def.flag.slice(2)}` : `${def.flag} ${placeholder(def)}`;
  const facts = [`env ${def.env}`, `file key ${def.name}`, `default ${describeDefault(def)}`];
  const range = describeRange(def);
  if (range !== undefined) facts.push(`range ${range}`);
  return `  ${head}\n      ${def.doc}\n      (${facts.join('; ')})`;
}

export function helpText(): string {
  return [
    'Usage: echoserver [command] [options] [--] [args...]',
    '',
    'Commands:',
    '  serve     Run the echo server (default)',
    '  probe URL Connect to a server (ws://, wss://, tcp://, tls://, unix:PATH), send one message and',
    '            check its echo; prints one JSON line, exits 0 (ok) or 1. With --insecure the TLS',
    '            certificate is not verified (use NODE_EXTRA_CA_CERTS to trust a self-signed one).',
    "  probe self  The same against this configuration's own listener (WebSocket, else TCP, else",
    '            Unix socket, on loopback), with the same settings as serve: a container health',
    '            check. Its own certificate is not verified (it names the service, not 127.0.0.1).',
    '            With --auth on, it checks /readyz (admin port, else WebSocket port) instead.',
    '  bench URL Load generator: throughput, latency percentiles and errors of a server, every echo',
    '            verified (ws://, wss://, tcp://, tls://, unix:PATH); see echoserver bench --help.',
    '  help      Show this help (also -h, --help)',
    '  version   Print the version (also -v, --version)',
    '',
    'Options:',
    `  ${CONFIG_FLAG} <file>`,
    '      Load settings from a JSON or YAML file (.json, .yaml, .yml); keys are the camelCase',
    '      "file key" names below; an unknown key is an error.',
    `      (env ${CONFIG_ENV})`,
    ...SETTINGS.map(optionHelp),
    '',
    'Values:',
    '  durations  whole milliseconds, or with a unit: 500ms, 1.5s, 5m, 1h',
    '  sizes      whole bytes, or 64KiB, 1MiB, 1GiB (1024-based), 4kb, 1mb (1000-based); any case',
    '  ports      0..65535, 0 picks a free port; off, none or false disable the listener',
    '  booleans   --flag, --no-flag or --flag=true|false; in env and files true/false, 1/0, yes/no, on/off',
    '',
    'Precedence: command-line flags > ECHO_* environment variables > config file > defaults.',
    'Empty environment variables count as unset.',
    '',
    'Exit codes: 0 ok, 1 runtime error, 2 invalid settings.',
    '',
  ].join('\n');
}
