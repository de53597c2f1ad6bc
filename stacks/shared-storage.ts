/**
 * Which storages PVE treats as shared (reachable with the same volumes from every node they are
 * on), the one list Phoenix, its validation and the PVE simulator use.
 *
 * pve-storage src/PVE/Storage/Plugin.pm @SHARED_STORAGE (9.1.7, 0c56bad): storage.cfg's parser
 * sets `shared` on every storage of these types; any other type is shared only when its own
 * `shared` flag says so (a dir, lvm or btrfs storage the admin marks shared). `glusterfs` was in
 * the list until pve-storage 9.0 dropped the type (7669a99, "drop support for using GlusterFS
 * directly"); it stays here for PVE 8 nodes.
 */
export const SHARED_STORAGE_TYPES: ReadonlySet<string> = new Set(["iscsi", "nfs", "cifs", "rbd", "cephfs", "iscsidirect", "glusterfs", "zfs", "drbd", "pbs"]);

/** Whether a storage of this type, with this `shared` flag (storage.cfg's, or the API's 0/1), is shared. */
export const isSharedStorage = (type: string | undefined, shared?: boolean | number | string): boolean =>
  (type !== undefined && SHARED_STORAGE_TYPES.has(type)) || shared === true || shared === 1 || shared === "1";
