/**
 * Stand-ins for what the doctor runs on a node and inside guests: `pct exec` and
 * `qm guest exec` (into a guest directory below DOCTOR_GUESTS), and, inside a guest,
 * `systemctl`, `ss` and `nvidia-smi` reporting that guest's state.json. The world
 * transpiles this file and puts one wrapper per tool on PATH. Node built-ins only.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

export interface GuestState {
  /** false: the guest is stopped, as `pct exec` reports it. */
  running: boolean;
  /** Unit name → its state (`systemctl is-active`) and main process id (0 when none). */
  units: Record<string, { active: string; pid: number }>;
  /** Local addresses of listening TCP sockets, as `ss` prints them (0.0.0.0:8000). */
  listening: string[];
  /** The NVIDIA driver version nvidia-smi reports; absent: no GPU reachable. */
  driver?: string;
}

export const STATE_FILE = "state.json";

function fail(message: string, code: number): never {
  process.stderr.write(message + "\n");
  process.exit(code);
}

function guestState(dir: string): GuestState {
  return JSON.parse(fs.readFileSync(path.join(dir, STATE_FILE), "utf8")) as GuestState;
}

/** Runs a command in a guest's directory, as if inside the guest. */
function enter(vmid: string, argv: string[], capture: boolean) {
  const dir = path.join(process.env.DOCTOR_GUESTS ?? fail("DOCTOR_GUESTS is not set", 2), vmid);
  if (!fs.existsSync(dir)) fail(`Configuration file 'nodes/pve/lxc/${vmid}.conf' does not exist`, 2);
  if (!guestState(dir).running) fail(`CT ${vmid} not running`, 255);
  return spawnSync(argv[0]!, argv.slice(1), { stdio: capture ? "pipe" : "inherit", encoding: "utf8", env: { ...process.env, PHOENIX_ROOT: dir } });
}

function main(): void {
  const [tool, ...args] = process.argv.slice(2);
  const afterDashes = () => args.slice(args.indexOf("--") + 1);
  switch (tool) {
    case "pct": {
      if (args[0] !== "exec" || !args.includes("--")) fail("pct stand-in: only `pct exec <vmid> -- <command>`", 2);
      return process.exit(enter(args[1]!, afterDashes(), false).status ?? 255);
    }
    case "qm": {
      if (args[0] !== "guest" || args[1] !== "exec" || !args.includes("--")) fail("qm stand-in: only `qm guest exec <vmid> [--timeout N] -- <command>`", 2);
      const res = enter(args[2]!, afterDashes(), true);
      process.stdout.write(JSON.stringify({ exitcode: res.status, exited: 1, "out-data": res.stdout, "err-data": res.stderr }) + "\n");
      return;
    }
    default:
      break;
  }
  const state = guestState(process.env.PHOENIX_ROOT ?? fail("PHOENIX_ROOT is not set", 2));
  switch (tool) {
    case "systemctl": {
      const unit = args[args.length - 1]!;
      const u = state.units[unit];
      if (args[0] === "is-active") {
        process.stdout.write(`${u?.active ?? "inactive"}\n`);
        process.exit(u?.active === "active" ? 0 : 3);
      }
      if (args[0] === "show" && args.includes("MainPID")) return void process.stdout.write(`${u?.active === "active" ? u.pid : 0}\n`);
      return fail(`systemctl stand-in: unsupported ${args.join(" ")}`, 2);
    }
    case "ss":
      return void process.stdout.write(state.listening.map((a) => `LISTEN 0      4096      ${a}      0.0.0.0:*\n`).join(""));
    case "nvidia-smi":
      if (!state.driver) fail("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.", 9);
      return void process.stdout.write(`${state.driver}\n`);
    default:
      fail(`stand-in: unknown tool ${tool}`, 127);
  }
}

if (require.main === module) main();
