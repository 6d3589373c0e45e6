/**
 * The web app end to end in a real browser (Debian's chromium driven by playwright-core; .ci/run
 * installs it): upload the demo scene, invert it (npi, 10 steps), make a colour swap by typing the
 * edited prompt and clicking the shape word to blend, and check the edited image with the scene
 * checker. Screenshots of each stage go to test-output/browser/ (git-ignored). If chromium cannot
 * start, the test fails.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { NullTextPipeline } from "../../src/pipeline.js";
import { checkPrompt } from "../../src/scenes/index.js";
import { type RunningServer, startServer } from "../../src/server/app.js";
import { decodePng, demoScene, MODEL, pngBytes } from "../server/helpers.js";

const SHOTS = path.resolve("test-output/browser");
const data = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-browser-"));
let pipe: NullTextPipeline;
let server: RunningServer;
let browser: Browser;

beforeAll(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  pipe = await NullTextPipeline.load(MODEL, { threads: 2 });
  server = await startServer({ pipe, data, port: 0 });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await pipe?.release();
});

it("inverts the demo scene and makes a colour swap by clicking the word to blend", async () => {
  const demo = demoScene();
  const file = path.join(data, "scene.png");
  fs.writeFileSync(file, await pngBytes(demo.image));
  const page = await browser.newPage({ viewport: { width: 1150, height: 1400 } });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(server.url);
  await page.locator("#method option[value=npi]").waitFor({ state: "attached" });
  expect(await page.locator("#method option[value=npi]").textContent()).toMatch(/npi — about .* s/);

  // 1. choose the photo, describe it, invert with npi at 10 steps
  await page.setInputFiles("#file", file);
  await page.fill("#prompt", demo.prompt);
  await page.selectOption("#method", "npi");
  await page.fill("#steps", "10");
  await page.locator("#invert:not([disabled])").waitFor();
  await page.screenshot({ path: path.join(SHOTS, "1-upload.png") });
  await page.click("#invert");
  await page
    .locator("#invert-progress .text")
    .filter({ hasText: /\d+\/\d+/ })
    .waitFor({ timeout: 60_000 });
  await page.screenshot({ path: path.join(SHOTS, "2-inverting.png") });

  // 2. the inversion: reconstruction with PSNR, token chips of the attention maps
  await page
    .locator("#inv-quality")
    .filter({ hasText: /PSNR \d+\.\d+ dB/ })
    .waitFor({ timeout: 90_000 });
  await page.locator(`#inv-tokens span[data-token="${demo.shape}"]`).click();
  await page.screenshot({ path: path.join(SHOTS, "3-inverted.png") });

  // 3. edit: the colour swap, the shape word clicked to blend
  await page.fill("#edit-prompts input", demo.edited);
  await expect
    .poll(() => page.locator("#edit-prompts .swap").allTextContents())
    .toEqual([demo.truth.objects[0]?.color]);
  await page.locator(`#edit-prompts .prompt-words span[data-word="${demo.shape}"]`).click();
  expect(await page.locator(".prompt-words .blend").allTextContents()).toEqual([demo.shape]);
  await page.screenshot({ path: path.join(SHOTS, "4-edit-panel.png") });
  await page.click("#edit");
  const result = page.locator("#gallery figure img").nth(2);
  await result.waitFor({ timeout: 90_000 });
  await page.locator("#gallery .tokens span").first().waitFor();
  await page.screenshot({ path: path.join(SHOTS, "5-edited.png") });

  // the edited image the page shows, read back from its URL, passes the scene checker
  const src = await result.getAttribute("src");
  expect(src).toMatch(/^\/api\/edits\/[0-9a-f]{16}\/images\/edit-1\.png$/);
  const bytes = new Uint8Array(await (await fetch(new URL(src as string, server.url))).arrayBuffer());
  const check = checkPrompt(await decodePng(bytes), demo.truth);
  expect(check.reading.objects.map((o) => `${o.color} ${o.shape}`)).toEqual([
    `${demo.truth.objects[0]?.color} ${demo.shape}`,
  ]);
  expect(check.all).toBe(true);

  // the library lists the inversion
  await page.reload();
  await page.locator(".library .card").first().waitFor();
  expect(await page.locator(".library .card").count()).toBe(1);
  await page.screenshot({ path: path.join(SHOTS, "6-library.png") });
  expect(errors).toEqual([]);
}, 170_000);
