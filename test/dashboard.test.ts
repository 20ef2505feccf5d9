/**
 * The live dashboard in Debian's Chromium: an api (in-process, real Redis) and a real relay child
 * process that it scrapes; the page on the api's admin port; buyers allocate over HTTP while it is open. The page asks
 * for the admin token (a login form; a wrong one is refused), then must run without a console error,
 * its numbers must move while allocations run, and once they stop it must show exactly what
 * GET /api/stocks/:id says. The screenshot goes to loadtests/results/dashboard.png.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import type { Browser } from "puppeteer-core";
import { freePort } from "../shared/dev/env.ts";
import { createTestApi, TEST_ADMIN_TOKEN, type TestApi } from "./support/api.ts";
import { launchBrowser, resultPath, watchedPage } from "../shared/dev/browser.ts";
import { createHarness, SHARDS, spawnRelay, type Harness } from "./support/relay-harness.ts";

// page.evaluate callbacks run in the browser; the test program is type-checked without the DOM lib.
interface El {
  textContent: string | null;
  querySelector(selector: string): El | null;
  classList: { contains(name: string): boolean };
}
declare const document: El & { body: { dataset: Record<string, string | undefined> }; querySelectorAll(selector: string): { length: number } };
declare const window: unknown;
declare const sessionStorage: { getItem(key: string): string | null };

let RELAY_ADMIN_PORT = 0;
const UNITS = 400;
const BUYERS = 600;

let h: Harness;
let api: TestApi;
let relay: Subprocess;
let browser: Browser;
let base: string;
let adminBase: string;

beforeAll(async () => {
  h = createHarness("dash");
  // A free port, not a fixed one: a fixed port of a parallel run (or a relay still draining) was taken once.
  RELAY_ADMIN_PORT = await freePort();
  relay = spawnRelay(h.env({ ADMIN_PORT: String(RELAY_ADMIN_PORT) }));
  api = createTestApi({ prefix: h.prefix, shards: SHARDS, workerMetricsUrls: [`http://127.0.0.1:${RELAY_ADMIN_PORT}/metrics`] });
  base = api.listen();
  adminBase = api.listenAdmin();
  browser = await launchBrowser();
  // The relay is up when its admin port answers.
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${RELAY_ADMIN_PORT}/readyz`).then((r) => r.ok, () => false)) break;
    await Bun.sleep(100);
  }
});

afterAll(async () => {
  await browser?.close();
  relay?.kill("SIGTERM");
  await relay?.exited;
  await api?.close();
  await h?.cleanup();
});

interface ShownStock {
  available: number;
  held: number;
  sold: number;
}

async function shown(page: import("puppeteer-core").Page, stockId: string): Promise<ShownStock | null> {
  return page.evaluate((id) => {
    const card = document.querySelector(`[data-stock="${id}"]`);
    if (!card) return null;
    const field = (name: string) => Number(card.querySelector(`[data-field="${name}"]`)?.textContent);
    return { available: field("available"), held: field("held"), sold: field("sold") };
  }, stockId);
}

test("the dashboard follows a sale live and agrees with GET /api/stocks/:id", async () => {
  const stockId = "dash-sneaker";
  const created = await api.request("POST", "/api/stocks", {
    headers: api.admin,
    body: { id: stockId, name: "Sneaker 42", price: 12900, quantity: UNITS, perUserLimit: 2 },
  });
  expect(created.status).toBe(201);

  // On the operators' port only, like /metrics: the public port does not have it.
  expect((await fetch(`${base}/dashboard`)).status).toBe(404);

  // Without the token the page is a login form and no data leaves the api; a wrong token is refused.
  const stranger = await watchedPage(browser);
  await stranger.page.goto(`${adminBase}/dashboard?stocks=${stockId}`, { waitUntil: "domcontentloaded" });
  await stranger.page.waitForSelector("#login.shown", { timeout: 5_000 });
  expect(await stranger.page.evaluate(() => document.querySelector("#main")!.classList.contains("hidden"))).toBe(true);
  await stranger.page.type("#token", "not-the-admin-token-at-all");
  await stranger.page.click("#login button[type=submit]");
  await stranger.page.waitForFunction(() => document.querySelector("#login-error")?.textContent === "that token was refused", { timeout: 5_000 });
  // The browser reports the refusal too: the one problem of that page.
  expect(stranger.problems.filter((p) => !p.includes("status of 401"))).toEqual([`HTTP 401: ${adminBase}/dashboard/events?stocks=${stockId}`]);
  expect(await stranger.page.evaluate(() => document.body.dataset.updates ?? "0")).toBe("0");
  await stranger.page.screenshot({ path: resultPath("dashboard-login.png") });
  await stranger.page.close();

  const { page, problems, requests } = await watchedPage(browser);
  await page.goto(`${adminBase}/dashboard?stocks=${stockId}`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#login.shown", { timeout: 5_000 });
  await page.type("#token", TEST_ADMIN_TOKEN);
  await page.click("#login button[type=submit]");
  await page.waitForFunction(() => Number(document.body.dataset.updates ?? 0) >= 2, { timeout: 15_000 });
  // Kept for this tab only, and never put in a URL.
  expect(await page.evaluate(() => sessionStorage.getItem("flashsale.adminToken"))).toBe(TEST_ADMIN_TOKEN);
  expect(requests.some((url) => url.includes(TEST_ADMIN_TOKEN))).toBe(false);
  expect(await shown(page, stockId)).toEqual({ available: UNITS, held: 0, sold: 0 });

  // Buyers over real HTTP, ~200/s, while the page is open; every third one buys what it held.
  const seen = new Set<number>();
  let allocating = true;
  const watcher = (async () => {
    while (allocating) {
      const s = await shown(page, stockId);
      if (s) seen.add(s.available);
      await Bun.sleep(200);
    }
  })();
  const statuses = new Map<number, number>();
  for (let i = 0; i < BUYERS; i += 20) {
    await Promise.all(
      Array.from({ length: 20 }, async (_, j) => {
        const headers = await api.user(`buyer${i + j}`);
        const res = await api.request("POST", `/api/stocks/${stockId}/allocate`, { headers, body: { quantity: 1 } });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status === 201 && (i + j) % 3 === 0) {
          const { allocationId } = (await res.json()) as { allocationId: string };
          await api.request("POST", `/api/allocations/${allocationId}/purchase`, { headers });
        }
      }),
    );
    await Bun.sleep(100);
  }
  // The outcome sparklines saw 201s and sold_outs per second while it ran.
  const maxRate = (name: string) =>
    page.evaluate((n) => Math.max(0, ...((window as unknown as { __lastSnapshot: { outcomes: Record<string, number[]> } }).__lastSnapshot.outcomes[n] ?? [])), name);
  await Bun.sleep(1500);
  allocating = false;
  await watcher;
  expect(statuses.get(201)).toBe(UNITS);
  expect(statuses.get(409)).toBe(BUYERS - UNITS);
  expect(await maxRate("201")).toBeGreaterThan(0);
  expect(await maxRate("sold_out")).toBeGreaterThan(0);
  // Live: the page showed the count going down through several values, not just before and after.
  expect(seen.size).toBeGreaterThanOrEqual(3);

  // Settled: what the page shows is what the api answers.
  const truth = (await (await api.request("GET", `/api/stocks/${stockId}`)).json()) as ShownStock & { status: string };
  await page.waitForFunction(
    (id, sold) => document.querySelector(`[data-stock="${id}"] [data-field="sold"]`)?.textContent === String(sold),
    { timeout: 5_000 },
    stockId,
    truth.sold,
  );
  expect(await shown(page, stockId)).toEqual({ available: truth.available, held: truth.held, sold: truth.sold });
  expect(truth.available).toBe(0);
  expect(await page.$eval(`[data-stock="${stockId}"] .soldout`, (el) => el.textContent ?? "")).toContain("sold out at");

  // The relay's shards, scraped from its /metrics, and its target shown up.
  await page.waitForFunction((n) => document.querySelectorAll("#shards [data-shard]").length === n, { timeout: 5_000 }, SHARDS);
  expect(await page.$eval(".targets .up", (el) => el.textContent)).toBe("relay");

  await page.screenshot({ path: resultPath("dashboard.png"), fullPage: true });
  expect(problems).toEqual([]);
});
