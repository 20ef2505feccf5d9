/**
 * The docs name only what exists: every repo path (a link, or a path in backticks such as
 * `shared/domain/keys.ts`) and every `bun run <script>` in README.md, docs/ and loadtests/README.md.
 * A file moved or a script renamed fails here instead of sending a newcomer to nothing.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const scripts = new Set(Object.keys((JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts));

function markdownFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return markdownFiles(path);
    return name.endsWith(".md") ? [path] : [];
  });
}
const docs = [join(ROOT, "README.md"), join(ROOT, "loadtests", "README.md"), ...markdownFiles(join(ROOT, "docs"))];

/**
 * A backticked repo path: starts at a top-level folder or is a top-level file; no placeholders
 * (`<name>`, `…`, `*`). `a/{b,c}.ts` names both.
 */
const REPO_PATH = /^(?:(?:services|shared|scripts|loadtests|test|docs|migrations|ops|patches)\/[\w.@/{},-]*|package\.json|compose\.yaml|Dockerfile|bunfig\.toml|tsconfig\.json|knip\.jsonc|redocly\.yaml|\.dependency-cruiser\.cjs)$/;

interface Reference {
  text: string;
  path: string;
}

function pathsIn(file: string, text: string): Reference[] {
  const found: Reference[] = [];
  for (const m of text.matchAll(/(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)/g)) {
    const target = (m[1] ?? m[2])!.split("#")[0]!;
    if (!target || /^[a-z]+:/i.test(target)) continue;
    found.push({ text: m[0], path: resolve(dirname(file), decodeURIComponent(target)) });
  }
  for (const m of text.matchAll(/`([^`\n]+)`/g)) {
    const span = m[1]!.trim();
    if (REPO_PATH.test(span)) for (const path of expandBraces(span)) found.push({ text: m[0], path: join(ROOT, path) });
  }
  return found;
}

function expandBraces(path: string): string[] {
  const m = /\{([^{}]*)\}/.exec(path);
  if (!m) return [path];
  return m[1]!.split(",").flatMap((part) => expandBraces(path.slice(0, m.index) + part + path.slice(m.index + m[0].length)));
}

describe.each(docs.map((file) => [relative(ROOT, file), file] as const))("%s", (_name, file) => {
  const text = readFileSync(file, "utf8");

  test("every repo path it names exists", () => {
    const missing = pathsIn(file, text).filter((r) => !existsSync(r.path)).map((r) => `${r.text} → ${relative(ROOT, r.path)}`);
    expect(missing).toEqual([]);
  });

  test("every `bun run <script>` it names is in package.json", () => {
    const named = [...text.matchAll(/\bbun run (?:--silent )?([a-z][\w:-]*)/g)].map((m) => m[1]!);
    expect(named.filter((name) => !scripts.has(name))).toEqual([]);
  });
});

test("the README stays a five-minute read: at most 250 lines", () => {
  expect(readFileSync(join(ROOT, "README.md"), "utf8").split("\n").length).toBeLessThanOrEqual(250);
});
