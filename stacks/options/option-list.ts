/** A pinned engine version's accepted options, and how a version's list is picked. */

export interface OptionList {
  engine: string;
  version: string;
  /** Where the list was taken from, for the error message. */
  source: string;
  options: ReadonlySet<string>;
}

/** Picks the list for the pinned version; an unlisted version is refused, not guessed. */
export function optionListFor(lists: readonly OptionList[], engine: string, version: string): OptionList {
  const list = lists.find((l) => l.version === version);
  if (!list) {
    const known = lists.map((l) => l.version).join(", ");
    throw new Error(`${engine} ${version}: Phoenix has no list of the options this version accepts (it knows ${known}); pin one of those, or add the version's list beside the renderer`);
  }
  return list;
}
