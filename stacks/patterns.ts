/**
 * The allow-lists for the stack file's free-form strings. Threat model: a stack
 * file may be edited by someone who cannot decrypt its secrets, and `pulumi
 * preview` runs their input in CI; every string that reaches a unit file, a
 * shell script, an nginx config, a PVE property string or an env file must be
 * refused at the boundary unless it is plainly harmless there. Each pattern
 * says what it allows and why; the renderers quote for their language too, so
 * a slip here is still not an injection.
 */
import { z } from "zod";

export interface TextPattern {
  re: RegExp;
  /** What the value may hold, for the error message ("must be …"). */
  allowed: string;
}

/** A zod string held to a pattern; the message names what is allowed (the loader prefixes the config path). */
export function text(p: TextPattern, maxLength = 255): z.ZodString {
  return z.string().max(maxLength, `must be at most ${maxLength} characters`).regex(p.re, `must be ${p.allowed}`);
}

// A path component that is not '.' or '..' and does not start with '-' (never read as an option).
const COMPONENT = "\\.?[A-Za-z0-9_][A-Za-z0-9_.-]*";

/**
 * A file of the project, relative to its directory (compose files, the PVE CA,
 * the node's host key): no absolute path, no '..', so a stack file cannot make
 * preview read files outside the checkout (e.g. /etc/shadow) into the program.
 */
export const PROJECT_FILE: TextPattern = {
  re: new RegExp(`^${COMPONENT}(/${COMPONENT})*$`),
  allowed: "a path relative to the project directory: letters, digits, '_', '-', '.', separated by '/', with no '..' and no leading '/'",
};

/**
 * An absolute path inside a guest (mount points, model directories): it lands
 * unquoted in PVE property strings (`mp=<path>`, where ',' and '=' split keys),
 * in systemd units (where '%' and '$' expand) and in shell scripts; '..' would
 * climb out of the intended directory.
 */
export const GUEST_PATH: TextPattern = {
  re: new RegExp(`^(/${COMPONENT})+$`),
  allowed: "absolute, such as /models/hf: letters, digits, '_', '-', '.', separated by '/', with no '..', spaces, ',' or '='",
};

/** A GGUF file inside the guest: a GUEST_PATH ending in .gguf. */
export const GGUF_PATH: TextPattern = {
  re: new RegExp(`^(/${COMPONENT})*/[A-Za-z0-9_][A-Za-z0-9_.-]*\\.gguf$`),
  allowed: "an absolute path to a .gguf file such as /models/gguf/gemma-3-4b-it-Q4_K_M.gguf (letters, digits, '_', '-', '.', '/'; no '..' or spaces)",
};

/**
 * What vLLM serves: a Hugging Face repo id (`Qwen/Qwen3-4B-Thinking-2507`:
 * owner/name of letters, digits, '-', '_', '.') or a directory in the guest.
 * It is an argv element of the unit and a word of the health script.
 */
export const HF_MODEL: TextPattern = {
  re: new RegExp(`^([A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?|(/${COMPONENT})+)$`),
  allowed: "a Hugging Face model id such as Qwen/Qwen3-4B-Thinking-2507, or an absolute path in the guest",
};

/**
 * A model name clients send and servers list: vLLM's and llama.cpp's served
 * name, an Ollama model (`qwen3:8b`, `hf.co/unsloth/Qwen3-8B-GGUF:Q4_K_M`). It
 * ends up in the unit's Description= and argv, the gateway's model table and
 * the health script; a newline there once added a [Service] section.
 */
export const MODEL_NAME: TextPattern = {
  re: /^[A-Za-z0-9][A-Za-z0-9_.:/-]*$/,
  allowed: "a model name such as Qwen3-4B-FP8, qwen3:8b or Qwen/Qwen3-4B: letters, digits, '_', '-', '.', ':', '/', starting with a letter or digit",
};

/**
 * A URL path prefix the gateway routes, or a health path: it becomes an nginx
 * `location` argument (where ';', '{', '}', quotes and spaces end or open
 * directives) and a Traefik health-check path. Segments never start with '.',
 * so '..' cannot appear.
 */
export const URL_PATH: TextPattern = {
  re: /^\/([A-Za-z0-9_~-][A-Za-z0-9_.~-]*\/?)*$/,
  allowed: "a URL path such as /qdrant/ or /v1/models: letters, digits, '_', '-', '.', '~' between '/', with no spaces, quotes, ';', '{', '}', '$' or '..'",
};

/** A Unix or Portainer user name: goes into ssh and API calls, never anything wider. */
export const USER_NAME: TextPattern = {
  re: /^[a-z_][a-z0-9_-]{0,31}$/,
  allowed: "a user name: lower-case letters, digits, '_', '-', starting with a letter or '_', up to 32 characters",
};

/** A name referring to something else in the stack or to a Step-CA provisioner: plain identifiers. */
export const IDENTIFIER: TextPattern = {
  re: /^[A-Za-z0-9][A-Za-z0-9_.-]*$/,
  allowed: "letters, digits, '_', '-', '.', starting with a letter or digit",
};

/** A dataset reference, pool/name as in host.zfs.datasets: no '..', no spaces, nothing a shell or PVE treats specially. */
export const DATASET_REF: TextPattern = {
  re: /^[A-Za-z0-9][A-Za-z0-9_.:-]*(\/[A-Za-z0-9][A-Za-z0-9_.:-]*)+$/,
  allowed: "a dataset as pool/name, e.g. fastData/shared-models",
};

/** A ZFS pool name (a single dataset component). */
export const ZFS_NAME: TextPattern = {
  re: /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/,
  allowed: "a ZFS name: letters, digits, '_', '-', '.', ':', starting with a letter or digit",
};

/**
 * A disk of a pool, by its stable name: one name directly under
 * /dev/disk/by-id/ (those names hold no '/'), so '..' cannot walk elsewhere.
 */
export const DISK_BY_ID: TextPattern = {
  re: /^\/dev\/disk\/by-id\/[A-Za-z0-9_][A-Za-z0-9_.:+@-]*$/,
  allowed: "a /dev/disk/by-id/ path such as /dev/disk/by-id/nvme-Samsung_SSD_990_PRO_2TB_S7KHNJ0X100001 (/dev/sdX names change between boots; no '..' or further '/')",
};

/**
 * A ZFS property value (lz4, off, 64K, 1500G, zstd-3): it is passed to
 * `zfs set name=value` and `zpool create -O name=value`; ZFS values are plain
 * words, and '$', quotes, spaces or ',' would mean something to the shell or to
 * option lists.
 */
export const ZFS_VALUE: TextPattern = {
  re: /^[A-Za-z0-9][A-Za-z0-9_.:@+-]*$/,
  allowed: "a ZFS property value such as lz4, off, 64K or 1500G: letters, digits, '_', '-', '.', ':', '@', '+'",
};

/**
 * ZFS properties Phoenix must own, because they move or hide a dataset while
 * Phoenix assumes it is mounted at /<pool>/<name> (bind mounts, storages, NFS
 * exports, snippets), or export it past /etc/exports. From OpenZFS zfsprops(7)
 * (openzfs/zfs be7657e3f2, man/man7/zfsprops.7).
 */
export const RESERVED_ZFS_PROPERTIES: Readonly<Record<string, string>> = {
  // "Controls the mount point used for this file system": /var would mount an empty file system over the host's /var.
  mountpoint: "it moves the dataset away from /<pool>/<name>, where Phoenix mounts, registers and exports it (mountpoint: /var would cover the host's /var)",
  // "If this property is set to off, the file system cannot be mounted"; noauto: "not mounted automatically".
  canmount: "off or noauto leave the dataset unmounted, so guests would bind-mount the empty directory beneath it",
  // "Controls whether the dataset is managed from a non-global zone or namespace" (zfs-zone(8)).
  zoned: "it hands the dataset's mounting to a namespace, away from the host",
  // "Delegates dataset visibility and administration to all user namespaces owned by the specified UID."
  zoned_uid: "it hands the dataset's visibility and administration to a user namespace",
  // "Controls whether the file system is shared via NFS": an export past host.nfsExports and /etc/exports.
  sharenfs: "it exports the dataset over NFS behind host.nfsExports' back: list the export in host.nfsExports",
  sharesmb: "it shares the dataset over SMB, which Phoenix does not manage",
  // An encrypted dataset stays unmounted until its key is loaded, and Phoenix loads no keys.
  encryption: "an encrypted dataset is not mounted until its key is loaded, and Phoenix loads no keys",
  keyformat: "an encrypted dataset is not mounted until its key is loaded, and Phoenix loads no keys",
  keylocation: "an encrypted dataset is not mounted until its key is loaded, and Phoenix loads no keys",
};

/** An environment variable's name, in unit files, env files and compose. */
export const ENV_NAME: TextPattern = {
  re: /^[A-Za-z_][A-Za-z0-9_]*$/,
  allowed: "a variable name: letters, digits and '_', not starting with a digit",
};

// Printable ASCII without what a dotenv reader interprets: '$' (expansion), quotes and '\' (quoting), '#' (comments), '`'.
const ENV_CHAR = "A-Za-z0-9_.,:;/@+=%?&*!~^()\\[\\]{}<>|-";

/**
 * A Docker stack variable's value. Portainer writes the stack's variables as
 * `name=value` lines that compose reads as an env file, where a newline starts
 * a new variable, unquoted values get `$VAR` expansion, quotes change the
 * parsing and ` #` starts a comment (docker/docs compose/environment-variables/
 * env-file.md). Spaces are allowed inside, not at either end (they are trimmed).
 */
export const ENV_VALUE: TextPattern = {
  re: new RegExp(`^([${ENV_CHAR}]([ ${ENV_CHAR}]*[${ENV_CHAR}])?)?$`),
  allowed: "printable ASCII without newlines, '$', quotes, '`', '\\' or '#', and no leading or trailing space",
};

/**
 * Control characters (C0, DEL, C1) and Unicode line breaks: what no one-line
 * value may hold, in the schema and, as a second line of defence, in every
 * renderer that writes a value into a line-based format.
 */
// eslint-disable-next-line no-control-regex -- the point is to find them
export const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/**
 * Free text for people: descriptions, comments, CA names, GPU models. One line
 * of printable characters: it is stored in PVE config files (where a newline
 * starts another key), certificate subjects and API fields.
 */
export const FREE_TEXT: TextPattern = {
  re: new RegExp(`^[^${CONTROL_CHARS.source.slice(1, -1)}]*$`),
  allowed: "one line of text without control characters",
};

/** A time zone name from the tz database, e.g. Europe/Berlin or Etc/GMT+5. */
export const TIME_ZONE: TextPattern = {
  re: /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_][A-Za-z0-9_+-]*)*$/,
  allowed: "a tz database name such as Europe/Berlin or Etc/UTC",
};
