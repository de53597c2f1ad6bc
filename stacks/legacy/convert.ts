/**
 * Legacy bash-orchestrator configuration → Phoenix stack values. Pure: the CLI
 * reads the files and hands their parsed JSON in. Every value written is traced
 * to the legacy field it came from, and every legacy field ends up in the
 * report: mapped, derived, dropped, or flagged.
 */
import type { z } from "zod";
import { formatPath, NAMESPACE } from "../load";
import { parseCidr, subnetOf } from "../net";
import { INSTALLER_LOCAL_CONTENT } from "../schema";
import { findPlainTextSecrets as phoenixPlainTextSecrets, secretParts, secretValueKind, setSecretCommand } from "../secrets";
import {
  hypervisorSchema,
  LEGACY_FILES,
  lxcFileSchema,
  stacksFileSchema,
  vmFileSchema,
  type LegacyFileName,
  type LegacyFirewallRule,
  type LegacyHypervisor,
  type LegacyLxc,
  type LegacyLxcFile,
  type LegacyStacksFile,
  type LegacyVm,
  type LegacyVmFile,
  type LegacyVllmConfig,
} from "./format";
import { ImportLog, reportLeftovers, type LegacyRef } from "./report";
import { FIELD_NOTES } from "./unused";

export interface LegacyInput {
  /** Parsed JSON of each file that exists; a missing file is left out. */
  hypervisor?: unknown;
  lxc?: unknown;
  vm?: unknown;
  stacks?: unknown;
  /** Script file names found beside the legacy config, when the CLI could look; undefined means unknown. */
  scripts?: ReadonlySet<string>;
}

export interface Conversion {
  /** phoenix:* values by key without the namespace; undefined when the files could not be read. */
  values: Record<string, unknown> | undefined;
  log: ImportLog;
  /** Every secret string found in the input: no output may contain one. */
  secrets: ReadonlySet<string>;
}

type Obj = Record<string, unknown>;

const GPU_PLACEHOLDER_GIB = 16;
/** What the old container script hardcoded (cuda-toolkit-12-8). */
const LEGACY_CUDA_VERSION = "12.8";
const VLLM_PLACEHOLDER_VERSION = "0.11.0";
// A version Phoenix has checked the options of; still a placeholder the report asks to confirm.
const OLLAMA_PLACEHOLDER_VERSION = "0.12.6";
// unverified here (no network): the SHA-256 of that release's ollama-linux-amd64.tgz as Pulumi.prod.yaml pins it,
// used for this version only. The release's sha256sum.txt asset is the authority (added by ollama PR #3028,
// ollama/ollama issue #1313; listed for v0.5.3 in issue #8136); a wrong value only stops the install.
const OLLAMA_PLACEHOLDER_SHA256 = "de82adce2ab79235115d511ff22fcb099ac53b67127870f12b80198c033ec0a1";
const VM_TEMPLATE_DISK_GIB = 32; // `qm resize 9000 scsi0 32G`: every VM clone got this disk, whatever the config said
// An ed25519 key line whose key bytes spell what to do: it passes the format check but never matches a node.
const HOST_KEY_PLACEHOLDER = `ssh-ed25519 ${Buffer.from("\0\0\0\x0bssh-ed25519\0\0\0\x20FILL-IN-THE-NODE-SSH-HOST-KEY---", "latin1").toString("base64")} fill-in`;
const MODEL_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"];
// The legacy files name fields in snake_case (admin_password, N8N_ENCRYPTION_KEY, OPENAI_KEY), which
// Phoenix's camelCase field check does not see. A name ending in KEY is a secret unless it is a public key.
const SECRET_KEY_RE = /(^|_)(pass|password|passwd|passphrase|pwd|secret|token|credentials?|[a-z0-9]*_?key)$/i;
const PUBLIC_KEY_RE = /public_?key$/i;
const isSecretName = (name: string): boolean => SECRET_KEY_RE.test(name) && !PUBLIC_KEY_RE.test(name);

/**
 * A variable that must go to secretEnv: Phoenix refuses its name in plain text,
 * the legacy naming says secret, or its value has a credential's shape.
 */
const isSecretVariable = (name: string, value: string): boolean =>
  value !== "" && (phoenixPlainTextSecrets({ env: { [name]: "value" } }, "").length > 0 || isSecretName(name) || secretValueKind(value) !== undefined);

interface Sources {
  hyp: LegacyHypervisor;
  lxc: LegacyLxcFile;
  vm: LegacyVmFile;
  stacks: LegacyStacksFile;
}

export function convertLegacy(input: LegacyInput): Conversion {
  const log = new ImportLog();
  const parse = <S extends z.ZodType>(file: LegacyFileName, schema: S, raw: unknown): z.infer<S> | undefined => {
    // A field the scripts could not have read is reported and left out, so the rest still makes a draft.
    let working: unknown = raw === undefined ? {} : structuredClone(raw);
    const removed = new Set<string>();
    for (let round = 0; round < 16; round++) {
      const parsed = schema.safeParse(working);
      if (parsed.success) return parsed.data;
      for (const issue of parsed.error.issues) {
        let at = issue.path;
        // A required field that is missing is left out with the object that needs it.
        while (removed.has(formatPath(at)) && at.length > 0) at = at.slice(0, -1);
        const path = formatPath(at);
        if (at.length === 0) return undefined;
        if (!removed.has(path)) log.problem({ file, path }, "error", `the old scripts could not have read this (${issue.message}): left out of the draft`, "correct the value in the legacy file and import again");
        removed.add(path);
        working = without(working, at);
      }
    }
    return undefined;
  };
  const hyp = parse(LEGACY_FILES.hypervisor, hypervisorSchema, input.hypervisor);
  const lxc = parse(LEGACY_FILES.lxc, lxcFileSchema, input.lxc);
  const vm = parse(LEGACY_FILES.vm, vmFileSchema, input.vm);
  const stacks = parse(LEGACY_FILES.stacks, stacksFileSchema, input.stacks);
  if (!hyp || !lxc || !vm || !stacks) {
    const read = { hypervisor: hyp, lxc, vm, stacks };
    for (const key of Object.keys(LEGACY_FILES) as (keyof typeof LEGACY_FILES)[]) {
      if (!read[key]) log.problem({ file: LEGACY_FILES[key], path: "" }, "error", "not the shape of this legacy file (a JSON object): nothing imported", "point the import at the legacy etc/ folder");
    }
    return { values: undefined, log, secrets: findPlainTextSecrets(log, input) };
  }

  const values = withoutEmpty(new Converter(log, { hyp, lxc, vm, stacks }, input.scripts).run());
  const secrets = findPlainTextSecrets(log, input);
  const raws: [LegacyFileName, unknown][] = [
    [LEGACY_FILES.hypervisor, input.hypervisor],
    [LEGACY_FILES.lxc, input.lxc],
    [LEGACY_FILES.vm, input.vm],
    [LEGACY_FILES.stacks, input.stacks],
  ];
  for (const [file, raw] of raws) if (raw !== undefined) reportLeftovers(log, file, raw, FIELD_NOTES[file]);
  return { values, log, secrets };
}

/** A copy of a parsed JSON value with the field at `path` removed (an array entry is spliced out). */
function without(value: unknown, path: readonly PropertyKey[]): unknown {
  if (path.length === 0 || value === null || typeof value !== "object") return value;
  const [head, ...rest] = path;
  if (Array.isArray(value)) {
    const i = Number(head);
    return rest.length === 0 ? value.filter((_, k) => k !== i) : value.map((v, k) => (k === i ? without(v, rest) : v));
  }
  const record = { ...(value as Obj) };
  if (rest.length === 0) delete record[String(head)];
  else record[String(head)] = without(record[String(head)], rest);
  return record;
}

/**
 * Drops unset settings and empty lists and maps, which Phoenix's defaults say
 * the same way, so the file shows only what the legacy config said. List
 * entries are kept, so the paths in the provenance map stay valid.
 */
function withoutEmpty(value: Obj): Obj {
  const out: Obj = {};
  for (const [key, v] of Object.entries(value)) {
    const pruned = Array.isArray(v) ? v.map((item: unknown) => (isObj(item) ? withoutEmpty(item) : item)) : isObj(v) ? withoutEmpty(v) : v;
    const empty = pruned === undefined || (Array.isArray(pruned) ? pruned.length === 0 : isObj(pruned) && Object.keys(pruned).length === 0);
    if (!empty) out[key] = pruned;
  }
  return out;
}

const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

const hv = (path: string): LegacyRef => ({ file: LEGACY_FILES.hypervisor, path });
const ct = (id: string, path?: string): LegacyRef => ({ file: LEGACY_FILES.lxc, path: path ? `lxc_configs.${id}.${path}` : `lxc_configs.${id}` });
const vmRef = (i: number, path?: string): LegacyRef => ({ file: LEGACY_FILES.vm, path: path ? `vms[${i}].${path}` : `vms[${i}]` });
const stackRef = (path: string): LegacyRef => ({ file: LEGACY_FILES.stacks, path });

/** One legacy container or VM, with what the converter needs to know about it. */
interface Machine {
  kind: "lxc" | "vm";
  vmid: number;
  name: string;
  ref: (path?: string) => LegacyRef;
  template: boolean;
  lxc?: LegacyLxc;
  vm?: LegacyVm;
  /** The Phoenix name, once mapped. */
  hostname?: string;
  /** Phoenix path once emitted, e.g. guests[3]. */
  at?: string;
  role?: Obj;
}

class Converter {
  private readonly machines: Machine[] = [];
  private readonly byId = new Map<number, Machine>();
  private readonly datasets: Obj[] = [];
  /** Where each dataset is mounted on the host, → its pool/name. */
  private readonly datasetPaths = new Map<string, string>();
  private readonly storages = new Map<string, string[]>();
  private readonly existingStorages: Obj[] = [];
  private hostCidr: string | undefined;
  private bridge = "vmbr0";
  private gateway: string | undefined;
  private domain: string | undefined;
  private node = "phoenix";

  constructor(
    private readonly log: ImportLog,
    private readonly src: Sources,
    private readonly scripts: ReadonlySet<string> | undefined,
  ) {}

  run(): Obj {
    this.indexMachines();
    const host = this.host();
    const templates: Obj[] = [];
    const guests = new Map<Machine, Obj>();
    for (const m of this.machines) {
      m.at = m.template ? `templates[${templates.length}]` : `guests[${guests.size}]`;
      this.log.trace(m.at, m.ref());
      if (m.template) templates.push(this.template(m));
      else guests.set(m, this.guest(m));
    }
    // Roles and dependencies name other machines, so they wait until every machine has its place.
    for (const m of this.machines) {
      const deps = this.dependencies(m);
      const guest = guests.get(m);
      if (!guest) continue;
      guest.dependsOn = deps;
      guest.role = this.role(m, guest);
    }
    for (const [m, guest] of guests) {
      this.vllmClone(m, guest, templates);
      this.cloneDisk(m, guest, templates);
    }
    this.snippetStorage(host, [...guests.values()]);
    this.gpuBudget(host.gpus as Obj[], guests);
    // Declaring any storage replaces the default list, so local is declared as the installer writes it: nothing more is assumed.
    if (this.existingStorages.length > 0) host.existingStorages = [{ id: "local", content: [...INSTALLER_LOCAL_CONTENT], type: "dir" }, ...this.existingStorages];
    const services = this.services();
    return {
      proxmox: this.proxmox(),
      host,
      templates,
      guests: [...guests.values()],
      services,
      routes: this.routes(services),
      firewall: this.firewall(),
    };
  }

  // --- machines ----------------------------------------------------------------

  private indexMachines(): void {
    const cts = Object.entries(this.src.lxc.lxc_configs ?? {});
    const clonedFrom = new Set(cts.map(([, c]) => c.clone_from_ctid).filter((id): id is string => id !== undefined));
    // The scripts took template_snapshot_name as "this container is a template": they snapshot it for clones
    // (LEGACY-FORMAT §3.9: the chain 900 → 901 → {910, 911, 912}), even when no clone is declared yet.
    for (const [id, c] of cts) {
      const vmid = Number(id);
      if (!Number.isInteger(vmid)) {
        this.log.problem(ct(id), "error", `container id '${id}' is not a number`, "use the numeric CTID as the key");
        continue;
      }
      // A container others clone from is what Phoenix calls a template: PVE templates give linked clones.
      this.machines.push({ kind: "lxc", vmid, name: c.name, ref: (p) => ct(id, p), template: clonedFrom.has(id) || c.template_snapshot_name !== undefined, lxc: c });
    }
    (this.src.vm.vms ?? []).forEach((v, i) => {
      this.machines.push({ kind: "vm", vmid: v.vmid, name: v.name, ref: (p) => vmRef(i, p), template: v.is_template === true, vm: v });
    });
    this.machines.sort((a, b) => a.vmid - b.vmid);
    for (const m of this.machines) if (!this.byId.has(m.vmid)) this.byId.set(m.vmid, m);
  }

  private machineFields(m: Machine): Obj {
    const { log } = this;
    const at = m.at!;
    // A container's id is its key in lxc_configs, not a field of its own.
    if (m.vm) log.mapped(m.ref("vmid"), `${at}.vmid`);
    else log.trace(`${at}.vmid`, m.ref());
    const hostname = this.hostname(m);
    log.mapped(m.ref("name"), `${at}.name`, hostname === m.name ? "" : `renamed to ${hostname}: a guest's name is its hostname (letters, digits and '-')`);
    const defaults = this.src.vm.vm_defaults;
    const cores = m.lxc?.cores ?? m.vm?.cores ?? (m.vm ? defaults?.cores : undefined);
    const memory = m.lxc?.memory_mb ?? m.vm?.memory_mb ?? (m.vm ? defaults?.memory_mb : undefined);
    const storage = m.lxc?.storage_pool ?? m.vm?.storage_pool ?? (m.vm ? defaults?.storage_pool : undefined);
    const fromDefaults = (own: unknown, field: string, target: string) => {
      if (own !== undefined) log.mapped(m.ref(field), target);
      else log.mapped({ file: LEGACY_FILES.vm, path: `vm_defaults.${field}` }, target, `vm_defaults for ${m.vmid}`);
    };
    const fields: Obj = { vmid: m.vmid, name: hostname, cores, memoryMiB: memory, storage };
    if (m.lxc) {
      if (cores !== undefined) log.mapped(m.ref("cores"), `${at}.cores`);
      if (memory !== undefined) log.mapped(m.ref("memory_mb"), `${at}.memoryMiB`);
      if (storage !== undefined) log.mapped(m.ref("storage_pool"), `${at}.storage`);
      if (m.lxc.storage_size_gb !== undefined) {
        fields.diskGiB = m.lxc.storage_size_gb;
        log.mapped(m.ref("storage_size_gb"), `${at}.diskGiB`);
      }
    } else {
      if (cores !== undefined) fromDefaults(m.vm?.cores, "cores", `${at}.cores`);
      if (memory !== undefined) fromDefaults(m.vm?.memory_mb, "memory_mb", `${at}.memoryMiB`);
      if (storage !== undefined) fromDefaults(m.vm?.storage_pool, "storage_pool", `${at}.storage`);
      fields.diskGiB = VM_TEMPLATE_DISK_GIB;
      const asked = m.vm?.disk_size_gb;
      if (asked !== undefined) this.log.unused(m.ref("disk_size_gb"), `never applied: the clone kept the template's ${VM_TEMPLATE_DISK_GIB}G disk`);
      log.check(m.ref(asked === undefined ? "" : "disk_size_gb"), `${at}.diskGiB`, `the old scripts never applied disk_size_gb${asked === undefined ? "" : ` (${asked})`}: the template was resized to ${VM_TEMPLATE_DISK_GIB}G and clones kept that; raise diskGiB if you want more`);
    }
    if (storage !== undefined) this.noteStorage(storage);
    if (m.vm?.is_template !== undefined) this.log.mapped(m.ref("is_template"), at, m.template ? "a template" : "a guest");
    return fields;
  }

  /**
   * The legacy name as a hostname: the scripts passed it to `pct --hostname`
   * unchecked, so names like Copy-Cuda12.8 exist. Other characters become '-';
   * a name another machine already maps to gets its id appended.
   */
  private hostname(m: Machine): string {
    const base = m.name.replace(/[^A-Za-z0-9-]+/g, "-").replace(/-{2,}/g, "-").replace(/^-+|-+$/g, "").slice(0, 56).replace(/-+$/, "") || `guest-${m.vmid}`;
    const taken = (name: string) => this.machines.some((x) => x !== m && x.hostname?.toLowerCase() === name.toLowerCase());
    m.hostname = taken(base) ? `${base}-${m.vmid}` : base;
    return m.hostname;
  }

  /** Storages PVE has out of the box are declared as existing, so references to them validate. */
  private noteStorage(id: string): void {
    const builtIn: Record<string, string[]> = { "local-lvm": ["images", "rootdir"], "local-zfs": ["images", "rootdir"] };
    if (!this.storages.has(id) && builtIn[id] && !this.existingStorages.some((s) => s.id === id)) this.existingStorages.push({ id, content: builtIn[id] });
  }

  private template(m: Machine): Obj {
    const t: Obj = { kind: m.kind, ...this.machineFields(m) };
    const at = m.at!;
    if (m.vm) {
      t.source = this.cloudImage(m);
      this.dropFromTemplate(m);
      return t;
    }
    const c = m.lxc!;
    if (c.clone_from_ctid !== undefined) {
      t.source = { clone: Number(c.clone_from_ctid) };
      this.log.mapped(m.ref("clone_from_ctid"), `${at}.source.clone`);
    } else if (c.template) {
      const file = c.template.split("/").at(-1)!;
      const storage = this.vztmplStorage(c.template);
      t.source = { catalogue: file, storage };
      this.log.mapped(m.ref("template"), `${at}.source.catalogue`);
      this.log.check(m.ref("template"), `${at}.source.storage`, `the storage holding OS templates: ${storage}`);
    } else {
      this.log.problem(m.ref("template"), "error", `template ${m.vmid} has neither clone_from_ctid nor template (the OS tarball): nothing says what it is built from`, "add `template` with the OS tarball or `clone_from_ctid`");
    }
    const features = c.features ?? [];
    t.layer = features.includes("vllm") ? "vllm" : features.includes("nvidia") ? "cuda" : "base";
    this.log.check(m.ref("features"), `${at}.layer`, `layer ${t.layer}, from features [${features.join(", ")}]`);
    // Phoenix pins what each layer installs; the old scripts installed whatever was current.
    if (t.layer === "cuda") {
      t.versions = { cuda: LEGACY_CUDA_VERSION };
      this.log.check(m.ref("features"), `${at}.versions.cuda`, `CUDA ${LEGACY_CUDA_VERSION}: the version the old container script hardcoded (cuda-toolkit-12-8)`);
    }
    if (t.layer === "vllm") {
      t.versions = { vllm: VLLM_PLACEHOLDER_VERSION };
      this.log.fillIn(m.ref("features"), `${at}.versions.vllm`, `the old scripts installed whatever vLLM was current: ${VLLM_PLACEHOLDER_VERSION} is a placeholder; pin the version you run`);
    }
    for (const f of features) this.featureWithoutRole(m, f);
    t.unprivileged = c.unprivileged;
    if (c.unprivileged !== undefined) this.log.mapped(m.ref("unprivileged"), `${at}.unprivileged`);
    t.features = this.pctFeatures(m);
    this.containerLeftovers(m);
    this.dropFromTemplate(m);
    return t;
  }

  /** Guest-only settings on a template: Phoenix never starts a template, and its clones must not inherit them. */
  private dropFromTemplate(m: Machine): void {
    const c = m.lxc;
    const v = m.vm;
    const dropped: [string, unknown, string][] = [
      ["network_config", c?.network_config ?? v?.network_config, "a template is never started, so it has no address; its clones get their own"],
      ["mac_address", c?.mac_address, "clones of a template must not share its MAC"],
      ["firewall", c?.firewall ?? v?.firewall, "a template is never started; put the rules on the guests"],
      ["mount_points", c?.mount_points?.length ? c.mount_points : undefined, "clones would inherit the bind mounts"],
      ["zfs_volumes", c?.zfs_volumes?.length ? c.zfs_volumes : undefined, "clones would inherit the volumes"],
      ["traefik_service", c?.traefik_service ?? v?.traefik_service, "a template serves nothing"],
      ["vllm_engine_config", c?.vllm_engine_config, "a template serves no model; configure the model servers cloned from it"],
      ["id_maps", c?.id_maps?.length ? c.id_maps : undefined, "set id passthrough on the guests that need it"],
      ["network_bridge", v?.network_bridge, "a template is never started; its clones get their own network"],
      ["user_config", v?.user_config, "set the cloud-init user on the VMs cloned from it (cloudInit.user)"],
      ["start_at_boot", v?.start_at_boot, "a template is never started"],
      ["boot_order", v?.boot_order, "a template is never started"],
      ["boot_delay", v?.boot_delay, "a template is never started"],
      ["docker_stacks", v?.docker_stacks?.length ? v.docker_stacks : undefined, "a template runs no stacks"],
    ];
    for (const [field, value, why] of dropped) if (value !== undefined) this.log.unsupported(m.ref(field), `dropped from template ${m.vmid}: ${why}`);
    if (c?.gpu_assignment?.length === 0) this.log.mapped(m.ref("gpu_assignment"), m.at!, "none");
    if (c?.gpu_assignment?.length) {
      this.log.problem(m.ref("gpu_assignment"), "warning", `template ${m.vmid} had GPUs ${c.gpu_assignment.join(", ")}; its clones inherited them (the old scripts only appended device lines). Dropped`, "assign GPUs to the guests that need them");
    }
    const role = c?.portainer_role ?? v?.portainer_role;
    if (role !== undefined) {
      if (role === "none") this.log.mapped(m.ref("portainer_role"), m.at!, "none");
      else this.log.unsupported(m.ref("portainer_role"), `dropped from template ${m.vmid}: a template runs no Portainer`);
    }
  }

  private cloudImage(m: Machine): Obj {
    const release = this.src.hyp.vm_defaults?.ubuntu_release ?? "noble";
    const image = m.vm?.template_image ?? `${release}-server-cloudimg-amd64.img`;
    const base = `https://cloud-images.ubuntu.com/${release}/current`;
    const at = m.at!;
    if (this.src.hyp.vm_defaults?.ubuntu_release) this.log.mapped(hv("vm_defaults.ubuntu_release"), `${at}.source.url`);
    else this.log.check(m.ref(), `${at}.source.url`, "no vm_defaults.ubuntu_release: noble, the release the scripts used");
    if (m.vm?.template_image) this.log.mapped(m.ref("template_image"), `${at}.source.url`);
    this.log.check(m.ref("template_image"), `${at}.source.url`, `${base}/${image}: 'current' changes under you; pin a dated release (…/releases/<version>/release-<date>/) so the checksum stays valid`);
    this.log.check(m.ref("template_image"), `${at}.source.sha256SumsUrl`, "the image is verified against the publisher's SHA256SUMS");
    const storage = this.datasetStorageFor("import", "cloud images are downloaded there (the old scripts downloaded them to /tmp)");
    if (storage) this.log.check(m.ref(), `${at}.source.storage`, `${storage}: cloud images are downloaded to a storage with import content`);
    else {
      this.log.problem(
        m.ref(),
        "error",
        `the cloud image needs a storage with import content, and no dataset in zfs.datasets has a dir storage to hold it; PVE's local has import only from pve-installer 9.0.7 on, so it is not assumed`,
        `add "import" to proxmox_content_type of a dataset with proxmox_storage_type "dir" in ${LEGACY_FILES.hypervisor} and import again; or, if the node's /etc/pve/storage.cfg lists import for local, add to ${NAMESPACE}:host in the draft: existingStorages: [{ id: local, type: dir, content: [iso, vztmpl, backup, import] }]`,
        `${at}.source.storage`,
      );
    }
    return { url: `${base}/${image}`, sha256SumsUrl: `${base}/SHA256SUMS`, storage: storage ?? "local" };
  }

  private guest(m: Machine): Obj {
    const g: Obj = { kind: m.kind, ...this.machineFields(m) };
    const at = m.at!;
    g.clone = this.cloneSource(m);
    g.network = this.network(m);
    if (m.lxc) {
      const c = m.lxc;
      const dns = this.guestDns(m);
      if (dns) g.dns = dns;
      g.unprivileged = c.unprivileged;
      if (c.unprivileged !== undefined) this.log.mapped(m.ref("unprivileged"), `${at}.unprivileged`);
      g.features = this.pctFeatures(m);
      g.gpus = this.gpus(m);
      g.mounts = this.mounts(m);
      const passthrough = this.idPassthrough(m);
      if (passthrough) g.idPassthrough = passthrough;
      this.containerLeftovers(m);
    } else {
      const v = m.vm!;
      if (v.start_at_boot !== undefined || v.boot_order !== undefined || v.boot_delay !== undefined) {
        g.startup = { onBoot: v.start_at_boot, order: v.boot_order, upDelay: v.boot_delay };
        if (v.start_at_boot !== undefined) this.log.mapped(m.ref("start_at_boot"), `${at}.startup.onBoot`);
        if (v.boot_order !== undefined) this.log.mapped(m.ref("boot_order"), `${at}.startup.order`);
        if (v.boot_delay !== undefined) this.log.mapped(m.ref("boot_delay"), `${at}.startup.upDelay`);
      }
      if (v.user_config?.username) {
        g.cloudInit = { user: v.user_config.username };
        this.log.mapped(m.ref("user_config.username"), `${at}.cloudInit.user`);
      }
      (v.volumes ?? []).forEach((vol, i) =>
        this.log.unsupported(m.ref(`volumes[${i}]`), `NFS volume ${vol.name ?? i} (${vol.path ?? "?"} → ${vol.mount_point ?? "?"}): Phoenix does not manage NFS mounts in VMs`, "mount it from the VM's own configuration (cloud-init or a Docker volume)"),
      );
      g.dockerStacks = this.dockerStacks(m);
    }
    g.firewall = this.guestFirewall(m.ref("firewall"), m.lxc?.firewall ?? m.vm?.firewall, `${at}.firewall`);
    return g;
  }

  private cloneSource(m: Machine): number | undefined {
    const at = `${m.at!}.clone`;
    const own = m.lxc ? m.lxc.clone_from_ctid : m.vm?.clone_from_vmid;
    if (own !== undefined) {
      this.log.mapped(m.ref(m.lxc ? "clone_from_ctid" : "clone_from_vmid"), at);
      return Number(own);
    }
    if (m.lxc?.template) this.log.unsupported(m.ref("template"), "built from the OS tarball directly; Phoenix builds every container from a template");
    const fallback = this.machines.find((x) => x.template && x.kind === m.kind && (x.kind === "vm" || (!x.lxc?.clone_from_ctid && x.lxc?.template)));
    if (!fallback) {
      this.log.problem(m.ref(m.lxc ? "clone_from_ctid" : "clone_from_vmid"), "error", `${m.kind === "lxc" ? "CT" : "VM"} ${m.vmid} is built from no template, and there is no base template to clone it from`, "declare a base template and set the clone source");
      return undefined;
    }
    this.log.check(m.ref(), at, `no clone source in the legacy config: cloned from the base template ${fallback.vmid}`);
    return fallback.vmid;
  }

  private network(m: Machine): Obj {
    const at = `${m.at!}.network`;
    const n = m.lxc?.network_config ?? m.vm?.network_config;
    const bridge = m.lxc?.network_config?.bridge ?? m.vm?.network_bridge ?? (m.vm ? this.src.vm.vm_defaults?.network_bridge : undefined);
    const network: Obj = { ip: n?.ip };
    if (n?.ip !== undefined) this.log.mapped(m.ref("network_config.ip"), `${at}.ip`);
    else this.log.problem(m.ref("network_config.ip"), "error", `${m.name} has no network_config.ip`, "set ip to an address with prefix (10.0.0.50/24) or dhcp");
    if (bridge !== undefined) {
      const field = m.lxc ? "network_config.bridge" : m.vm?.network_bridge ? "network_bridge" : "";
      this.log.mapped(field ? m.ref(field) : { file: LEGACY_FILES.vm, path: "vm_defaults.network_bridge" }, `${at}.bridge`);
      if (bridge !== this.bridge) network.bridge = bridge;
    }
    if (n?.gw !== undefined) {
      this.log.mapped(m.ref("network_config.gw"), `${at}.gateway`);
      if (n.gw !== this.gateway) network.gateway = n.gw;
    }
    if (m.lxc?.mac_address !== undefined) {
      network.mac = m.lxc.mac_address;
      this.log.mapped(m.ref("mac_address"), `${at}.mac`);
    }
    const ifname = m.lxc?.network_config?.name;
    if (ifname === "eth0") this.log.mapped(m.ref("network_config.name"), at, "eth0, as Phoenix names it");
    else if (ifname !== undefined) this.log.unsupported(m.ref("network_config.name"), `interface name ${ifname}: Phoenix names the first interface eth0`);
    return network;
  }

  private guestDns(m: Machine): Obj | undefined {
    const servers = m.lxc?.network_config?.nameservers;
    if (servers === undefined) return undefined;
    const list = servers.split(/[\s,]+/).filter(Boolean);
    const hostIp = this.hostCidr?.split("/")[0];
    if (this.src.hyp.dns_server?.enabled && list.every((s) => s === hostIp)) {
      this.log.unsupported(m.ref("network_config.nameservers"), `${servers} is the host's dnsmasq, which Phoenix does not run: the guest uses host.dnsServers`);
      return undefined;
    }
    this.log.mapped(m.ref("network_config.nameservers"), `${m.at!}.dns.servers`);
    return { servers: list };
  }

  // --- container settings ------------------------------------------------------

  private pctFeatures(m: Machine): Obj {
    const features: Obj = {};
    (m.lxc?.pct_options ?? []).forEach((option, i) => {
      const ref = m.ref(`pct_options[${i}]`);
      for (const part of option.split(",")) {
        const [key = "", value = ""] = part.split("=").map((s) => s.trim());
        if (["nesting", "keyctl", "fuse"].includes(key)) {
          features[key] = value === "1" || value === "true";
          this.log.mapped(ref, `${m.at!}.features.${key}`);
        } else {
          this.log.unsupported(ref, `pct feature '${part.trim()}': Phoenix sets only nesting, keyctl and fuse`);
        }
      }
    });
    return features;
  }

  private gpus(m: Machine): number[] {
    const ids: number[] = [];
    (m.lxc?.gpu_assignment ?? []).forEach((part) => {
      const id = Number(part);
      if (/^\d+$/.test(part) && !ids.includes(id)) ids.push(id);
      else this.log.problem(m.ref("gpu_assignment"), "warning", `'${part}' in gpu_assignment is not a GPU index or is repeated: ignored`, "list GPU indices as 0,1");
    });
    if (m.lxc?.gpu_assignment !== undefined) this.log.mapped(m.ref("gpu_assignment"), `${m.at!}.gpus`, m.lxc.gpu_assignment.length ? `[${ids.join(", ")}]` : "none");
    return ids;
  }

  private mounts(m: Machine): Obj[] {
    const c = m.lxc!;
    const mounts: Obj[] = [];
    const isCa = (c.features ?? []).includes("step_ca");
    (c.mount_points ?? []).forEach((mp, i) => {
      const ref = m.ref(`mount_points[${i}]`);
      const volume = this.datasetFor(mp.host_path, ref, isCa);
      if (!volume) return;
      const at = `${m.at!}.mounts[${mounts.length}]`;
      mounts.push({ volume, path: mp.container_path, uid: mp.owner_uid, gid: mp.owner_gid });
      this.log.mapped(ref, at, `${mp.host_path} → dataset ${volume}`);
    });
    (c.zfs_volumes ?? []).forEach((vol, i) => {
      const ref = m.ref(`zfs_volumes[${i}]`);
      const parent = [...this.datasetPaths.values()].find((ds) => this.datasets.find((d) => `${d.pool}/${d.name}` === ds && (d.storage as Obj | undefined)?.id === vol.pool));
      if (!parent) {
        this.log.problem(ref, "warning", `volume ${vol.name} is on storage ${vol.pool}, which is no declared dataset: dropped`, "declare the dataset and add a mount for it");
        return;
      }
      const [pool, ...rest] = parent.split("/");
      const name = `${rest.join("/")}/ct${m.vmid}-${vol.name}`;
      this.datasets.push({ pool, name, properties: { quota: `${vol.size_gb}G` } });
      this.log.check(ref, `host.zfs.datasets[${this.datasets.length - 1}]`, `a ${vol.size_gb}G volume becomes its own dataset ${pool}/${name}; move the data of the old volume into it`);
      mounts.push({ volume: `${pool}/${name}`, path: vol.mount_point });
      this.log.mapped(ref, `${m.at!}.mounts[${mounts.length - 1}]`);
    });
    return mounts;
  }

  /**
   * The dataset a bind-mounted host path lives on. Phoenix mounts whole datasets,
   * so a subdirectory becomes a child dataset: mounting the parent would expose
   * every other guest's files (the old CA keys were shared exactly that way).
   */
  private datasetFor(hostPath: string, ref: LegacyRef, secret: boolean): string | undefined {
    const clean = hostPath.replace(/\/+$/, "");
    for (const [mountpoint, ds] of this.datasetPaths) {
      if (clean === mountpoint) return ds;
      if (!clean.startsWith(`${mountpoint}/`)) continue;
      const child = `${ds}/${clean.slice(mountpoint.length + 1)}`;
      if (!this.datasetPaths.has(`/${child}`)) {
        const [pool, ...rest] = child.split("/");
        this.datasets.push({ pool, name: rest.join("/"), secret: secret || undefined });
        this.datasetPaths.set(`/${child}`, child);
        this.log.check(ref, `host.zfs.datasets[${this.datasets.length - 1}]`, `${hostPath} is a directory inside ${ds}: it becomes its own dataset ${child}${secret ? " (secret: the CA's keys)" : ""}; move its files into the new dataset before the first pulumi up`);
      }
      return child;
    }
    this.log.problem(ref, "warning", `${hostPath} is not on any dataset in zfs.datasets: the bind mount is dropped`, "declare the dataset it lives on and add the mount to the guest");
    return undefined;
  }

  private idPassthrough(m: Machine): Obj | undefined {
    const maps = m.lxc?.id_maps ?? [];
    if (maps.length === 0) return undefined;
    const uids: number[] = [];
    const gids: number[] = [];
    maps.forEach((map, i) => {
      const ref = m.ref(`id_maps[${i}]`);
      if (map.host_id !== map.container_id) {
        this.log.unsupported(ref, `maps ${map.container_id} to ${map.host_id}: Phoenix passes ids through unchanged only`);
        return;
      }
      const ids = Array.from({ length: map.size ?? 1 }, (_, k) => map.host_id + k);
      (map.type.startsWith("u") ? uids : gids).push(...ids);
      this.log.mapped(ref, `${m.at!}.idPassthrough`, `the old scripts ignored this mapping and wrote the default map; Phoenix applies it`);
    });
    return { uids, gids };
  }

  /** Container settings that have no Phoenix field, reported once each. */
  private containerLeftovers(m: Machine): void {
    const c = m.lxc!;
    (c.lxc_options ?? []).forEach((o, i) => {
      const ref = m.ref(`lxc_options[${i}]`);
      if (secretValueKind(o.value) || /^\s*\w+=/.test(o.value) && isSecretName(o.value.split("=")[0]!.trim())) return; // reported as a secret, never echoed
      if (/^lxc\.(mount\.entry|cgroup2?\.devices\.allow)$/.test(o.key) && /nvidia|19[5-9]|2\d\d|5\d\d/.test(o.value)) {
        this.log.mapped(ref, `${m.at!}.gpus`, "GPU device lines are generated from gpus");
      } else if (o.key === "lxc.apparmor.profile" && o.value === "unconfined") {
        this.log.problem(ref, "warning", "the container ran unconfined; Phoenix keeps Proxmox's AppArmor profile", "if it really needs more, give it the narrow feature (nesting, keyctl) instead");
      } else {
        this.log.unsupported(ref, `raw line ${o.key} = ${o.value}: Phoenix writes no free-form lxc.* lines`);
      }
    });
    for (const field of ["apparmor_profile", "apparmor_manages_nesting"] as const) {
      if (c[field] !== undefined) this.log.unsupported(m.ref(field), "AppArmor: Phoenix keeps Proxmox's default profile (the custom profiles were deleted from the old repo)");
    }
    if (c.template_snapshot_name !== undefined) this.log.unsupported(m.ref("template_snapshot_name"), "Phoenix clones Proxmox templates (linked clones), not snapshots");
    if (c.template !== undefined && c.clone_from_ctid !== undefined) this.log.unused(m.ref("template"), "ignored: the container is a clone");
    for (const field of ["enable_lifecycle_snapshots", "trigger_sync_on_completion", "bootstrap_ca_url"] as const) {
      if (c[field] !== undefined) this.log.unsupported(m.ref(field), field === "bootstrap_ca_url" ? "Phoenix wires the CA into the guests that need it" : "no Phoenix equivalent");
    }
    this.scriptRef(m.ref("application_script"), c.application_script);
    (c.health_checks ?? []).forEach((h, i) => this.scriptRef(m.ref(`health_checks[${i}]`), h.script));
    const role = c.portainer_role;
    if (role === undefined || m.template) return;
    if (role === "none" || role === "infrastructure") this.log.mapped(m.ref("portainer_role"), `${m.at!}.role`, `${role}: no Portainer role`);
    else this.log.unsupported(m.ref("portainer_role"), `Portainer ${role} in a container: Phoenix runs Portainer in VMs`, "move it to a VM with role portainer-server or portainer-agent");
  }

  private scriptRef(ref: LegacyRef, script: string | undefined): void {
    if (script === undefined) return;
    const name = script.split("/").at(-1)!;
    if (this.scripts && !this.scripts.has(name)) {
      this.log.problem(ref, "warning", `script ${script} does not exist beside the legacy config: the old run failed at this step`, "nothing to do in Phoenix (its roles replace the scripts); delete the reference");
    } else {
      this.log.unsupported(ref, `script ${script}: Phoenix's roles replace the per-guest scripts`);
    }
  }

  // --- roles ---------------------------------------------------------------------

  private role(m: Machine, guest: Obj): Obj | undefined {
    const features = m.lxc?.features ?? m.vm?.features ?? [];
    const roles: { feature: string; role: Obj | undefined }[] = [];
    for (const f of features) {
      const role = this.featureRole(m, f, guest);
      if (role !== null) roles.push({ feature: f, role });
    }
    if (m.lxc && this.isGateway(m)) {
      // The legacy gateway asked no client for a key. Phoenix's checks them on /v1 unless told not to: the import
      // keeps /v1 open, as it was, and says how to close it, rather than refusing every client on the first `up`.
      roles.push({ feature: "(nginx gateway)", role: { type: "nginx-gateway", apiKeys: { enabled: false } } });
      this.log.problem(m.ref("name"), "warning", `${m.name}'s gateway served /v1 without API keys: imported with apiKeys.enabled: false, so anyone on the network can use the models`, `declare apiKeys.clients on ${m.at ?? "the gateway"}.role, set each key with \`pulumi config set --secret phoenix:gatewayApiKey-<client> "$(openssl rand -hex 32)"\`, and drop enabled: false`);
    }
    if (m.vm) {
      const portainer = this.portainerRole(m);
      if (portainer) roles.push({ feature: "portainer_role", role: portainer });
    }
    const [first, ...others] = roles;
    for (const other of others) {
      this.log.problem(m.ref("features"), "warning", `${m.name} also has ${other.feature}, but a Phoenix guest has one role: kept ${first!.feature}`, `move ${other.feature} to its own guest`);
    }
    if (!first?.role) return undefined;
    m.role = first.role;
    this.log.trace(`${m.at!}.role`, first.feature === "portainer_role" ? m.ref("portainer_role") : m.ref("features"));
    return first.role;
  }

  /** The role a feature implies; null when the feature is no role (reported on its own). */
  private featureRole(m: Machine, feature: string, guest: Obj): Obj | undefined | null {
    const at = `${m.at!}.role`;
    const ref = m.ref("features");
    switch (feature) {
      case "step_ca":
        this.log.mapped(ref, at, "step_ca → step-ca");
        return { type: "step-ca" };
      case "traefik":
        this.log.mapped(ref, at, "traefik → traefik");
        return { type: "traefik" };
      case "vllm": {
        const config = m.lxc?.vllm_engine_config;
        this.log.mapped(ref, at, "vllm → model-server (vllm)");
        if (!config) {
          this.log.problem(ref, "error", `${m.name} has the vllm feature but no vllm_engine_config: nothing says which model to serve`, "add vllm_engine_config.ModelConfig.model");
          return undefined;
        }
        return { type: "model-server", server: this.vllm(m, config, (guest.gpus as number[]).length) };
      }
      case "ollama":
        return { type: "model-server", server: this.ollama(m) };
      default:
        if (!m.template) this.featureWithoutRole(m, feature);
        return null;
    }
  }

  private featureWithoutRole(m: Machine, feature: string): void {
    const ref = m.ref("features");
    const at = m.at!;
    const portainerVm = ["primary", "server", "agent"].includes(m.vm?.portainer_role ?? "");
    if (portainerVm && (feature === "docker" || feature === "portainer")) this.log.mapped(ref, `${at}.role`, `${feature} comes with the Portainer role`);
    else if (feature === "base_setup") this.log.mapped(ref, m.template ? `${at}.layer` : `${at}.clone`, "base_setup → the base template layer");
    else if (feature === "nvidia") this.log.mapped(ref, m.template ? `${at}.layer` : `${at}.gpus`, m.template ? "nvidia → the cuda template layer" : "nvidia → gpus (the user-space driver matches host.nvidiaDriver)");
    else if (feature === "vllm" && m.template) this.log.mapped(ref, `${at}.layer`, "vllm → the vllm template layer");
    else if (feature === "docker") this.log.unsupported(ref, `docker in ${m.kind === "lxc" ? "container" : "VM"} ${m.vmid}: Phoenix runs Docker only on Portainer VMs`, "move the workload to a Docker stack on a Portainer agent VM");
    else this.log.unsupported(ref, `feature ${feature} of ${m.vmid}: no Phoenix equivalent${feature === "step_cli" ? " (and not even in the old feature list)" : ""}`);
  }

  private vllm(m: Machine, c: LegacyVllmConfig, gpuCount: number): Obj {
    const at = `${m.at!}.role.server`;
    const map = (path: string, target: string, value: unknown): unknown => {
      if (value !== undefined) this.log.mapped(m.ref(`vllm_engine_config.${path}`), `${at}.${target}`);
      return value;
    };
    const model = c.ModelConfig?.model;
    const served = c.ServerConfig?.served_model_name ?? model?.split("/").at(-1);
    const quantization = c.CacheConfig?.quantization;
    const server: Obj = {
      engine: "vllm",
      model: map("ModelConfig.model", "model", model),
      servedModelName: map("ServerConfig.served_model_name", "servedModelName", served),
      maxModelLen: map("ModelConfig.max_model_len", "maxModelLen", c.ModelConfig?.max_model_len),
      dtype: map("ModelConfig.dtype", "dtype", c.ModelConfig?.dtype),
      quantization: quantization && quantization !== "none" ? map("CacheConfig.quantization", "quantization", quantization) : undefined,
      gpuMemoryUtilization: map("CacheConfig.gpu_memory_utilization", "gpuMemoryUtilization", c.CacheConfig?.gpu_memory_utilization),
      tensorParallelSize: map("ParallelConfig.tensor_parallel_size", "tensorParallelSize", c.ParallelConfig?.tensor_parallel_size),
      trustRemoteCode: map("ModelConfig.trust_remote_code", "trustRemoteCode", c.ModelConfig?.trust_remote_code),
      port: map("ServerConfig.port", "port", c.ServerConfig?.port),
    };
    if (quantization === null || quantization === "none") this.log.mapped(m.ref("vllm_engine_config.CacheConfig.quantization"), `${at}.quantization`, "none");
    if (c.ServerConfig?.served_model_name === undefined && served) this.log.check(m.ref("vllm_engine_config.ModelConfig.model"), `${at}.servedModelName`, `no served_model_name: the model's own name ${served}`);
    if (server.tensorParallelSize === undefined && gpuCount > 1) {
      server.tensorParallelSize = gpuCount;
      this.log.check(m.ref("vllm_engine_config"), `${at}.tensorParallelSize`, `no tensor_parallel_size: one shard per assigned GPU (${gpuCount})`);
    }
    const embed = /embed/i.test(`${model ?? ""} ${served ?? ""}`);
    server.task = embed ? "embed" : "generate";
    this.log.check(m.ref("vllm_engine_config.ModelConfig.model"), `${at}.task`, `${server.task}, guessed from the model name`);
    if (c.ServerConfig?.host !== undefined) this.log.unsupported(m.ref("vllm_engine_config.ServerConfig.host"), "Phoenix chooses the listen address");
    return server;
  }

  private ollama(m: Machine): Obj {
    const at = `${m.at!}.role.server`;
    this.log.mapped(m.ref("features"), `${m.at!}.role`, "ollama → model-server (ollama)");
    this.log.fillIn(m.ref("features"), `${at}.version`, `the Ollama version is not in the legacy config: ${OLLAMA_PLACEHOLDER_VERSION} is a placeholder`);
    this.log.fillIn(m.ref("features"), `${at}.models`, "the models and the VRAM each takes are not in the legacy config: one placeholder model of 1 GiB");
    this.log.check(m.ref("features"), `${at}.sha256`, `the SHA-256 of Ollama ${OLLAMA_PLACEHOLDER_VERSION}'s ollama-linux-amd64.tgz; change it with the version (from the release's sha256sum.txt)`);
    return { engine: "ollama", version: OLLAMA_PLACEHOLDER_VERSION, sha256: OLLAMA_PLACEHOLDER_SHA256, models: [{ name: `fill-in-model-${m.vmid}`, vramGiB: 1 }] };
  }

  /** The old config's gateway has no feature of its own: it is the nginx container, by name, script or AppArmor profile. */
  private isGateway(m: Machine): boolean {
    const nginx = (x: Machine) => x.lxc !== undefined && !x.template && /nginx/i.test(`${x.name} ${x.lxc.application_script ?? ""} ${x.lxc.apparmor_profile ?? ""}`);
    if (!nginx(m)) return false;
    const first = this.machines.find(nginx);
    if (first === m) this.log.check(m.ref("name"), `${m.at!}.role`, `${m.name} is the nginx container, so it is the gateway (nginx-gateway)`);
    return first === m;
  }

  private portainerRole(m: Machine): Obj | undefined {
    const v = m.vm!;
    const at = `${m.at!}.role`;
    const ref = m.ref("portainer_role");
    const image = this.src.hyp.docker?.portainer_agent_image;
    const version = image && /:(\d+\.\d+\.\d+)$/.exec(image)?.[1];
    switch (v.portainer_role) {
      case "primary":
      case "server": {
        this.log.mapped(ref, at, `${v.portainer_role} → portainer-server`);
        const admin = this.src.hyp.portainer_api?.admin_user;
        if (admin !== undefined) this.log.mapped(hv("portainer_api.admin_user"), `${at}.adminUser`);
        return { type: "portainer-server", adminUser: admin };
      }
      case "agent": {
        this.log.mapped(ref, at, "agent → portainer-agent");
        const server = this.machines.find((x) => x.vm && !x.template && (x.vm.portainer_role === "primary" || x.vm.portainer_role === "server"));
        if (!server) this.log.problem(ref, "error", `VM ${m.vmid} is a Portainer agent but no VM is the Portainer server`, "give one VM portainer_role primary");
        const environment = v.portainer_environment_name ?? m.name;
        if (v.portainer_environment_name !== undefined) this.log.mapped(m.ref("portainer_environment_name"), `${at}.environment`);
        else this.log.check(ref, `${at}.environment`, `no portainer_environment_name: the VM's name ${m.name}`);
        const port = this.src.hyp.network?.portainer_agent_port;
        if (port !== undefined) this.log.mapped(hv("network.portainer_agent_port"), `${at}.port`);
        if (version) this.log.mapped(hv("docker.portainer_agent_image"), `${at}.version`);
        return { type: "portainer-agent", server: server?.vmid, environment, port, version: version || undefined };
      }
      case undefined:
        return undefined;
      default:
        this.log.mapped(ref, at, `${v.portainer_role}: no Portainer role`);
        return undefined;
    }
  }

  private dockerStacks(m: Machine): Obj[] {
    const v = m.vm!;
    const isServer = v.portainer_role === "primary" || v.portainer_role === "server";
    const stacks: Obj[] = [];
    (v.docker_stacks ?? []).forEach((entry, i) => {
      const ref = m.ref(`docker_stacks[${i}]`);
      const legacyName = typeof entry === "string" ? entry : entry.name;
      // The legacy server VM deployed Portainer itself as a stack; Phoenix's portainer-server role does that.
      if (isServer && /portainer/i.test(legacyName)) {
        this.log.mapped(ref, `${m.at!}.role`, `${legacyName} is Portainer itself: the portainer-server role runs it`);
        return;
      }
      const at = `${m.at!}.dockerStacks[${stacks.length}]`;
      const name = legacyName.toLowerCase().replace(/[^a-z0-9_-]+/g, "-");
      this.log.mapped(ref, `${at}.name`, name === legacyName ? "" : `renamed to ${name}: compose project names are lower case`);
      const def = this.src.stacks.docker_stacks?.[legacyName];
      const compose = def?.compose_file_path ?? `docker/${name}/compose.yaml`;
      if (def?.compose_file_path) this.log.mapped(stackRef(`docker_stacks.${legacyName}.compose_file_path`), `${at}.compose`);
      this.log.check(def?.compose_file_path ? stackRef(`docker_stacks.${legacyName}.compose_file_path`) : ref, `${at}.compose`, `${compose}: ${def?.compose_file_path ? "the path in phoenix_stacks_config.json" : "a guess"}; put the compose file at this path in the Phoenix project`);
      const stack: Obj = { name, compose };
      const envs = Object.keys(def?.environments ?? {});
      const wanted = (typeof entry === "string" ? undefined : entry.environment) ?? v.portainer_environment_name;
      const envName = wanted !== undefined && envs.includes(wanted) ? wanted : envs[0];
      if (envName === undefined) return void stacks.push(stack);
      if (envs.length > 1 && envName !== wanted) this.log.check(stackRef(`docker_stacks.${legacyName}.environments`), `${at}.env`, `several environments (${envs.join(", ")}): took ${envName}`);
      const env: Record<string, string> = {};
      const secretEnv: Record<string, string> = {};
      (def?.environments?.[envName]?.variables ?? []).forEach((variable, j) => {
        const vref = stackRef(`docker_stacks.${legacyName}.environments.${envName}.variables[${j}]`);
        if (isSecretVariable(variable.name, variable.value)) {
          const key = secretKeyName(name, variable.name);
          secretEnv[variable.name] = key;
          this.log.secret(vref, `${variable.name} of stack ${name} (mapped to secretEnv → ${key})`, `\`${setSecretCommand(key)}\``);
          this.log.trace(`${at}.secretEnv.${variable.name}`, vref);
        } else {
          env[variable.name] = variable.value;
          this.log.mapped(vref, `${at}.env.${variable.name}`);
        }
      });
      stacks.push({ ...stack, env, secretEnv });
    });
    return stacks;
  }

  private dependencies(m: Machine): number[] {
    const deps: number[] = [];
    const list = m.lxc?.dependencies ?? m.vm?.dependencies ?? [];
    list.forEach((dep, i) => {
      const ref = m.ref(`dependencies[${i}]`);
      const target = /^\d+$/.test(dep.trim()) ? this.byId.get(Number(dep)) : this.machines.find((x) => x.name.toLowerCase() === dep.trim().toLowerCase());
      const drop = (message: string, fix: string) => this.log.problem(ref, "warning", `${m.name} depends on ${dep}: ${message}; dropped`, fix);
      if (!target) drop("no such container or VM", "remove the dependency, or declare the guest");
      else if (target === m) drop("itself", "remove it");
      else if (m.template) drop(`${m.vmid} is a template, and templates are built before any guest, so it cannot wait for ${target.kind === "vm" ? "VM" : "CT"} ${target.vmid}`, "remove it; if the template's build needs that guest, build it differently");
      else if (target.template) drop(`${target.vmid} is a template; a clone already waits for its template, and nothing else can`, "depend on a guest instead");
      else if (deps.includes(target.vmid)) drop("listed twice", "list it once");
      else {
        deps.push(target.vmid);
        this.log.mapped(ref, `${m.at!}.dependsOn[${deps.length - 1}]`);
      }
    });
    return deps;
  }

  // --- host --------------------------------------------------------------------------

  private host(): Obj {
    const h = this.src.hyp;
    const log = this.log;
    log.trace("host", hv(""));
    const raw = h.network?.interfaces;
    const iface = Array.isArray(raw) ? raw[0] : raw;
    const ifacePath = Array.isArray(raw) ? "network.interfaces[0]" : "network.interfaces";
    if (Array.isArray(raw) && raw.length > 1) log.unsupported(hv("network.interfaces[1]"), "only the first interface was ever used");
    this.hostCidr = iface?.address;
    this.gateway = iface?.gateway;
    this.domain = h.domain_name;
    this.node = this.nodeName();
    const host: Obj = { node: this.node, address: iface?.address, gateway: iface?.gateway, domain: h.domain_name, timezone: h.timezone };
    if (iface?.address !== undefined) log.mapped(hv(`${ifacePath}.address`), "host.address");
    if (iface?.gateway !== undefined) log.mapped(hv(`${ifacePath}.gateway`), "host.gateway");
    if (h.domain_name !== undefined) log.mapped(hv("domain_name"), "host.domain");
    if (h.timezone !== undefined) log.mapped(hv("timezone"), "host.timezone");
    if (iface?.name !== undefined) {
      if (/^vmbr\d+$/.test(iface.name)) {
        this.bridge = iface.name;
        host.managementBridge = iface.name;
        log.mapped(hv(`${ifacePath}.name`), "host.managementBridge");
      } else {
        log.unsupported(hv(`${ifacePath}.name`), `${iface.name} is not a Proxmox bridge: guests attach to vmbr0 (host.managementBridge)`);
      }
    }
    host.dnsServers = this.dnsServers(ifacePath, iface?.dns_nameservers);
    const cidr = iface?.address ? parseCidr(iface.address) : undefined;
    if (cidr) {
      host.adminNetworks = [subnetOf(cidr)];
      log.check(hv(`${ifacePath}.address`), "host.adminNetworks", `SSH and the web UI stay reachable from ${subnetOf(cidr)} when the node firewall drops inbound; narrow it to your admin machines`);
    }
    const driver = this.nvidiaDriver();
    if (driver) host.nvidiaDriver = driver;
    host.gpus = this.hostGpus();
    host.zfs = this.zfs();
    if (h.zfs?.arc_max_gb !== undefined) log.mapped(hv("zfs.arc_max_gb"), "host.zfs.arcMaxGiB", "the old script set it at runtime only; Phoenix persists it");
    return host;
  }

  private nodeName(): string {
    const name = this.src.hyp.network?.hostname;
    if (name !== undefined) {
      this.log.mapped(hv("network.hostname"), "host.node");
      return name;
    }
    this.log.check(hv("network"), "host.node", "no network.hostname: 'phoenix', the scripts' default; it must be the node name Proxmox shows");
    return "phoenix";
  }

  private dnsServers(ifacePath: string, legacy: string[] | undefined): string[] | undefined {
    const h = this.src.hyp;
    const guestIps = new Map<string, Machine>();
    for (const m of this.machines) {
      const ip = (m.lxc?.network_config?.ip ?? m.vm?.network_config?.ip)?.split("/")[0];
      if (ip) guestIps.set(ip, m);
    }
    const kept = (legacy ?? []).filter((ip, i) => {
      const guest = guestIps.get(ip);
      if (!guest || (guest.lxc?.features ?? []).includes("dns_server")) return true;
      this.log.problem(hv(`${ifacePath}.dns_nameservers[${i}]`), "warning", `${ip} is ${guest.kind === "vm" ? "VM" : "CT"} ${guest.vmid} ${guest.name}, not a DNS server: removed`, "list real DNS servers");
      return false;
    });
    const upstream = h.dns_server?.enabled ? (h.dns_server.upstream_servers ?? []) : [];
    if (upstream.length > 0) {
      this.log.mapped(hv("dns_server.upstream_servers"), "host.dnsServers", "the host's dnsmasq forwarded to these; Phoenix does not run dnsmasq, so guests ask them directly");
      this.log.unsupported(hv("dns_server.enabled"), "Phoenix does not run a DNS server on the host", "if you need internal names, run a DNS server in a guest");
      if (kept.length > 0) this.log.unsupported(hv(`${ifacePath}.dns_nameservers`), "the host's own resolvers; guests now use dns_server.upstream_servers (host.dnsServers)");
      return upstream;
    }
    if (kept.length > 0) {
      this.log.mapped(hv(`${ifacePath}.dns_nameservers`), "host.dnsServers");
      return kept;
    }
    if (this.gateway) {
      this.log.check(hv(ifacePath), "host.dnsServers", `no usable DNS server in the legacy config: the gateway ${this.gateway}`);
      return [this.gateway];
    }
    return undefined;
  }

  private nvidiaDriver(): Obj | undefined {
    const host = this.src.hyp.nvidia_driver;
    const ctVersion = this.src.lxc.nvidia_driver_version;
    const version = host?.version ?? ctVersion;
    if (version === undefined) return undefined;
    if (host?.version !== undefined) this.log.mapped(hv("nvidia_driver.version"), "host.nvidiaDriver.version");
    if (ctVersion !== undefined) {
      const ref = { file: LEGACY_FILES.lxc, path: "nvidia_driver_version" };
      if (host?.version === undefined) this.log.mapped(ref, "host.nvidiaDriver.version");
      else if (ctVersion !== host.version) {
        this.log.problem(ref, "warning", `containers were given driver ${ctVersion} but the host runs ${host.version}; they must match exactly. Using ${host.version} for both`, "keep one version");
      } else this.log.mapped(ref, "host.nvidiaDriver.version", "the same as the host's");
    }
    if (host?.install !== undefined) {
      this.log.mapped(hv("nvidia_driver.install"), "host.nvidiaDriver", host.install ? "" : "install was off (the driver was installed by hand): Phoenix will manage it at this version");
    }
    return { version };
  }

  private hostGpus(): Obj[] {
    const users = new Map<number, Machine[]>();
    for (const m of this.machines) {
      for (const part of m.lxc?.gpu_assignment ?? []) {
        if (!/^\d+$/.test(part)) continue;
        const list = users.get(Number(part)) ?? [];
        if (!list.includes(m)) users.set(Number(part), [...list, m]);
      }
    }
    return [...users.keys()]
      .sort((a, b) => a - b)
      .map((id, i) => {
        const first = users.get(id)!.find((m) => !m.template) ?? users.get(id)![0]!;
        const sharedBy = users.get(id)!.filter((m) => !m.template);
        const shared = sharedBy.length > 1 ? `; shared by ${sharedBy.map((m) => m.vmid).join(", ")}, so check the memory budget` : "";
        const pci = `0000:${(id + 1).toString(16).padStart(2, "0")}:00.0`;
        this.log.fillIn(first.ref("gpu_assignment"), `host.gpus[${i}]`, `GPU ${id}: PCI address, model and memory are not in the legacy config (placeholders: ${pci}, and at least ${GPU_PLACEHOLDER_GIB} GiB, enough for the servers that share it); mode lxc-shared, as the old scripts shared every GPU with containers${shared}`);
        return { id, pci, model: `FILL-IN GPU ${id}`, memoryGiB: GPU_PLACEHOLDER_GIB, mode: "lxc-shared" };
      });
  }

  private zfs(): Obj {
    const legacy = this.src.hyp.zfs;
    const pools = (legacy?.pools ?? []).map((p, i) => {
      const at = `host.zfs.pools[${i}]`;
      this.log.mapped(hv(`zfs.pools[${i}].name`), `${at}.name`);
      const topology = p.raid_level?.toLowerCase() ?? "single";
      if (p.raid_level !== undefined) this.log.mapped(hv(`zfs.pools[${i}].raid_level`), `${at}.topology`);
      else this.log.check(hv(`zfs.pools[${i}]`), `${at}.topology`, "no raid_level: single, as the script did");
      let disks = p.disks ?? [];
      if (disks.length > 0) this.log.mapped(hv(`zfs.pools[${i}].disks`), `${at}.disks`);
      else {
        const count = { mirror: 2, raidz1: 3, raidz2: 4 }[topology] ?? 1;
        disks = Array.from({ length: count }, (_, k) => `/dev/disk/by-id/FILL-IN-${p.name}-disk-${k + 1}`);
        this.log.fillIn(hv(`zfs.pools[${i}]`), `${at}.disks`, `no disks: ${count} placeholder by-id paths; Phoenix adopts an existing pool, but the disks must be right`);
      }
      this.log.check(hv(`zfs.pools[${i}]`), `${at}.properties`, "compression=lz4 and atime=off, the options the old script created pools with");
      return { name: p.name, topology, disks, properties: { compression: "lz4", atime: "off" } };
    });
    const ids = this.src.hyp.proxmox_storage_ids ?? {};
    const usedIds = new Set<string>();
    const base = this.src.hyp.mount_point_base;
    if (base !== undefined) this.log.unsupported(hv("mount_point_base"), "used only to find the datasets behind legacy host paths; Phoenix mounts datasets by name");
    (legacy?.datasets ?? []).forEach((d, i) => {
      const at = `host.zfs.datasets[${this.datasets.length}]`;
      const ref = (p?: string) => hv(p ? `zfs.datasets[${i}].${p}` : `zfs.datasets[${i}]`);
      this.log.mapped(ref("name"), `${at}.name`);
      this.log.mapped(ref("pool"), `${at}.pool`);
      const dataset: Obj = { pool: d.pool, name: d.name, properties: this.datasetProperties(d.properties, ref("properties"), `${at}.properties`) };
      if (d.proxmox_storage_type !== undefined) {
        const key = `${d.pool}_${d.name.replace(/-/g, "_")}`;
        const id = ids[key] ?? `${d.pool}-${d.name}`;
        if (ids[key] !== undefined) {
          usedIds.add(key);
          this.log.mapped(hv(`proxmox_storage_ids.${key}`), `${at}.storage.id`);
        } else this.log.check(ref("proxmox_storage_type"), `${at}.storage.id`, `${id}, the scripts' default id`);
        const content = d.proxmox_content_type?.split(",").map((s) => s.trim()).filter(Boolean) ?? [];
        if (content.length > 0) this.log.mapped(ref("proxmox_content_type"), `${at}.storage.content`);
        else {
          content.push("images", "rootdir");
          this.log.check(ref("proxmox_storage_type"), `${at}.storage.content`, "no proxmox_content_type: images and rootdir, pvesm's default");
        }
        this.log.mapped(ref("proxmox_storage_type"), `${at}.storage.type`);
        dataset.storage = { id, type: d.proxmox_storage_type, content };
        this.storages.set(id, content);
      }
      this.datasets.push(dataset);
      this.datasetPaths.set(`/${d.pool}/${d.name}`, `${d.pool}/${d.name}`);
      if (base !== undefined) this.datasetPaths.set(`${base.replace(/\/+$/, "")}/${d.pool}/${d.name}`, `${d.pool}/${d.name}`);
    });
    for (const key of Object.keys(ids)) {
      if (!usedIds.has(key)) this.log.unused(hv(`proxmox_storage_ids.${key}`), `matches no dataset with a storage (the script looks up <pool>_<dataset with - → _>)`);
    }
    if (this.src.hyp.zfs?.arc_max_gb !== undefined) return { arcMaxGiB: this.src.hyp.zfs.arc_max_gb, pools, datasets: this.datasets };
    return { pools, datasets: this.datasets };
  }

  private datasetProperties(props: string | Record<string, string | number | boolean> | undefined, ref: LegacyRef, target: string): Obj {
    if (props === undefined) return {};
    this.log.mapped(ref, target);
    if (typeof props !== "string") return props;
    const out: Obj = {};
    for (const pair of props.split(",").map((s) => s.trim()).filter(Boolean)) {
      const [key, value] = pair.split("=").map((s) => s.trim());
      if (key && value !== undefined && value !== "") out[key] = value;
      else this.log.problem(ref, "warning", `'${pair}' is not key=value: ignored`, "write properties as key=value,key=value");
    }
    return out;
  }

  /** Where OS tarballs live: the dataset the template path is on, if it holds vztmpl; else local. */
  private vztmplStorage(path: string): string {
    for (const d of this.datasets) {
      const storage = d.storage as { id: string; content: string[] } | undefined;
      if (storage?.content.includes("vztmpl") && [...this.datasetPaths].some(([mp, ds]) => ds === `${d.pool}/${d.name}` && path.startsWith(`${mp}/`))) return storage.id;
    }
    return [...this.storages].find(([, content]) => content.includes("vztmpl"))?.[0] ?? "local";
  }

  private proxmox(): Obj {
    const ip = this.hostCidr?.split("/")[0];
    const ref = hv(this.src.hyp.network?.interfaces ? "network.interfaces" : "");
    this.log.trace("proxmox", hv(""));
    this.log.check(ref, "proxmox.endpoint", `https://${ip}:8006, the API on the host's address`);
    this.log.check(hv(""), "proxmox.tokenId", "phoenix@pve!pulumi: create it with `pveum user add phoenix@pve` and `pveum user token add phoenix@pve pulumi`, grant it the PVEAdmin role, then set its secret");
    this.log.check(ref, "proxmox.nodes[0].ssh.host", `${ip}: host preparation, GPU devices and bind mounts go over SSH to the node as root`);
    this.log.fillIn(hv(""), "proxmox.nodes[0].ssh.hostKey", `a placeholder: replace it with the output of \`ssh-keyscan -t ed25519 ${ip}\`; an unknown host key is refused`);
    this.log.check(hv(""), "proxmox.tls.caFile", "pve-root-ca.pem: copy it from the node (`scp root@<host>:/etc/pve/pve-root-ca.pem .`)");
    return { endpoint: `https://${ip}:8006`, tokenId: "phoenix@pve!pulumi", nodes: [{ name: this.node, ssh: { host: ip, user: "root", hostKey: HOST_KEY_PLACEHOLDER } }], tls: { caFile: "pve-root-ca.pem" } };
  }

  // --- services, routes, firewall ------------------------------------------------------

  private services(): Obj[] {
    const services: Obj[] = [];
    const names = new Set<string>();
    // Service names are lower case letters, digits and '-', starting with a letter, and unique.
    const serviceName = (raw: string, m: Machine): string => {
      const base = raw.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/-{2,}/g, "-").replace(/^[^a-z]+|-+$/g, "").slice(0, 50) || `svc-${m.vmid}`;
      const name = names.has(base) ? `${base}-${m.vmid}` : base;
      names.add(name);
      return name;
    };
    for (const m of this.machines) {
      if (m.template) continue;
      const type = m.role?.type;
      const server = m.role?.server as Obj | undefined;
      const legacy = m.lxc?.traefik_service ?? m.vm?.traefik_service;
      if (legacy && (type === "nginx-gateway" || type === "traefik")) {
        this.log.problem(m.ref("traefik_service"), "warning", `${m.name} is the ${type === "traefik" ? "Traefik proxy" : "gateway"} itself: a route to its own traefik_service would loop back. Dropped`, `delete traefik_service from ${m.ref().path}`);
        continue;
      }
      const engine = server?.engine;
      // A model server the legacy Traefik never named is still reached through the gateway's model routes.
      const svc = legacy ?? (type === "model-server" ? { name: m.hostname ?? m.name, port: (server?.port as number | undefined) ?? (engine === "ollama" ? 11434 : 8000) } : undefined);
      if (!svc) continue;
      const at = `services[${services.length}]`;
      const name = serviceName(svc.name, m);
      if (legacy) {
        this.log.mapped(m.ref("traefik_service.name"), `${at}.name`, name === svc.name ? "" : `renamed to ${name}: service names are lower case letters, digits and '-', unique`);
        this.log.mapped(m.ref("traefik_service.port"), `${at}.port`);
      } else {
        this.log.check(m.ref(), at, `no traefik_service: service ${name} on port ${svc.port}, so the gateway's model routes reach ${m.name}`);
      }
      this.log.trace(`${at}.guest`, m.ref());
      const scheme = type === "step-ca" || type === "portainer-server" ? "https" : "http";
      const healthPath = type === "step-ca" ? "/health" : type === "portainer-server" ? "/api/system/status" : engine === "ollama" ? "/api/tags" : engine === "vllm" ? "/health" : "/";
      if (scheme === "https" || healthPath !== "/") this.log.check(m.ref(legacy ? "traefik_service" : ""), `${at}.healthPath`, `${scheme}, health ${healthPath}: what a ${type} answers on`);
      services.push({ name, guest: m.vmid, port: svc.port, scheme, healthPath });
    }
    return services;
  }

  /**
   * Phoenix runs vLLM only from a vllm template (it pins the version). A legacy
   * vLLM container cloned from the CUDA template is moved onto the vLLM
   * template built on that same CUDA template, when there is one.
   */
  private vllmClone(m: Machine, guest: Obj, templates: Obj[]): void {
    const server = (guest.role as Obj | undefined)?.server as Obj | undefined;
    if (server?.engine !== "vllm" || guest.clone === undefined) return;
    const byVmid = new Map(templates.map((t) => [t.vmid as number, t]));
    const source = byVmid.get(guest.clone as number);
    if (!source || source.layer === "vllm") return;
    const builtOn = (t: Obj): boolean => {
      for (let cur: Obj | undefined = t, n = 0; cur && n < templates.length; cur = byVmid.get((cur.source as Obj | undefined)?.clone as number), n++) {
        if (cur.vmid === source.vmid) return true;
      }
      return false;
    };
    const vllm = templates.find((t) => t.layer === "vllm" && builtOn(t));
    const field = m.ref("clone_from_ctid");
    const at = `${m.at!}.clone`;
    if (vllm) {
      guest.clone = vllm.vmid;
      this.log.problem(field, "warning", `${m.name} ran vLLM in a clone of ${String(source.vmid)} (layer ${String(source.layer)}); Phoenix runs vLLM from a vllm template: cloned from ${String(vllm.vmid)}, the vLLM template built on ${String(source.vmid)}`, `set clone_from_ctid to "${String(vllm.vmid)}"`, at);
      return;
    }
    server.version = VLLM_PLACEHOLDER_VERSION;
    this.log.fillIn(m.ref("features"), `${m.at!}.role.server.version`, `the old scripts installed whatever vLLM was current: ${VLLM_PLACEHOLDER_VERSION} is a placeholder; pin the version you run`);
    this.log.problem(field, "error", `${m.name} ran vLLM in a clone of ${String(source.vmid)} (layer ${String(source.layer)}), and no vLLM template is built on it`, `add a template container with features ["nvidia", "vllm"], template_snapshot_name and clone_from_ctid "${String(source.vmid)}", and set this clone_from_ctid to it`, at);
  }

  /** A clone starts with its template's disk, so a smaller storage_size_gb never took effect: the template's size is kept. */
  private cloneDisk(m: Machine, guest: Obj, templates: Obj[]): void {
    const template = templates.find((t) => t.vmid === guest.clone);
    const own = guest.diskGiB as number | undefined;
    const base = template?.diskGiB as number | undefined;
    if (own === undefined || base === undefined || own >= base) return;
    guest.diskGiB = base;
    this.log.problem(m.ref("storage_size_gb"), "warning", `${m.name} asked for ${own} GiB but is a clone of ${String(template!.vmid)}, whose disk is ${base} GiB: a clone starts with its template's disk and cannot be smaller. Kept ${base} GiB`, `set storage_size_gb to ${base} or more`, `${m.at!}.diskGiB`);
  }

  /** Docker VMs get their cloud-init user data from host.snippetStorage: a dir storage of a dataset with snippets content. */
  private snippetStorage(host: Obj, guests: Obj[]): void {
    const docker = guests.filter((g) => g.kind === "vm" && /^portainer-/.test(String((g.role as Obj | undefined)?.type)));
    if (docker.length === 0) return;
    const storage = this.datasetStorageFor("snippets", "the VMs' cloud-init user data is written there");
    host.snippetStorage = storage ?? "local";
    if (storage) {
      this.log.check(hv("zfs.datasets"), "host.snippetStorage", `${storage}: the VMs' cloud-init user data is written there (a dir storage with snippets content)`);
      return;
    }
    const vms = docker.map((g) => this.machines.find((x) => x.vmid === g.vmid)!);
    this.log.problem(
      vms[0]!.ref("portainer_role"),
      "error",
      `${vms.map((m) => m.name).join(", ")} run${vms.length === 1 ? "s" : ""} Docker, set up by cloud-init user data that Phoenix writes to a dir storage with snippets content, and no dataset in zfs.datasets has a dir storage; PVE's installer never gives local snippets, so local is not assumed to`,
      `add a dataset with proxmox_storage_type "dir" and proxmox_content_type "snippets" to ${LEGACY_FILES.hypervisor} zfs.datasets and import again; or, if the node's /etc/pve/storage.cfg lists snippets for local, add to ${NAMESPACE}:host in the draft: existingStorages: [{ id: local, type: dir, content: [iso, vztmpl, backup, snippets] }]`,
      "host.snippetStorage",
    );
  }

  /**
   * The storage of a legacy dataset for content the old scripts never kept on a storage (they
   * downloaded the cloud image to /tmp and wrote no snippets): a dir storage that holds it, else
   * one Phoenix registers is given it (Phoenix sets the content of the storages it manages),
   * the one holding ISOs first. Undefined when no dataset has a dir storage: PVE's local is never
   * assumed to hold more than the installer gives it (INSTALLER_LOCAL_CONTENT).
   */
  private datasetStorageFor(content: "import" | "snippets", why: string): string | undefined {
    const dirs = this.datasets.flatMap((d, i) => {
      const storage = d.storage as { id: string; type: string; content: string[] } | undefined;
      return storage?.type === "dir" ? [{ ...storage, i }] : [];
    });
    const has = dirs.find((st) => st.content.includes(content));
    const chosen = has ?? dirs.find((st) => st.content.includes("iso")) ?? dirs[0];
    if (!chosen) return undefined;
    if (!has) {
      // The same array as the dataset's storage.content and this.storages' entry.
      chosen.content.push(content);
      this.log.check(hv(`zfs.datasets[${chosen.i}].proxmox_content_type`), `host.zfs.datasets[${chosen.i}].storage.content`, `${content} added to the content of ${chosen.id}, which Phoenix registers: ${why}`);
    }
    return chosen.id;
  }

  /**
   * The memory each GPU's model servers reserve. Over 0.95 of a GPU for vLLM is
   * a mistake of the legacy setup (the servers cannot all hold their share), so
   * it is reported with the edit that fits them. A placeholder GPU's memory is
   * sized so that the placeholder itself adds no error.
   */
  private gpuBudget(gpus: Obj[], guests: Map<Machine, Obj>): void {
    gpus.forEach((gpu, i) => {
      const vllm: { m: Machine; util: number }[] = [];
      let otherGiB = 0;
      for (const [m, g] of guests) {
        const ids = (g.gpus as number[] | undefined) ?? [];
        const server = (g.role as Obj | undefined)?.server as Obj | undefined;
        if (!ids.includes(gpu.id as number) || !server) continue;
        if (server.engine === "vllm") vllm.push({ m, util: (server.gpuMemoryUtilization as number | undefined) ?? 0.9 });
        else if (server.engine === "ollama") otherGiB += (server.models as { vramGiB: number }[]).reduce((sum, x) => sum + x.vramGiB, 0) / ids.length;
      }
      const sum = vllm.reduce((total, v) => total + v.util, 0);
      if (String(gpu.model).startsWith("FILL-IN") && sum < 1) gpu.memoryGiB = Math.max(GPU_PLACEHOLDER_GIB, Math.ceil(otherGiB / (1 - Math.min(sum, 0.95))));
      if (sum <= 0.95 + 1e-9) return;
      const round = (x: number) => Math.floor(x * 100) / 100;
      const users = vllm.map((v) => `${v.m.vmid} ${v.m.name} ${v.util}`).join(", ");
      const edit = vllm.map((v) => `${v.m.ref("vllm_engine_config.CacheConfig.gpu_memory_utilization").path} to ${round((v.util * 0.95) / sum)}`).join(", ");
      this.log.problem(
        vllm[0]!.m.ref("vllm_engine_config.CacheConfig.gpu_memory_utilization"),
        "error",
        `GPU ${String(gpu.id)} is over-subscribed in the legacy config: its vLLM servers reserve ${Math.round(sum * 100) / 100} of its memory (${users}); at most 0.95 fits`,
        `set ${edit} (together 0.95), or give one of them another GPU in gpu_assignment`,
        `host.gpus[${i}]`,
      );
    });
  }

  private routes(services: Obj[]): Obj[] {
    const gateway = this.machines.find((m) => m.role?.type === "nginx-gateway");
    if (!gateway) {
      const served = this.machines.find((m) => m.lxc?.traefik_service ?? m.vm?.traefik_service);
      if (served) this.log.problem(served.ref("traefik_service"), "warning", "no routes derived: no nginx container (the gateway) in the legacy config", "add an nginx-gateway guest and routes");
      return [];
    }
    const routes: Obj[] = [];
    if (this.machines.some((m) => m.role?.type === "model-server")) {
      for (const path of MODEL_ROUTES) {
        this.log.check(gateway.ref(), `routes[${routes.length}]`, `${path} routed by the request's model (the OpenAI-compatible API)`);
        routes.push({ path, byModel: true });
      }
    }
    const modelGuests = new Set(this.machines.filter((m) => m.role?.type === "model-server").map((m) => m.vmid));
    const portainer = this.src.hyp.portainer_api?.portainer_hostname;
    for (const s of services) {
      const guest = this.byId.get(s.guest as number)!;
      if (modelGuests.has(guest.vmid) || guest === gateway) continue;
      const isPortainer = guest.role?.type === "portainer-server" && portainer !== undefined;
      const host = isPortainer ? portainer : `${String(s.name)}.${this.domain}`;
      // The imported CA has no dnsNames, so its name is ca.<domain> (stacks/routing.ts caDnsNames).
      const caName = `ca.${this.domain}`;
      if (guest.role?.type === "step-ca" && host.toLowerCase() === caName.toLowerCase()) {
        this.log.problem(
          guest.ref("traefik_service"),
          "warning",
          `the old Traefik routed ${host} to the CA; in Phoenix ${caName} is the CA's own name, which guests reach at the CA directly, and a gateway route there would have the CA validate the gateway's certificate at itself and refuse it. No route; service ${String(s.name)} stays for Traefik`,
          // 9000: the step-ca role's default port (stacks/schema.ts), which the importer leaves unset.
          `nothing to change: clients reach the CA at https://${caName}:9000`,
        );
        continue;
      }
      const message = `${host} → service ${String(s.name)}, as the old Traefik routed it by host name`;
      if (isPortainer) this.log.mapped(hv("portainer_api.portainer_hostname"), `routes[${routes.length}].host`, message);
      else this.log.check(guest.ref("traefik_service"), `routes[${routes.length}]`, message);
      routes.push({ host, service: s.name, websocket: isPortainer || undefined });
    }
    if (portainer !== undefined && !routes.some((r) => r.host === portainer)) this.log.unsupported(hv("portainer_api.portainer_hostname"), "no Portainer server with a traefik_service to route it to");
    return routes;
  }

  private firewall(): Obj {
    const fw = this.src.hyp.shared_volumes?.firewall;
    const base = "shared_volumes.firewall";
    if (!fw) {
      this.log.check(hv(""), "firewall.enabled", "no firewall in the legacy config: left off (enabled: false). Phoenix's default is on, inbound DROP; turn it on once the guest rules are reviewed");
      return { enabled: false };
    }
    this.log.trace("firewall", hv(base));
    const policy = (value: string | undefined, field: string, target: string) => {
      if (value === undefined) return undefined;
      this.log.mapped(hv(`${base}.${field}`), target);
      return value.toUpperCase();
    };
    if (fw.enabled !== undefined) this.log.mapped(hv(`${base}.enabled`), "firewall.enabled");
    return {
      enabled: fw.enabled ?? true,
      policyIn: policy(fw.default_input_policy, "default_input_policy", "firewall.policyIn"),
      policyOut: policy(fw.default_output_policy, "default_output_policy", "firewall.policyOut"),
      rules: this.rules(fw.global_firewall_rules ?? [], (i) => hv(`${base}.global_firewall_rules[${i}]`), "firewall.rules"),
    };
  }

  private guestFirewall(ref: LegacyRef, fw: { enabled?: boolean; rules?: LegacyFirewallRule[] } | undefined, at: string): Obj {
    if (!fw) {
      this.log.check(ref, `${at}.enabled`, "no firewall section: left off, as it was; Phoenix's default is on with inbound DROP");
      return { enabled: false };
    }
    const rules = this.rules(fw.rules ?? [], (i) => ({ file: ref.file, path: `${ref.path}.rules[${i}]` }), `${at}.rules`);
    if (fw.enabled !== undefined) this.log.mapped({ file: ref.file, path: `${ref.path}.enabled` }, `${at}.enabled`);
    return { enabled: fw.enabled ?? true, rules };
  }

  /** Legacy rules, with exact duplicates dropped: PVE would have applied the same rule twice. */
  private rules(legacy: LegacyFirewallRule[], ref: (i: number) => LegacyRef, at: string): Obj[] {
    const rules: Obj[] = [];
    const seen = new Map<string, number>();
    legacy.forEach((r, i) => {
      const rule: Obj = {
        type: r.type?.toLowerCase(),
        action: r.action?.toUpperCase(),
        macro: r.macro,
        proto: r.proto?.toLowerCase(),
        source: r.source,
        dest: r.dest,
        dport: r.port === undefined ? undefined : String(r.port),
        comment: r.comment,
      };
      const key = JSON.stringify({ ...rule, comment: undefined });
      const first = seen.get(key);
      if (first !== undefined) {
        this.log.problem(ref(i), "warning", `the same rule as ${ref(first).path}: removed`, "delete the duplicate");
        return;
      }
      seen.set(key, i);
      this.log.mapped(ref(i), `${at}[${rules.length}]`);
      rules.push(rule);
    });
    return rules;
  }
}

/** A Pulumi config key for a stack's secret variable: qdrant_service + QDRANT__SERVICE__API_KEY → qdrantServiceApiKey. */
export function secretKeyName(stack: string, variable: string): string {
  const split = (s: string) => s.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
  const stackWords = split(stack);
  const varWords = split(variable);
  // Variables usually repeat the stack's name; saying it once keeps the key readable.
  const repeated = stackWords.findIndex((w, i) => varWords[i] !== w);
  const words = [...stackWords, ...varWords.slice(repeated === -1 ? stackWords.length : repeated)];
  return words.map((w, i) => (i === 0 ? w : w.charAt(0).toUpperCase() + w.slice(1))).join("");
}

/** Why a legacy string is a secret (its field's name, its shape, or a NAME=value inside it), or undefined. */
function secretIn(key: string, value: string): string | undefined {
  if (value === "") return undefined;
  if (isSecretName(key)) return key;
  const kind = secretValueKind(value);
  if (kind) return `${kind} in ${key}`;
  const assigned = [...value.matchAll(/\b([A-Za-z_][A-Za-z0-9_]*)=(\S+)/g)].find((m) => isSecretName(m[1]!));
  return assigned ? `${assigned[1]!} in ${key}` : undefined;
}

/** The strings to keep out of every output: each secret value, and its parts (a URL's password, NAME=value's value). */
function secretStrings(value: string): string[] {
  const assigned = [...value.matchAll(/\b([A-Za-z_][A-Za-z0-9_]*)=(\S+)/g)].filter((m) => isSecretName(m[1]!)).map((m) => m[2]!);
  return [...secretParts(value), ...assigned];
}

/**
 * Secrets written into the legacy files, found by field name and by value
 * shape, each reported once with what to do; the Portainer password maps to
 * its Phoenix secret. Returns every secret string, so that no output echoes one.
 */
function findPlainTextSecrets(log: ImportLog, input: LegacyInput): Set<string> {
  const secrets = new Set<string>();
  const files: [LegacyFileName, unknown][] = [
    [LEGACY_FILES.hypervisor, input.hypervisor],
    [LEGACY_FILES.lxc, input.lxc],
    [LEGACY_FILES.vm, input.vm],
    [LEGACY_FILES.stacks, input.stacks],
  ];
  const known: Record<string, string> = { "portainer_api.admin_password": "portainerAdminPassword" };
  for (const [file, raw] of files) {
    const reported = (path: string) => log.entries.some((e) => e.kind === "secret" && e.source.file === file && (e.source.path === path || path.startsWith(`${e.source.path}.`)));
    const report = (path: string, what: string) => {
      if (reported(path)) return;
      const phoenixKey = known[path];
      if (phoenixKey) log.secret({ file, path }, `${what} (set it as phoenix:${phoenixKey})`, `\`${setSecretCommand(phoenixKey)}\``);
      else log.secret({ file, path }, `${what}: no Phoenix setting takes it`, "delete it from the legacy file and rotate it; if a Docker stack needs it, map it in that stack's secretEnv and set it with `pulumi config set --secret phoenix:<key> <value>`");
    };
    const walk = (value: unknown, path: string): void => {
      if (value === null || typeof value !== "object") return;
      const record = value as Record<string, unknown>;
      // Stack variables are {name, value} pairs: the name or the value says whether the value is a secret.
      if (typeof record.name === "string" && typeof record.value === "string" && isSecretVariable(record.name, record.value)) {
        secretStrings(record.value).forEach((x) => secrets.add(x));
        return report(`${path}.value`, `variable ${record.name}`);
      }
      for (const [key, child] of Object.entries(record)) {
        const childPath = Array.isArray(value) ? `${path}[${key}]` : path ? `${path}.${key}` : key;
        const what = typeof child === "string" ? secretIn(Array.isArray(value) ? path.split(".").at(-1)!.replace(/\[\d+\]$/, "") : key, child) : undefined;
        if (what) {
          secretStrings(child as string).forEach((x) => secrets.add(x));
          report(childPath, what);
        } else walk(child, childPath);
      }
    };
    walk(raw, "");
  }
  return secrets;
}
