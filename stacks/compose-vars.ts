/**
 * Variables the compose file cannot be deployed without: ${VAR:?message} and ${VAR?message}
 * make `docker compose` stop with an error, which Portainer reports only after the upload.
 */
export function requiredVariables(compose: string): string[] {
  const found = new Set<string>();
  // `$$` is compose's escaped dollar: `$${X:?}` is literal text, not a variable.
  for (const m of compose.matchAll(/(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):?\?[^}]*\}/g)) found.add(m[1]!);
  return [...found].sort();
}
