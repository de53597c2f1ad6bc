/**
 * Users, API tokens and ACLs, as pve-access-control 9.1.1 keeps them in user.cfg
 * (src/PVE/API2/User.pm, src/PVE/API2/ACL.pm): what Phoenix's metrics user
 * needs. Roles are the built-in ones (src/PVE/AccessControl.pm create_roles).
 */
import * as crypto from "node:crypto";
import { flag, int, req, str, type Handler, type HandlerCtx } from "./core";
import { splitList } from "./formats";
import type { SimState } from "./state";
import { die, paramError } from "./tasks";

interface Token {
  privsep: number;
  expire?: number;
  comment?: string;
}

interface User {
  enable: number;
  expire: number;
  comment?: string;
  tokens: Map<string, Token>;
}

interface AclEntry {
  path: string;
  type: "user" | "token";
  ugid: string;
  roleid: string;
  propagate: number;
}

interface AccessState {
  users: Map<string, User>;
  acl: AclEntry[];
}

/** The built-in roles (pve-access-control 9.1.1 src/PVE/AccessControl.pm: $special_roles and the grouped PVE*Admin/User/Auditor roles). */
const BUILT_IN_ROLES = new Set(["NoAccess", "Administrator", "PVEAdmin", "PVEAuditor", "PVETemplateUser", "PVEVMAdmin", "PVEVMUser", "PVEDatastoreAdmin", "PVEDatastoreUser", "PVESysAdmin", "PVEUserAdmin", "PVEPoolAdmin", "PVEPoolUser", "PVESDNAdmin", "PVESDNUser", "PVEMappingAdmin", "PVEMappingUser"]);

const states = new WeakMap<SimState, AccessState>();

/** The simulator's user.cfg: root@pam exists from the install. */
export function accessOf(state: SimState): AccessState {
  let s = states.get(state);
  if (!s) {
    s = { users: new Map([["root@pam", { enable: 1, expire: 0, tokens: new Map() }]]), acl: [] };
    states.set(state, s);
  }
  return s;
}

function userOf(ctx: HandlerCtx): [string, User] {
  const userid = req(ctx, "userid");
  const user = accessOf(ctx.sim.state).users.get(userid);
  // PVE::AccessControl::check_user_exist
  if (!user) throw die(`no such user ('${userid}')`);
  return [userid, user];
}

const tokenOut = (t: Token) => ({ privsep: t.privsep, ...(t.expire !== undefined ? { expire: t.expire } : {}), ...(t.comment !== undefined ? { comment: t.comment } : {}) });

export function accessHandlers(): Record<string, Handler> {
  return {
    "GET /access/users": (ctx) =>
      [...accessOf(ctx.sim.state).users].map(([userid, u]) => ({ userid, enable: u.enable, expire: u.expire, ...(u.comment !== undefined ? { comment: u.comment } : {}) })),
    "POST /access/users": (ctx) => {
      const userid = req(ctx, "userid");
      const users = accessOf(ctx.sim.state).users;
      // User.pm create_user: "user '$username' already exists"; the realm must exist (pam and pve always do here).
      if (users.has(userid)) throw die(`create user failed: user '${userid}' already exists`);
      const realm = userid.slice(userid.lastIndexOf("@") + 1);
      if (realm !== "pve" && realm !== "pam") throw die(`create user failed: domain '${realm}' does not exist`);
      const comment = str(ctx, "comment");
      users.set(userid, { enable: flag(ctx, "enable") === false ? 0 : 1, expire: int(ctx, "expire") ?? 0, ...(comment ? { comment } : {}), tokens: new Map() });
      return null;
    },
    "GET /access/users/{userid}": (ctx) => {
      const [, u] = userOf(ctx);
      return { enable: u.enable, expire: u.expire, ...(u.comment !== undefined ? { comment: u.comment } : {}), tokens: Object.fromEntries([...u.tokens].map(([id, t]) => [id, tokenOut(t)])) };
    },
    "PUT /access/users/{userid}": (ctx) => {
      const [, u] = userOf(ctx);
      const enable = flag(ctx, "enable");
      if (enable !== undefined) u.enable = enable ? 1 : 0;
      const expire = int(ctx, "expire");
      if (expire !== undefined) u.expire = expire;
      const comment = str(ctx, "comment");
      if (comment !== undefined) u.comment = comment;
      return null;
    },
    "DELETE /access/users/{userid}": (ctx) => {
      const [userid] = userOf(ctx);
      const access = accessOf(ctx.sim.state);
      access.users.delete(userid);
      // PVE::AccessControl::delete_user_acl and the user's tokens' entries go with it.
      access.acl = access.acl.filter((a) => !(a.type === "user" && a.ugid === userid) && !(a.type === "token" && a.ugid.startsWith(`${userid}!`)));
      return null;
    },
    "GET /access/users/{userid}/token/{tokenid}": (ctx) => {
      const [userid, u] = userOf(ctx);
      const tokenid = req(ctx, "tokenid");
      const t = u.tokens.get(tokenid);
      if (!t) throw die(`no such token '${tokenid}' for user '${userid}'`);
      return tokenOut(t);
    },
    "POST /access/users/{userid}/token/{tokenid}": (ctx) => {
      const [userid, u] = userOf(ctx);
      const tokenid = req(ctx, "tokenid");
      if (u.tokens.has(tokenid)) throw paramError({ tokenid: "Token already exists." });
      const comment = str(ctx, "comment");
      const expire = int(ctx, "expire");
      // User.pm generate_token: privsep defaults to 1; the value is a fresh UUID (PVE::TokenConfig::generate_token).
      const t: Token = { privsep: flag(ctx, "privsep") === false ? 0 : 1, ...(expire !== undefined ? { expire } : {}), ...(comment ? { comment } : {}) };
      u.tokens.set(tokenid, t);
      return { info: tokenOut(t), value: crypto.randomUUID(), "full-tokenid": `${userid}!${tokenid}` };
    },
    "PUT /access/users/{userid}/token/{tokenid}": (ctx) => {
      const [userid, u] = userOf(ctx);
      const tokenid = req(ctx, "tokenid");
      const t = u.tokens.get(tokenid);
      if (!t) throw die(`no such token '${tokenid}' for user '${userid}'`);
      const privsep = flag(ctx, "privsep");
      if (privsep !== undefined) t.privsep = privsep ? 1 : 0;
      const comment = str(ctx, "comment");
      if (comment !== undefined) t.comment = comment;
      for (const k of splitList(str(ctx, "delete") ?? "")) {
        if (k === "comment") delete t.comment;
        else if (k === "expire") delete t.expire;
        else throw paramError({ delete: `unknown option '${k}'` });
      }
      return tokenOut(t);
    },
    "DELETE /access/users/{userid}/token/{tokenid}": (ctx) => {
      const [userid, u] = userOf(ctx);
      const tokenid = req(ctx, "tokenid");
      if (!u.tokens.delete(tokenid)) throw die(`no such token '${tokenid}' for user '${userid}'`);
      const access = accessOf(ctx.sim.state);
      access.acl = access.acl.filter((a) => !(a.type === "token" && a.ugid === `${userid}!${tokenid}`));
      return null;
    },
    "GET /access/acl": (ctx) => accessOf(ctx.sim.state).acl.map((a) => ({ ...a })),
    "PUT /access/acl": (ctx) => {
      const access = accessOf(ctx.sim.state);
      const path = req(ctx, "path");
      // ACL.pm update_acl: PVE::AccessControl::normalize_path, then each role, user and token must exist.
      if (!path.startsWith("/") || path.includes("//")) throw paramError({ path: `invalid ACL path '${path}'` });
      const del = flag(ctx, "delete") ?? false;
      const propagate = flag(ctx, "propagate") === false ? 0 : 1;
      const subjects: Array<{ type: "user" | "token"; ugid: string }> = [];
      for (const userid of splitList(str(ctx, "users") ?? "")) {
        if (!access.users.has(userid)) throw die(`ACL update failed: user '${userid}' does not exist`);
        subjects.push({ type: "user", ugid: userid });
      }
      for (const full of splitList(str(ctx, "tokens") ?? "")) {
        const [userid, tokenid] = full.split("!");
        if (!access.users.get(userid!)?.tokens.has(tokenid ?? "")) throw die(`ACL update failed: no such token '${tokenid ?? ""}' for user '${userid!}'`);
        subjects.push({ type: "token", ugid: full });
      }
      for (const roleid of splitList(req(ctx, "roles"))) {
        if (!del && !BUILT_IN_ROLES.has(roleid)) throw die(`ACL update failed: role '${roleid}' does not exist`);
        for (const s of subjects) {
          access.acl = access.acl.filter((a) => !(a.path === path && a.type === s.type && a.ugid === s.ugid && a.roleid === roleid));
          if (!del) access.acl.push({ path, ...s, roleid, propagate });
        }
      }
      return null;
    },
  };
}
