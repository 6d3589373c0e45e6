import { describe, expect, it } from "vitest";
import { checkImage, checkPrompt } from "../../src/scenes/checker.js";
import { parsePrompt, scenePrompt } from "../../src/scenes/prompt.js";
import { type RgbImage, renderScene } from "../../src/scenes/render.js";
import {
  COLOR_RGB,
  COLORS,
  editScene,
  randomEdit,
  randomScene,
  type Scene,
  type Shape,
} from "../../src/scenes/scene.js";
import { Rng } from "../../src/util/rng.js";
import { type Degradation, degrade } from "./degrade.js";

/** Share of scenes read entirely right: background, object count, every colour and shape. */
function accuracy(seeds: number[], size: number, damage?: Degradation): { share: number; failures: string[] } {
  const failures: string[] = [];
  for (const seed of seeds) {
    const scene = randomScene(seed);
    let img = renderScene(scene, size);
    if (damage) img = degrade(img, seed, damage);
    const check = checkPrompt(img, scene);
    if (!check.all) {
      const read = check.reading.objects.map((o) => `${o.color} ${o.shape}`).join(", ");
      failures.push(`seed ${seed}: "${scenePrompt(scene)}" read as ${check.reading.background}: ${read}`);
    }
  }
  return { share: 1 - failures.length / seeds.length, failures };
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const SPEC_DAMAGE: Degradation = { blurSigma: 0.7, noiseSigma: 8, colorShift: 12 };

describe("checkImage accuracy", () => {
  it("reads 500 clean 64×64 renders right (measured 500/500; required 99%)", () => {
    const { share, failures } = accuracy(range(0, 500), 64);
    expect(share, failures.join("\n")).toBeGreaterThanOrEqual(0.99);
  });

  it("reads 500 degraded renders right: blur σ 0.7 px, noise σ 8/255, cast ±12 per channel (measured 500/500; required 95%)", () => {
    const { share, failures } = accuracy(range(1000, 500), 64, SPEC_DAMAGE);
    expect(share, failures.join("\n")).toBeGreaterThanOrEqual(0.95);
  });

  it("keeps headroom under harsher damage: blur σ 1.3, noise σ 16/255, cast ±25 (measured 200/200; required 95%)", () => {
    const { share, failures } = accuracy(range(2000, 200), 64, { blurSigma: 1.3, noiseSigma: 16, colorShift: 25 });
    expect(share, failures.join("\n")).toBeGreaterThanOrEqual(0.95);
  });

  it("works at 32×32 and 128×128 (measured 100/100 clean and 100/100 degraded at 32, 50/50 degraded at 128)", () => {
    for (const [size, damage, n] of [
      [32, undefined, 100],
      [32, SPEC_DAMAGE, 100],
      [128, SPEC_DAMAGE, 50],
    ] as const) {
      const { share, failures } = accuracy(range(3000, n), size, damage);
      expect(share, `${size}×${size}: ${failures.join("\n")}`).toBeGreaterThanOrEqual(0.97);
    }
  });
});

describe("checkImage measurements", () => {
  it("locates objects and measures their area (geometric area, centre from the scene)", () => {
    const area: Record<Shape, number> = {
      circle: Math.PI,
      square: 2,
      triangle: (3 * Math.sqrt(3)) / 4,
      star: 2.5 * Math.sin(Math.PI / 5),
    };
    for (let seed = 0; seed < 100; seed++) {
      const scene = randomScene(seed);
      const reading = checkImage(renderScene(scene, 64));
      for (const o of scene.objects) {
        const found = reading.objects.find((d) => Math.hypot(d.cx - o.cx, d.cy - o.cy) < 0.02);
        expect(found, `seed ${seed}`).toBeDefined();
        // Membership counts half-covered edge pixels as about half, so the area is within a few percent.
        expect(Math.abs(found!.area / (area[o.shape] * o.size ** 2) - 1), `seed ${seed} ${o.shape}`).toBeLessThan(0.06);
      }
    }
  });

  it("ignores specks", () => {
    const rng = new Rng(5);
    for (let seed = 0; seed < 50; seed++) {
      const scene = randomScene(seed);
      const img = renderScene(scene, 64);
      // Ten 2×2 specks of random palette colours, anywhere.
      for (let k = 0; k < 10; k++) {
        const x = rng.int(63);
        const y = rng.int(63);
        const rgb = COLOR_RGB[rng.pick(COLORS)];
        for (const p of [y * 64 + x, y * 64 + x + 1, (y + 1) * 64 + x, (y + 1) * 64 + x + 1]) img.data.set(rgb, 3 * p);
      }
      const check = checkPrompt(img, scene);
      expect(check.count, `seed ${seed}`).toBe(true);
      expect(check.objects.every((o) => o.color && o.shape)).toBe(true);
    }
  });

  it("reports no background for a mid-grey or coloured one, and no objects on a blank image", () => {
    const grey: RgbImage = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(128) };
    expect(checkImage(grey)).toEqual({ background: null, objects: [] });
    const white: RgbImage = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(255) };
    expect(checkImage(white)).toEqual({ background: "white", objects: [] });
    const green: RgbImage = { width: 16, height: 16, data: new Uint8Array(16 * 16 * 3) };
    for (let p = 0; p < 256; p++) green.data.set(COLOR_RGB.green, 3 * p);
    const reading = checkImage(green);
    expect(reading.background).toBeNull();
    expect(reading.objects.map((o) => o.color)).toEqual(["green"]);
  });

  it("rejects malformed images", () => {
    expect(() => checkImage({ width: 64, height: 64, data: new Uint8Array(10) })).toThrow(
      /a 64×64 RGB image has 12288 bytes, got 10/,
    );
    expect(() => checkImage({ width: 4, height: 4, data: new Uint8Array(48) })).toThrow(/at least 8×8/);
  });
});

describe("checkPrompt", () => {
  it("reads the new attribute at the edited object's place (200 edits, degraded)", () => {
    for (let seed = 0; seed < 200; seed++) {
      const scene = randomScene(seed);
      const edit = randomEdit(seed, scene);
      const edited = editScene(scene, edit);
      const img = degrade(renderScene(edited, 64), seed, SPEC_DAMAGE);
      expect(checkPrompt(img, edited).all, `seed ${seed}`).toBe(true);
      // Against the source scene, exactly the edited attribute disagrees.
      const against = checkPrompt(img, scene);
      if (edit.kind === "background") {
        expect(against.background).toBe(false);
        expect(against.objects.every((o) => o.color && o.shape)).toBe(true);
      } else {
        against.objects.forEach((o, i) => {
          const edited = i === edit.objectIndex;
          expect(o.found).not.toBeNull();
          expect(o.color).toBe(!(edited && edit.kind === "color"));
          expect(o.shape).toBe(!(edited && edit.kind === "shape"));
        });
        expect(against.background).toBe(true);
      }
      expect(against.all).toBe(false);
    }
  });

  it("matches by attributes when the expectation has no positions (a parsed prompt)", () => {
    for (let seed = 0; seed < 100; seed++) {
      const scene = randomScene(seed);
      const check = checkPrompt(renderScene(scene, 64), parsePrompt(scenePrompt(scene)));
      expect(check.all, `seed ${seed}`).toBe(true);
    }
    const scene: Scene = {
      background: "white",
      objects: [
        { shape: "circle", color: "red", cx: 0.3, cy: 0.3, size: 0.15 },
        { shape: "square", color: "blue", cx: 0.7, cy: 0.7, size: 0.15 },
      ],
    };
    const img = renderScene(scene, 64);
    const swapped = checkPrompt(img, parsePrompt("a blue circle and a red square on a white background"));
    expect(swapped.all).toBe(false);
    expect(swapped.count).toBe(true);
    const missing = checkPrompt(img, { objects: [{ color: "green" }] });
    expect(missing.count).toBe(false);
    expect(missing.background).toBeNull();
  });
});
