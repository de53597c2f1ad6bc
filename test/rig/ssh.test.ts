import { execFileSync } from "child_process";
import { readFileSync } from "fs";
import { join } from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCommand, runScript, runScriptChecked, SshAuthError, SshCommandError, SshHostKeyError, SshTimeoutError } from "../../providers/ssh";
import { startDroppingProxy } from "./proxy";
import { startSshd, type SshRig } from "./sshd";

let rig: SshRig;
beforeAll(async () => {
  rig = await startSshd();
});
afterAll(async () => {
  await rig?.stop();
});

describe("ssh executor against a real sshd", () => {
  it("returns exit code, stdout and stderr, and feeds stdin", async () => {
    const res = await runCommand(rig.connection, "tr a-z A-Z; echo oops >&2; exit 3", { stdin: "hello\n" });
    expect(res).toMatchObject({ code: 3, stdout: "HELLO\n", stderr: "oops\n", attempts: 1 });
  });

  it("runs a script with arguments and reports a failing step with its stderr", async () => {
    const ok = await runScript(rig.connection, 'set -euo pipefail\necho "$1-$2"', { args: ["a b", "it's"] });
    expect(ok.stdout).toBe("a b-it's\n");
    // A command that reads stdin must not eat the rest of the script.
    const greedy = await runScript(rig.connection, "set -euo pipefail\ncat >/dev/null\necho still-running");
    expect(greedy.stdout).toBe("still-running\n");
    const failing = runScriptChecked(rig.connection, "probe disks", "set -euo pipefail\necho 'no such disk' >&2\nexit 4");
    await expect(failing).rejects.toThrow(SshCommandError);
    await expect(failing).rejects.toThrow(/probe disks on .*127\.0\.0\.1.* failed \(exit 4\):\nno such disk/);
  });

  it("accepts the pinned key given as a SHA256 fingerprint", async () => {
    expect(rig.hostKeyFingerprint).toMatch(/^SHA256:/);
    const res = await runCommand({ ...rig.connection, hostKey: rig.hostKeyFingerprint }, "echo ok");
    expect(res.stdout).toBe("ok\n");
  });

  it("refuses a server whose host key is not the pinned one, naming both keys", async () => {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(rig.dir, "other")]);
    const other = readFileSync(join(rig.dir, "other.pub"), "utf8");
    const attempt = runCommand({ ...rig.connection, hostKey: other }, "touch should-not-run");
    await expect(attempt).rejects.toThrow(SshHostKeyError);
    await expect(attempt).rejects.toThrow(new RegExp(`host key mismatch: the server presented ssh-ed25519 ${rig.hostKeyFingerprint.replace(/[+/]/g, "\\$&")}`));
    await expect(runCommand({ ...rig.connection, hostKey: "SHA256:" + "A".repeat(43) }, "true")).rejects.toThrow(/Refusing to connect/);
    await expect(runCommand({ ...rig.connection, hostKey: "not a key" }, "true")).rejects.toThrow(/hostKey: expected an OpenSSH public key line/);
  });

  it("reports a key the server does not accept without retrying", async () => {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(rig.dir, "stranger")]);
    const started = Date.now();
    const attempt = runCommand({ ...rig.connection, privateKey: readFileSync(join(rig.dir, "stranger"), "utf8") }, "true", { retryDelayMs: 2000 });
    await expect(attempt).rejects.toThrow(SshAuthError);
    await expect(attempt).rejects.toThrow(/public key authentication failed; check username and privateKey/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("reuses a connection for consecutive commands, never for two at once", async () => {
    const proxy = await startDroppingProxy(rig.port, { dropFirst: 0, afterMs: 0 });
    try {
      const conn = { ...rig.connection, port: proxy.port };
      await runCommand(conn, "true");
      await runCommand(conn, "true");
      expect(proxy.connections()).toBe(1);
      const both = await Promise.all([runCommand(conn, "sleep 0.3; echo a"), runCommand(conn, "sleep 0.3; echo b")]);
      expect(both.map((r) => r.stdout)).toEqual(["a\n", "b\n"]);
      expect(proxy.connections()).toBe(2);
    } finally {
      await proxy.close();
    }
  });

  it("gives up on a command that outlives its timeout", async () => {
    const started = Date.now();
    await expect(runCommand(rig.connection, "sleep 5", { timeoutMs: 700 })).rejects.toThrow(SshTimeoutError);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("retries when the connection drops mid-command, but never a non-zero exit", async () => {
    const proxy = await startDroppingProxy(rig.port, { dropFirst: 1, afterMs: 400 });
    try {
      const conn = { ...rig.connection, port: proxy.port };
      const res = await runCommand(conn, "sleep 1; echo done", { retryDelayMs: 50 });
      expect(res).toMatchObject({ code: 0, stdout: "done\n", attempts: 2 });
      expect(proxy.connections()).toBe(2);
      const failed = await runCommand(conn, "exit 7", { retryDelayMs: 50 });
      expect(failed).toMatchObject({ code: 7, attempts: 1 });
      // The kept connection served it: no new login.
      expect(proxy.connections()).toBe(2);
    } finally {
      await proxy.close();
    }
  });

  it("stops retrying after the bound and says the connection was lost", async () => {
    const proxy = await startDroppingProxy(rig.port, { dropFirst: 10, afterMs: 300 });
    try {
      await expect(runCommand({ ...rig.connection, port: proxy.port }, "sleep 2", { retries: 1, retryDelayMs: 50 })).rejects.toThrow(/connection|closed/);
      expect(proxy.connections()).toBe(2);
    } finally {
      await proxy.close();
    }
  });
});

describe("the sandbox a session sees", () => {
  it("has only the sandbox on PATH and PHOENIX_ROOT pointing at it", async () => {
    const res = await runCommand(rig.connection, 'echo "$PATH"; command -v zfs; echo "$PHOENIX_ROOT"; uname -r');
    expect(res.stdout).toBe(`${rig.sandbox.binDir}\n${rig.sandbox.binDir}/zfs\n${rig.sandbox.root}\n6.8.12-4-pve\n`);
  });

  it("has no real system tools beyond the read-only whitelist", async () => {
    const res = await runCommand(rig.connection, "command -v reboot || command -v ip || echo none");
    expect(res.stdout).toBe("none\n");
  });

  it("tracks ZFS datasets and properties like zfs does", async () => {
    rig.sandbox.update((s) => {
      s.pools.tank = { vdevType: "single", disks: [], options: {} };
      s.datasets.tank = {};
    });
    const script = [
      "set -euo pipefail",
      "zfs create -o quota=800G -o compression=lz4 tank/data",
      "zfs set recordsize=1M tank/data",
      "zfs get -H -p -o property,value quota,recordsize,compression,sync tank/data",
      "zfs list -H -o name",
      "zfs create tank/data 2>&1 || true",
      "zfs destroy tank/data",
      "zfs list -H -o name tank/data 2>&1 || echo gone",
    ].join("\n");
    const res = await runScript(rig.connection, script);
    expect(res.stdout).toBe(
      "quota\t858993459200\nrecordsize\t1048576\ncompression\tlz4\nsync\tstandard\ntank\ntank/data\n" +
        "cannot create 'tank/data': dataset already exists\ncannot open 'tank/data': dataset does not exist\ngone\n",
    );
  });
});
