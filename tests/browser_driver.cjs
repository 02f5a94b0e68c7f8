// Drives one headless Chromium page for tests/browser.py: one JSON command a line on
// stdin, one JSON answer a line on stdout. Keeps every console error or warning, page
// error and failed request, for `problems`.
"use strict";

const readline = require("node:readline");
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const problems = [];
let browser = null;
let page = null;

async function start() {
  const [width, height] = (process.env.VIEWPORT || "1280x900").split("x").map(Number);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    // No sandbox: the tests run as root in a container, where Chromium refuses it.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const context = await browser.newContext({ viewport: { width, height } });
  page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() === "error" || msg.type() === "warning") {
      problems.push(`console ${msg.type()}: ${msg.text()}`);
    }
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("requestfailed", (req) => {
    problems.push(`request failed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`);
  });
  page.on("dialog", (dialog) => dialog.accept()); // "Delete this session?" and the like
}

const commands = {
  async ready() {
    await start();
  },
  async goto({ url }, timeout) {
    await page.goto(url, { timeout, waitUntil: "load" });
  },
  async wait({ selector, state }, timeout) {
    await page.locator(selector).first().waitFor({ state, timeout });
  },
  // Polled from here: page.waitForFunction evaluates a string with eval() inside the
  // page, which the dashboard's Content-Security-Policy (rightly) forbids.
  async waitFunction({ expression }, timeout) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const value = await page.evaluate(expression);
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms: ${expression}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  },
  async click({ selector }, timeout) {
    await page.locator(selector).first().click({ timeout });
  },
  async fill({ selector, value }, timeout) {
    await page.locator(selector).first().fill(value, { timeout });
  },
  async texts({ selector }) {
    return page.locator(selector).allInnerTexts();
  },
  async evaluate({ expression }) {
    return page.evaluate(expression);
  },
  async screenshot({ path, fullPage }, timeout) {
    await page.screenshot({ path, fullPage, timeout });
  },
  async problems() {
    return problems.slice();
  },
  async close() {
    if (browser) await browser.close();
    browser = null;
  },
};

const lines = readline.createInterface({ input: process.stdin });
(async () => {
  for await (const line of lines) {
    const { id, cmd, args, timeout } = JSON.parse(line);
    let answer;
    try {
      const value = await commands[cmd](args || {}, timeout);
      answer = { id, ok: true, value: value === undefined ? null : value };
    } catch (err) {
      answer = { id, ok: false, error: String(err && err.stack ? err.stack : err) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
    if (cmd === "close") break;
  }
  if (browser) await browser.close();
  process.exit(0);
})();
