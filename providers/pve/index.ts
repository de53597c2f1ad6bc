import { PveClient, type PveClientOptions } from "./client";
import { PveApi } from "./endpoints";

export { PveClient, isTransient, type PveAuth, type PveClientOptions, type RequestOptions } from "./client";
export { PveApi, Firewall, type FirewallScope, type FirewallRule, type GuestKind, type GuestConfig, type GuestStatus, type NodeStorage, type StorageVolume, type AplinfoEntry, type PciDevice, type PciMapping } from "./endpoints";
export { PveApiError, PveConnectionError, PveTaskError, PveTaskTimeoutError } from "./errors";
export { encodeForm, encodeSshKeys, type FormParams, type FormValue } from "./form";
export { parseUpid, isUpid, waitForTask, taskLog, type Upid, type TaskResult, type TaskStatus, type WaitOptions } from "./tasks";
export { PveConcurrency, KeyedSemaphore, processConcurrency } from "./concurrency";

/**
 * A client with typed endpoint helpers. Each call makes a fresh client; the
 * only state shared between clients is the per-endpoint clone/allocation
 * coordination (see processConcurrency).
 */
export function createPveClient(options: PveClientOptions): PveApi {
  return new PveApi(new PveClient(options));
}

/** What a dynamic provider keeps (as a secret) to reach the API with Phoenix's token. */
export interface ApiAccess {
  endpoint: string;
  tokenId: string;
  tokenSecret: string;
  caPem?: string;
  insecure?: boolean;
}

/** Runs `fn` with a token client for `access`, and closes the client after it. */
export async function withTokenApi<T>(access: ApiAccess, fn: (api: PveApi) => Promise<T>): Promise<T> {
  const api = createPveClient({ endpoint: access.endpoint, auth: { kind: "token", tokenId: access.tokenId, secret: access.tokenSecret }, tls: { caPem: access.caPem, insecure: access.insecure } });
  try {
    return await fn(api);
  } finally {
    api.close();
  }
}
