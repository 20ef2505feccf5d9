/**
 * `bun run build [name...]`: compiles each services/<name>/main.ts that exists into one
 * self-contained executable, dist/<name> (docs/design.md §7). Lua scripts are text imports, so they embed.
 *
 *   BUILD_OUT_DIR  output directory (default <repo>/dist)
 *   BUILD_TARGET   bun --target, e.g. bun-linux-x64 or bun-linux-arm64 (default: this machine)
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { SERVICE_NAMES, SERVICES, type ServiceName } from "../shared/services.ts";

export const REPO_ROOT = resolve(import.meta.dir, "..");

/** The services whose main.ts exists, in the registry's order (shared/services.ts). */
export function existingServices(root = REPO_ROOT): ServiceName[] {
  return SERVICE_NAMES.filter((s) => existsSync(join(root, "services", s, "main.ts")));
}

export interface BuildResult {
  name: string;
  outfile: string;
  ms: number;
}

/** `bun build --compile services/<name>/main.ts --outfile <outDir>/<name>`; throws with bun's output on failure. */
export async function buildService(name: string, outDir: string, target?: string): Promise<BuildResult> {
  const entry = join(REPO_ROOT, "services", name, "main.ts");
  if (!existsSync(entry)) throw new Error(`no ${entry}`);
  mkdirSync(outDir, { recursive: true });
  const outfile = join(outDir, name);
  const args = [
    "build",
    "--compile",
    // Syntax-only minification keeps names and lines readable in stack traces (no separate source map to ship).
    "--minify-syntax",
    ...(target ? [`--target=${target}`] : []),
    // Flags for the runtime itself (e.g. the api's header limit), from the registry.
    ...(SERVICES[name as ServiceName]?.runtimeFlags ?? []).map((flag) => `--compile-exec-argv=${flag}`),
    entry,
    "--outfile",
    outfile,
  ];
  const started = performance.now();
  const proc = Bun.spawn([process.execPath, ...args], { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`bun build --compile ${name} failed (exit ${code}):\n${out}${err}`);
  return { name, outfile, ms: Math.round(performance.now() - started) };
}

if (import.meta.main) {
  const requested = process.argv.slice(2);
  const available = existingServices();
  const unknown = requested.filter((n) => !(available as string[]).includes(n));
  if (unknown.length) {
    console.error(`build: no services/<name>/main.ts for: ${unknown.join(", ")} (available: ${available.join(", ") || "none"})`);
    process.exit(2);
  }
  const names = requested.length ? requested : available;
  if (!names.length) {
    console.error("build: no services/<name>/main.ts yet");
    process.exit(1);
  }
  const outDir = resolve(process.env.BUILD_OUT_DIR || join(REPO_ROOT, "dist"));
  const target = process.env.BUILD_TARGET || undefined;
  let failed = 0;
  for (const name of names) {
    try {
      const r = await buildService(name, outDir, target);
      const size = Bun.file(r.outfile).size;
      console.log(`build: ${r.outfile} (${(size / 1024 / 1024).toFixed(1)} MiB, ${r.ms} ms)`);
    } catch (e) {
      failed++;
      console.error((e as Error).message);
    }
  }
  process.exit(failed ? 1 : 0);
}
