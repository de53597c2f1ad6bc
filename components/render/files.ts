/**
 * What every renderer returns: the files a guest should hold. The installer
 * ships them through the staged install script (install-script.ts); an offline
 * synth writes them to disk; the tests compare them with golden files.
 */

export interface RenderedFile {
  /** Absolute path inside the guest. */
  path: string;
  content: string;
  /** Octal permission bits; 0644 unless said otherwise. */
  mode?: string;
  /** user:group owning the file; root:root unless said otherwise. */
  owner?: string;
}

/** Fails on two files claiming one path: the second would silently win on the guest. */
export function fileList(files: RenderedFile[]): RenderedFile[] {
  const seen = new Set<string>();
  for (const f of files) {
    if (!f.path.startsWith("/")) throw new Error(`rendered file path ${f.path} must be absolute`);
    if (seen.has(f.path)) throw new Error(`two rendered files claim ${f.path}`);
    seen.add(f.path);
  }
  return files;
}

/** Quotes a value for the shell: the one quoting rule every rendered script uses. */
export { shellQuote as shQuote } from "../../providers/ssh/script";

/** Indents every non-empty line, for nesting generated blocks. */
export function indent(text: string, by: string): string {
  return text
    .split("\n")
    .map((l) => (l.length > 0 ? by + l : l))
    .join("\n");
}
