import { createServer, connect, type Socket } from "net";

export interface DroppingProxy {
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

/**
 * A TCP relay to 127.0.0.1:targetPort that cuts the first `dropFirst` connections `afterMs`
 * after they open, so a client sees its session die mid-command, as on a flaky link.
 */
export async function startDroppingProxy(targetPort: number, opts: { dropFirst: number; afterMs: number }): Promise<DroppingProxy> {
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    accepted++;
    const upstream = connect(targetPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    if (accepted <= opts.dropFirst) {
      setTimeout(() => {
        client.destroy();
        upstream.destroy();
      }, opts.afterMs);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  if (!addr || typeof addr !== "object") throw new Error("proxy: no address");
  return {
    port: addr.port,
    connections: () => accepted,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
