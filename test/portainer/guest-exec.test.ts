/**
 * How a command run through `qm guest exec` ended, read from what qm prints: the agent's
 * exec-status as QEMU's qga/qapi-schema.json GuestExecStatus has it (`exitcode` for a normal
 * end, `signal` for a process a signal ended, neither when qm's timeout came first and it
 * printed only the pid: qemu-server 9.2.6 src/PVE/CLI/qm.pm `exec`).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { guestExecError, parseGuestExec, renderGuestExec } from "../../providers/portainer/guest-exec";
import { runScriptChecked } from "../../providers/ssh/exec";
import { renderScript } from "../../providers/ssh/script";
import { startSshd, type SshRig } from "../rig/sshd";

describe("a guest command's end", () => {
  it("is its exit status when it exited", () => {
    const r = parseGuestExec(JSON.stringify({ exited: 1, exitcode: 3, "err-data": "one\ntwo\n" }));
    expect(r).toEqual({ exitcode: 3, stdout: "", stderr: "one\ntwo\n" });
    expect(guestExecError("run x in VM 1002", r, 900).message).toBe("run x in VM 1002: exit 3:\none\ntwo");
  });

  it("is the signal that killed it, not a timeout", () => {
    const r = parseGuestExec(JSON.stringify({ exited: 1, signal: 9 }, null, 3));
    expect(r).toEqual({ signal: 9, stdout: "", stderr: "" });
    expect(guestExecError("run x in VM 1002", r, 900).message).toBe("run x in VM 1002: killed by signal 9");
  });

  it("is qm's timeout when qm printed only the pid", () => {
    const r = parseGuestExec(JSON.stringify({ pid: 4242 }));
    expect(r).toEqual({ stdout: "", stderr: "" });
    expect(guestExecError("run x in VM 1002", r, 900).message).toBe("run x in VM 1002: did not finish within 900 s");
  });
});

describe("a guest command killed by a signal, through the node's qm (sshd rig, qm stand-in)", () => {
  let rig: SshRig;
  beforeAll(async () => {
    rig = await startSshd();
    rig.sandbox.write("run/qm/1002.status", "running\n");
    rig.sandbox.write("vm/1002/etc/hostname", "drphoenix\n");
  });
  afterAll(() => rig.stop());

  it("is reported with its signal", async () => {
    const out = await runScriptChecked(rig.connection, "kill", renderScript(renderGuestExec(1002, ["sh", "-c", "kill -KILL $$"], { timeoutSeconds: 30 })));
    const r = parseGuestExec(out.stdout);
    expect(r.signal).toBe(9);
    expect(guestExecError("run x in VM 1002", r, 30).message).toBe("run x in VM 1002: killed by signal 9");
  });
});
