/**
 * The bridged provider's access resources, as bpg v0.111.1 makes their calls (the e2e
 * translations for UserLegacy, user.TokenLegacy and AclLegacy; test/e2e/translations.ts).
 */
import type { PveApi } from "../../providers/pve";
import type { Translation } from "./engine";

type Inputs = Record<string, unknown>;
const e = encodeURIComponent;
const bool = (v: unknown, dflt: boolean): string => ((v === undefined ? dflt : Boolean(v)) ? "1" : "0");

/**
 * UserLegacy: bpg v0.111.1 proxmoxtf/resource/user.go. userCreate POSTs /access/users with every
 * field (empty strings, enable, expire as a Unix time, the password only when set: users_types.go
 * `url:"password,omitempty"`); userUpdate PUTs the same but the id and password; userDelete
 * DELETEs the user. Phoenix sets no acls block, so no ACL calls are made from here.
 */
export function userTranslation(api: PveApi): Translation {
  const path = (id: string) => `/access/users/${e(id)}`;
  const fields = (i: Inputs) => ({
    comment: String(i.comment ?? ""),
    email: String(i.email ?? ""),
    enable: bool(i.enabled, true),
    // expiration_date defaults to the Unix epoch, sent as 0.
    expire: String(i.expirationDate === undefined ? 0 : Math.floor(Date.parse(String(i.expirationDate)) / 1000)),
    firstname: String(i.firstName ?? ""),
    keys: String(i.keys ?? ""),
    lastname: String(i.lastName ?? ""),
  });
  const find = async (id: string) => (await api.client.get<Inputs[]>("/access/users")).find((u) => u.userid === id);
  return {
    replaceOnChanges: ["userId", "password"],
    async create(i) {
      const id = String(i.userId);
      await api.client.post("/access/users", { userid: id, ...fields(i), ...(i.password ? { password: String(i.password) } : {}) });
      return { id, outputs: await api.client.get<Inputs>(path(id)) };
    },
    async update(entry, i) {
      await api.client.put(path(entry.id), fields(i));
      return api.client.get<Inputs>(path(entry.id));
    },
    async delete(entry) {
      if (await find(entry.id)) await api.client.delete(path(entry.id));
    },
    read: async (entry) => ((await find(entry.id)) ? api.client.get<Inputs>(path(entry.id)) : undefined),
  };
}

/**
 * user.TokenLegacy: bpg v0.111.1 fwprovider/access/resource_user_token.go with
 * proxmox/access/user_token.go. Create POSTs /access/users/{userid}/token/{tokenid} with comment,
 * expire and privsep (default true) and keeps `<full-tokenid>=<value>` as `value` (CreateUserToken),
 * which PVE returns only then; Update PUTs comment and privsep; Delete DELETEs the token; user_id
 * and token_name require replacement.
 */
export function tokenTranslation(api: PveApi): Translation {
  const path = (i: Inputs) => `/access/users/${e(String(i.userId))}/token/${e(String(i.tokenName))}`;
  const body = (i: Inputs) => ({ ...(i.comment !== undefined ? { comment: String(i.comment) } : {}), privsep: bool(i.privilegesSeparation, true) });
  const exists = async (i: Inputs) => Object.keys((await api.client.get<Inputs>(`/access/users/${e(String(i.userId))}`).catch(() => ({ tokens: {} }))).tokens ?? {}).includes(String(i.tokenName));
  return {
    replaceOnChanges: ["userId", "tokenName"],
    async create(i) {
      const res = await api.client.post<{ "full-tokenid": string; value: string }>(path(i), body(i));
      return { id: `${String(i.userId)}!${String(i.tokenName)}`, outputs: { ...(await api.client.get<Inputs>(path(i))), value: `${res["full-tokenid"]}=${res.value}` } };
    },
    async update(entry, i) {
      await api.client.put(path(i), body(i));
      return { ...(await api.client.get<Inputs>(path(i))), value: entry.outputs.value };
    },
    async delete(entry) {
      if (await exists(entry.inputs)) await api.client.delete(path(entry.inputs));
    },
    read: async (entry) => ((await exists(entry.inputs)) ? { ...(await api.client.get<Inputs>(path(entry.inputs))), value: entry.outputs.value } : undefined),
  };
}

/**
 * AclLegacy: bpg v0.111.1 fwprovider/access/resource_acl.go with model_acl.go intoUpdateBody and
 * proxmox/access/acl.go UpdateACL: Create PUTs /access/acl with path, propagate, the one role and
 * the one user, token or group; Update PUTs the old entry with delete=1, then the new one; Delete
 * PUTs the entry with delete=1. Its id is `<path>?<entity>?<role>` (generateID).
 */
export function aclTranslation(api: PveApi): Translation {
  const body = (i: Inputs) => ({
    path: String(i.path),
    propagate: bool(i.propagate, true),
    roles: String(i.roleId),
    ...(i.userId !== undefined ? { users: String(i.userId) } : {}),
    ...(i.tokenId !== undefined ? { tokens: String(i.tokenId) } : {}),
    ...(i.groupId !== undefined ? { groups: String(i.groupId) } : {}),
  });
  const entity = (i: Inputs) => String(i.groupId ?? "") + String(i.tokenId ?? "") + String(i.userId ?? "");
  const find = async (i: Inputs) => (await api.client.get<Inputs[]>("/access/acl")).find((a) => a.path === i.path && a.ugid === entity(i) && a.roleid === i.roleId);
  return {
    async create(i) {
      await api.client.put("/access/acl", body(i));
      return { id: `${String(i.path)}?${entity(i)}?${String(i.roleId)}`, outputs: { ...(await find(i)) } };
    },
    async update(entry, i) {
      await api.client.put("/access/acl", { ...body(entry.inputs), delete: "1" });
      await api.client.put("/access/acl", body(i));
      return { ...(await find(i)) };
    },
    async delete(entry) {
      if (await find(entry.inputs)) await api.client.put("/access/acl", { ...body(entry.inputs), delete: "1" });
    },
    read: async (entry) => find(entry.inputs),
  };
}
