/**
 * The README's two commands on a machine that lacks things: scripts/install.sh installs the pinned
 * Bun into an empty home and leaves it usable, and a failed `stack.sh up` stops the servers that very
 * run started instead of leaving them behind (a bare machine once kept Kafka and Elasticsearch
 * running after Redis was found missing).
 *
 * Both run real processes: npm fetches Bun from the registry, and the failed `up` starts a real
 * redis-server on a private port and a real Kafka JVM that cannot start.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../shared/dev/env.ts";

const REPO_ROOT = join(import.meta.dir, "..");
const BUN_VERSION = (await Bun.file(join(REPO_ROOT, "package.json")).json()).packageManager.replace("bun@", "");

async function run(cmd: string[], env: Record<string, string | undefined>) {
  const child = Bun.spawn(cmd, { cwd: REPO_ROOT, env, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { stdout, stderr, code };
}

function portOpen(port: number): Promise<boolean> {
  return Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, open(s) { s.end(); } } }).then(
    () => true,
    () => false,
  );
}

/** A PATH without any Bun on it, as on a bare machine. */
function pathWithoutBun(): string {
  return (process.env.PATH ?? "")
    .split(":")
    .filter((d) => d && !d.includes(".bun") && !Bun.spawnSync(["test", "-x", join(d, "bun")]).success)
    .join(":");
}

describe("scripts/install.sh", () => {
  test("installs the pinned Bun into an empty home and says how to put it on PATH", async () => {
    const home = mkdtempSync(join(tmpdir(), "fs-home-"));
    try {
      const { stderr, code } = await run(["bash", "scripts/install.sh", "bun"], {
        ...process.env, // the machine's registry and CA settings
        HOME: home,
        PATH: pathWithoutBun(),
        FLASHSALE_CACHE_DIR: join(home, "cache"),
      });
      expect(code).toBe(0);
      expect(stderr).toContain(`installing Bun ${BUN_VERSION}`);
      const bun = join(home, ".bun", "bin", "bun");
      expect(Bun.spawnSync([bun, "--version"]).stdout.toString().trim()).toBe(BUN_VERSION);
      // Not root's own ~/.bun, so no /usr/local/bin link: the user is told the PATH line instead.
      expect(stderr).toContain(`export PATH="${join(home, ".bun", "bin")}:$PATH"`);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }, 180_000);
});

describe("scripts/stack.sh up", () => {
  test("a failed up stops the servers it started and leaves no process behind", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-stack-"));
    const [redisPort, kafkaPort, controllerPort] = [freePort(), freePort(), freePort()];
    try {
      const { code, stderr } = await run(["bash", "scripts/stack.sh", "up", "redis", "kafka"], {
        ...process.env,
        FLASHSALE_STACK_DIR: dir,
        FLASHSALE_REDIS_PORT: String(redisPort),
        FLASHSALE_KAFKA_PORT: String(kafkaPort),
        FLASHSALE_KAFKA_CONTROLLER_PORT: String(controllerPort),
        // The JVM refuses this heap size at once, so Kafka fails after Redis has started.
        FLASHSALE_KAFKA_HEAP: "1x",
      });
      expect(code).not.toBe(0);
      expect(stderr).toContain("not up: kafka");
      expect(stderr).toContain("stopping redis, which this failed run started");
      expect(await portOpen(redisPort)).toBe(false);
      const leftovers = Bun.spawnSync(["pgrep", "-f", `--port ${redisPort}|${dir}`]).stdout.toString().trim();
      expect(leftovers).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
