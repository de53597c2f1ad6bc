/**
 * A model server as its renderers see it: the validated guest and engine
 * settings, resolved once (engine version, service user) so the unit, the
 * install script and the health check all agree.
 */
import { templateVersion } from "../../stacks/plan";
import { computeCapability, cudaArch } from "../../stacks/compat";
import type { LxcGuest, Role, StackConfig } from "../../stacks/schema";

type Server = Extract<Role, { type: "model-server" }>["server"];
export type Engine = Server["engine"];
export type VllmServer = Extract<Server, { engine: "vllm" }>;
export type OllamaServer = Extract<Server, { engine: "ollama" }>;
export type LlamaCppServer = Extract<Server, { engine: "llamacpp" }>;

export interface ServiceUser {
  name: string;
  /** Its home, where the engine keeps caches and state of its own. */
  home: string;
  /** Fixed ids when the server's data lives on a mounted volume whose owner the stack declares. */
  uid?: number;
  gid?: number;
}

interface SpecBase {
  vmid: number;
  guestName: string;
  /** The engine version this server runs: its own, or the one its template pins. */
  version: string;
  user: ServiceUser;
  /** systemd unit name, e.g. vllm.service. */
  unit: string;
  /** Where the unit file is installed. */
  unitFile: string;
  /** The guest's GPUs in PCI bus order, the order nvidia-smi and (with CUDA_DEVICE_ORDER=PCI_BUS_ID) CUDA number them. */
  gpus: GuestGpu[];
}

export interface GuestGpu {
  /** As declared, e.g. 0000:01:00.0. */
  pci: string;
  /** sm_ architecture, e.g. "120"; undefined when neither declared nor known for the model. */
  arch?: string;
}

export type VllmSpec = SpecBase & { engine: "vllm"; server: VllmServer };
export type OllamaSpec = SpecBase & { engine: "ollama"; server: OllamaServer };
/** cuda: the CUDA version the guest's template installs, whose compiler llama.cpp is built with. */
export type LlamaCppSpec = SpecBase & { engine: "llamacpp"; server: LlamaCppServer; cuda: string };
export type ModelServerSpec = VllmSpec | OllamaSpec | LlamaCppSpec;

/** How each engine names itself, for descriptions and messages. */
export const ENGINE_NAMES: Record<Engine, string> = { vllm: "vLLM", ollama: "Ollama", llamacpp: "llama.cpp" };
export const UNITS: Record<Engine, string> = { vllm: "vllm.service", ollama: "ollama.service", llamacpp: "llama-server.service" };
const USERS: Record<Engine, string> = { vllm: "vllm", ollama: "ollama", llamacpp: "llama" };

/** The directory or file the engine keeps its weights in: the service user owns what holds it. */
function dataPath(server: Server): string {
  switch (server.engine) {
    case "vllm":
      return server.downloadDir;
    case "ollama":
      return server.modelsDir;
    case "llamacpp":
      return server.model;
  }
}

function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

function serviceUser(guest: LxcGuest, server: Server): ServiceUser {
  const data = dataPath(server);
  const mount = guest.mounts.filter((m) => within(data, m.path)).sort((a, b) => b.path.length - a.path.length)[0];
  const name = USERS[server.engine];
  return { name, home: `/var/lib/${name}`, ...(mount ? { uid: mount.uid, gid: mount.gid } : {}) };
}

export function modelServerSpec(config: StackConfig, vmid: number): ModelServerSpec {
  const guest = config.guests.find((g) => g.vmid === vmid);
  if (guest?.role?.type !== "model-server" || guest.kind !== "lxc") throw new Error(`guest ${vmid} is not a container with role model-server`);
  const server = guest.role.server;
  const version = server.version ?? templateVersion(config, guest.clone, server.engine);
  if (version === undefined) {
    throw new Error(`guest ${vmid} (${guest.name}): no ${server.engine} version: set role.server.version or clone it from a template whose versions pin ${server.engine}`);
  }
  const gpus = guest.gpus
    .map((id) => config.host.gpus.find((g) => g.id === id))
    .filter((g) => g !== undefined)
    .map((g): GuestGpu => {
      const cc = computeCapability(g);
      return { pci: g.pci.toLowerCase(), ...(cc ? { arch: cudaArch(cc) } : {}) };
    })
    .sort((a, b) => a.pci.localeCompare(b.pci));
  const base = { vmid, guestName: guest.name, version, user: serviceUser(guest, server), unit: UNITS[server.engine], unitFile: `/etc/systemd/system/${UNITS[server.engine]}`, gpus };
  switch (server.engine) {
    case "vllm":
      return { ...base, engine: "vllm", server };
    case "ollama":
      return { ...base, engine: "ollama", server };
    case "llamacpp": {
      const cuda = templateVersion(config, guest.clone, "cuda");
      if (cuda === undefined) throw new Error(`guest ${vmid} (${guest.name}): llama.cpp is built with CUDA: clone it from a template whose versions pin cuda (layer cuda)`);
      return { ...base, engine: "llamacpp", server, cuda };
    }
  }
}

/** Every model server of the stack, in declaration order. */
export function modelServerSpecs(config: StackConfig): ModelServerSpec[] {
  return config.guests.filter((g) => g.role?.type === "model-server").map((g) => modelServerSpec(config, g.vmid));
}
