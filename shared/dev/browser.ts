/**
 * A real headless Chromium (Debian's package, `bash scripts/install.sh browser`) driven by
 * puppeteer-core, which never downloads a browser. Every page records what a person would see go
 * wrong: console errors, uncaught exceptions, failed requests, and any request leaving 127.0.0.1.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const RESULTS_DIR = join(import.meta.dir, "..", "..", "loadtests", "results");

export interface WatchedPage {
  page: Page;
  /** Console errors, page errors and failed or off-box requests, in order. */
  problems: string[];
  /** URLs of every request the page made. */
  requests: string[];
}

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: run \`bash scripts/install.sh browser\``);
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in CI containers needs --no-sandbox; a small /dev/shm needs the disk instead.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run", "--disable-extensions"],
  });
}

/** A new page whose problems are recorded; requests to anything but 127.0.0.1 are blocked (offline check). */
export async function watchedPage(browser: Browser, extraHeaders: Record<string, string> = {}): Promise<WatchedPage> {
  const page = await browser.newPage();
  const problems: string[] = [];
  const requests: string[] = [];
  await page.setViewport({ width: 1280, height: 900 });
  if (Object.keys(extraHeaders).length > 0) await page.setExtraHTTPHeaders(extraHeaders);
  await page.setRequestInterception(true);
  page.on("request", (request) => {
    const url = request.url();
    requests.push(url);
    if (/^(data|blob):/.test(url) || new URL(url).hostname === "127.0.0.1") return void request.continue();
    problems.push(`off-box request blocked: ${url}`);
    void request.abort("blockedbyclient");
  });
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${(err as Error).message ?? String(err)}`));
  page.on("requestfailed", (request) => {
    // An EventSource closed by the test's navigation away is not a failure of the page.
    if (request.failure()?.errorText === "net::ERR_ABORTED" && request.url().includes("/events")) return;
    if (!problems.some((p) => p.includes(request.url()))) problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
  });
  return { page, problems, requests };
}

export function resultPath(name: string): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  return join(RESULTS_DIR, name);
}
