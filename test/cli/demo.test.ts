/** The README's first command: `nulltext demo` on the built-in model writes the grid and a report; both edits pass the checker. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { runDemo } from "../../src/cli/demo.js";
import { DEFAULT_MODEL } from "../../src/cli/main.js";
import { readImage } from "../../src/image/index.js";

describe("nulltext demo", () => {
  it("inverts a scene, edits it twice and reports", async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "nulltext-demo-"));
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      await runDemo({ out, model: DEFAULT_MODEL });
    } finally {
      log.mockRestore();
      err.mockRestore();
    }
    const report = JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"));
    const grid = await readImage(path.join(out, "grid.png"));
    expect(grid.width).toBeGreaterThan(4 * 64);
    expect(report.reconstruction.psnr).toBeGreaterThan(25);
    expect(report.edits.map((e: { edit: { kind: string } }) => e.edit.kind)).toEqual(["color", "shape"]);
    const [color, shape] = report.edits;
    for (const e of [color, shape]) {
      expect(e.checker.success, `${e.prompt}: read ${e.checker.read}`).toBe(true);
      expect(e.psnr_outside_object).toBeGreaterThan(10);
      expect(e.psnr_vs_ground_truth).toBeGreaterThan(10);
      expect(e.checker.read.length).toBeGreaterThan(0);
    }
    expect(report.inversion.unet_evals).toBeGreaterThan(100);
  });
});
