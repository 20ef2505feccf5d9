/**
 * /docs renders the API reference offline: Chromium loads it from the api alone (every request to
 * another host is blocked and counted as a failure) and shows the operations of /openapi.json.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Browser } from "puppeteer-core";
import { createTestApi } from "./support/api.ts";
import { launchBrowser, resultPath, watchedPage } from "../shared/dev/browser.ts";

const api = createTestApi();
let browser: Browser;
let base: string;

beforeAll(async () => {
  base = api.listen();
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await api.close();
});

test("/docs shows every operation of the OpenAPI document without leaving 127.0.0.1", async () => {
  const doc = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
  const operations = Object.values(doc.paths).reduce((n, methods) => n + Object.keys(methods).length, 0);
  expect(operations).toBeGreaterThan(5);

  const { page, problems, requests } = await watchedPage(browser);
  await page.goto(`${base}/docs`, { waitUntil: "networkidle0" });
  await page.waitForSelector(".opblock", { timeout: 15_000 });
  const shown = await page.$$eval(".opblock", (blocks) => blocks.length);
  const title = await page.$eval(".info .title", (el) => el.textContent ?? "");
  await page.screenshot({ path: resultPath("docs.png") });

  expect(problems).toEqual([]);
  expect(requests.every((url) => url.startsWith(base) || url.startsWith("data:"))).toBe(true);
  expect(requests.some((url) => url.endsWith("/swagger-ui-bundle.js"))).toBe(true);
  expect(title).toContain("flash-sale api");
  expect(shown).toBe(operations);
});
