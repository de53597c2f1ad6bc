/**
 * Load + evaluation of index.ts through the SDK's real program host: `cmd/run` started as the
 * nodejs language host starts it (test/e2e/wire/language-host.ts), talking gRPC to a monitor that
 * answers each registration at once with what offline synth assumes the providers report.
 */
import * as engproto from "@pulumi/pulumi/proto/engine_pb";
import { offlineOutputs } from "../scripts/offline-outputs";
import { OFFLINE_ENV } from "../stacks/engine";
import type { RawStack } from "../stacks/load";
import type { StackConfig } from "../stacks/schema";
import { runProgram, type RuntimeOptions } from "../test/e2e/wire/language-host";
import { startMonitor } from "../test/e2e/wire/monitor";

export interface HostedEvaluation {
  /** Wall time from spawning node to its exit. */
  ms: number;
  resources: number;
}

export async function evaluateThroughHost(raw: RawStack, config: StackConfig, opts: { runtime?: RuntimeOptions; env?: Record<string, string> } = {}): Promise<HostedEvaluation> {
  const outputsOf = offlineOutputs(config);
  const monitor = await startMonitor({
    project: "phoenix",
    stack: "bench",
    dryRun: false,
    registrar: { register: async (r) => ({ id: `${r.name}-id`, outputs: { ...r.object, ...outputsOf(r.name, r.object) } }) },
  });
  try {
    const run = await runProgram({ monitor: monitor.address, engine: monitor.address, project: "phoenix", stack: "bench", dryRun: false, raw, runtime: opts.runtime, env: { [OFFLINE_ENV]: "1", ...opts.env } });
    // The program reports its errors to the engine (Log, severity ERROR), not on stderr.
    const errors = monitor.logs.filter((l) => l.severity >= engproto.LogSeverity.ERROR).map((l) => l.message);
    if (run.code !== 0) throw new Error(`the program exited with ${run.code}: ${[...errors, run.stderr, run.stdout].join("\n").slice(-4000)}`);
    return { ms: Math.round(run.ms), resources: monitor.registrations.filter((r) => r.custom).length };
  } finally {
    await monitor.stop();
  }
}
