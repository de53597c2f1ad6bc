/**
 * Engine settings become command-line options by name, and every option is
 * checked against the list of options the pinned engine version accepts, so
 * a setting the engine would reject (a typo, a flag renamed in a newer
 * release) fails the render instead of crash-looping the unit on the guest.
 */
import type { OptionList } from "../../stacks/options/option-list";

const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export interface SettingsToArgs {
  /** Settings that are not options (engine, version) or that the renderer turns into options itself. */
  skip: ReadonlySet<string>;
  /** Settings whose option name is not the kebab-cased setting name. */
  rename?: Readonly<Record<string, string>>;
}

/**
 * `{ maxModelLen: 8192, trustRemoteCode: true }` → `--max-model-len 8192 --trust-remote-code`.
 * False booleans and unset values are left out: the engine's default applies.
 */
export function settingsToArgs(settings: object, how: SettingsToArgs): string[] {
  const args: string[] = [];
  for (const [key, value] of Object.entries(settings)) {
    if (how.skip.has(key) || value === undefined || value === false) continue;
    const flag = how.rename?.[key] ?? `--${kebab(key)}`;
    if (value === true) args.push(flag);
    else if (typeof value === "string" || typeof value === "number") args.push(flag, String(value));
    else throw new Error(`setting ${key} has a ${typeof value} value; only strings, numbers and booleans become options`);
  }
  return args;
}

/** The options among argv: arguments starting with `-` that are not negative numbers, without any `=value`. */
export function flagsOf(argv: readonly string[]): string[] {
  return argv.filter((a) => a.startsWith("-") && !/^-\d/.test(a)).map((a) => a.split("=")[0]!);
}

/** Fails on the first name (option or environment variable) the pinned engine does not accept. */
export function assertListed(names: readonly string[], list: OptionList): void {
  const unknown = names.find((n) => !list.options.has(n));
  if (unknown !== undefined) {
    throw new Error(`${list.engine} ${list.version} does not accept ${unknown} (see ${list.source}); check the setting it comes from for a typo`);
  }
}
