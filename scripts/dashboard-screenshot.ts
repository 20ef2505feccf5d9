/**
 * `bun scripts/dashboard-screenshot.ts [out.png] [-- load args]`: runs `bun run load spike --pipeline`
 * (or the load arguments given after --), opens the api's live dashboard in Debian's Chromium while
 * it runs (signed in with the run's admin token, which the load runner prints with the dashboard's URL),
 * and writes a screenshot every second of the sale to loadtests/results/dashboard-shots/;
 * the one with the most units held or sold while units were still moving is copied to out.png
 * (default loadtests/results/dashboard-spike.png). docs/img/dashboard.png was made this way.
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { launchBrowser, RESULTS_DIR } from "../shared/dev/browser.ts";

const split = process.argv.indexOf("--");
const out = (split === 2 ? undefined : process.argv[2]) ?? join(RESULTS_DIR, "dashboard-spike.png");
const loadArgs = split >= 0 ? process.argv.slice(split + 1) : ["spike", "--pipeline"];
const shots = join(RESULTS_DIR, "dashboard-shots");
mkdirSync(shots, { recursive: true });

const load = Bun.spawn([process.execPath, "loadtests/run.ts", ...loadArgs], { cwd: join(import.meta.dir, ".."), stdout: "pipe", stderr: "inherit" });
const browser = await launchBrowser();
const page = await browser.newPage();
await page.setViewport({ width: 1280, height: 860 });
let best = { score: -1, file: "" };
let shooting: Promise<void> | undefined;
let n = 0;
let stopped = false;

async function shoot(): Promise<void> {
  while (!stopped) {
    await Bun.sleep(1000);
    const file = join(shots, `shot-${String(++n).padStart(3, "0")}.png`);
    await page.screenshot({ path: file });
    // Units committed (held + sold) on screen, counted only while some stock still moves.
    const score = await page.evaluate(`(() => {
      const s = window.__lastSnapshot; if (!s) return -1;
      const moving = s.stocks.some((x) => (x.rate[x.rate.length - 1] || 0) > 0) || (s.outcomes["201"].at(-1) || 0) > 0;
      return moving ? s.stocks.reduce((a, x) => a + x.held + x.sold, 0) : -1;
    })()`);
    if (typeof score === "number" && score > best.score) best = { score, file };
  }
}

const decoder = new TextDecoder();
for await (const chunk of load.stdout as ReadableStream<Uint8Array>) {
  const text = decoder.decode(chunk);
  process.stdout.write(text);
  const live = /\[load\] live dashboard: (\S+) \(admin token: (\S+)\)/.exec(text);
  const url = live?.[1];
  if (live && url && !shooting) {
    // The page keeps the token in sessionStorage (its login form); put it there before the page runs.
    await page.evaluateOnNewDocument((token: string) => sessionStorage.setItem("flashsale.adminToken", token), live[2]!);
    await page.goto(url, { waitUntil: "domcontentloaded" });
    shooting = shoot().catch(() => {});
  }
  if (/\[load\] \w+: k6 /.test(text)) stopped = true; // the sale is over: the verifier runs
}
stopped = true;
await shooting;
await browser.close();
await load.exited;
if (!best.file) throw new Error("no screenshot taken while units moved");
copyFileSync(best.file, out);
console.log(`[shot] ${out} (from ${best.file}, ${best.score} units held or sold on screen)`);
