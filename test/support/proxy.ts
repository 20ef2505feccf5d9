/**
 * A TCP proxy on 127.0.0.1 in front of a real server, for outages a test can switch on and off
 * without touching the shared server: cut() drops every connection and refuses new ones, open()
 * lets them through again. Opened late on a port chosen beforehand, it is a server that is "not up
 * yet" at a client's start (test/start-up.test.ts).
 */
import { connect, createServer, type Server, type Socket } from "node:net";

/** A TCP proxy that can be cut (every connection dropped, new ones refused) and restored. */
export class CuttableProxy {
  private server: Server | null = null;
  private sockets = new Set<Socket>();
  /** 0: the kernel picks one at open(); a port set beforehand is where a client can be pointed before the proxy opens. */
  port: number;
  constructor(
    private readonly target: { host: string; port: number },
    port = 0,
  ) {
    this.port = port;
  }

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      this.sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
    });
    await new Promise<void>((resolve) => server.listen(this.port, "127.0.0.1", resolve));
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
