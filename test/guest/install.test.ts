/**
 * The Command provider's connection made from an SSH connection (components/guest/install.ts):
 * one Output per connection, shared by every command over it, with the fields the provider names.
 */
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { commandConnection } from "../../components/guest/install";
import type { SshConnection } from "../../providers/ssh";

const valueOf = <T>(o: pulumi.Output<T>): Promise<T> => new Promise((resolve) => o.apply((v) => resolve(v)));

describe("commandConnection", () => {
  const ssh: SshConnection = { host: "10.0.0.13", username: "root", privateKey: "KEY", hostKey: "ssh-ed25519 AAAA" };

  it("is one Output per connection, whether the connection is a value or an Output", () => {
    expect(commandConnection(ssh)).toBe(commandConnection(ssh));
    const out = pulumi.output(ssh);
    expect(commandConnection(out)).toBe(commandConnection(out));
    expect(commandConnection(out)).not.toBe(commandConnection(ssh));
  });

  it("names the fields as the Command provider does, port 22 when none is given", async () => {
    expect(await valueOf(commandConnection(ssh))).toEqual({ host: "10.0.0.13", port: 22, user: "root", privateKey: "KEY", hostKey: "ssh-ed25519 AAAA" });
    expect(await valueOf(commandConnection({ ...ssh, port: 2222 }))).toMatchObject({ port: 2222 });
  });
});
