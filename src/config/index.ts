/** Settings: one schema (`schema.ts`) feeding library options, CLI flags, ECHO_* env vars, config files and --help. */
export { DEFAULTS, SETTINGS, resolveSettings } from './schema.js';
export type { SettingDefinition, SettingKind, Settings } from './schema.js';
export { helpText, loadSettings } from './load.js';
export type { CliParse } from './load.js';
