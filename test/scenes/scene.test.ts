import { describe, expect, it } from "vitest";
import {
  BACKGROUNDS,
  COLORS,
  editScene,
  randomEdit,
  randomScene,
  type Scene,
  SHAPES,
  validateScene,
} from "../../src/scenes/scene.js";
import { Rng } from "../../src/util/rng.js";

describe("Rng", () => {
  it("is reproducible from its seed and differs between seeds", () => {
    const a = new Rng(7);
    const b = new Rng(7);
    const c = new Rng(8);
    const first = Array.from({ length: 8 }, () => a.next());
    expect(Array.from({ length: 8 }, () => b.next())).toEqual(first);
    expect(Array.from({ length: 8 }, () => c.next())).not.toEqual(first);
  });

  it("draws uniform numbers in [0, 1) and standard normals (100k samples)", () => {
    const rng = new Rng(123);
    const n = 100_000;
    let sum = 0;
    let min = 1;
    let max = 0;
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < n; i++) {
      const u = rng.next();
      sum += u;
      min = Math.min(min, u);
      max = Math.max(max, u);
      buckets[Math.floor(u * 10)]! += 1;
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    // Standard error of the mean of U(0,1) over 1e5 draws is 0.0009; of a decile's count, 95.
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.004);
    for (const count of buckets) expect(Math.abs(count - n / 10)).toBeLessThan(500);

    let gSum = 0;
    let gSquares = 0;
    for (let i = 0; i < n; i++) {
      const g = rng.gaussian();
      gSum += g;
      gSquares += g * g;
    }
    expect(Math.abs(gSum / n)).toBeLessThan(0.015);
    expect(Math.abs(gSquares / n - 1)).toBeLessThan(0.02);
  });

  it("rejects a non-integer seed", () => {
    expect(() => new Rng(0.5)).toThrow(/integer, got 0.5/);
  });
});

describe("randomScene", () => {
  it("gives the same scene for the same seed and different scenes for different seeds", () => {
    expect(randomScene(42)).toEqual(randomScene(42));
    const seen = new Set<string>();
    for (let seed = 0; seed < 200; seed++) seen.add(JSON.stringify(randomScene(seed)));
    expect(seen.size).toBe(200);
  });

  it("draws every colour, shape, background and object count over 1000 seeds", () => {
    const colors = new Set<string>();
    const shapes = new Set<string>();
    const backgrounds = new Set<string>();
    let pairs = 0;
    for (let seed = 0; seed < 1000; seed++) {
      const scene = randomScene(seed);
      backgrounds.add(scene.background);
      if (scene.objects.length === 2) pairs++;
      for (const o of scene.objects) {
        colors.add(o.color);
        shapes.add(o.shape);
      }
    }
    expect([...colors].sort()).toEqual([...COLORS].sort());
    expect([...shapes].sort()).toEqual([...SHAPES].sort());
    expect([...backgrounds].sort()).toEqual([...BACKGROUNDS].sort());
    // "any" draws one or two objects with equal odds: 500 ± 16 (one standard deviation).
    expect(pairs).toBeGreaterThan(440);
    expect(pairs).toBeLessThan(560);
  });

  it("keeps objects inside the image, apart from each other and distinct (2000 seeds)", () => {
    for (let seed = 0; seed < 2000; seed++) {
      const scene = randomScene(seed);
      validateScene(scene);
      for (const o of scene.objects) {
        expect(o.cx - o.size).toBeGreaterThanOrEqual(0.03 - 1e-12);
        expect(o.cx + o.size).toBeLessThanOrEqual(0.97 + 1e-12);
        expect(o.cy - o.size).toBeGreaterThanOrEqual(0.03 - 1e-12);
        expect(o.cy + o.size).toBeLessThanOrEqual(0.97 + 1e-12);
        expect(o.size).toBeGreaterThanOrEqual(0.14);
        expect(o.size).toBeLessThanOrEqual(0.32);
      }
      const [a, b] = scene.objects;
      if (a && b) {
        expect(Math.hypot(a.cx - b.cx, a.cy - b.cy)).toBeGreaterThanOrEqual(a.size + b.size + 0.05);
        expect(a.color === b.color && a.shape === b.shape).toBe(false);
      }
    }
  });

  it("follows the options", () => {
    for (let seed = 0; seed < 100; seed++) {
      const scene = randomScene(seed, { objects: 2, colors: ["red", "blue"], shapes: ["star"], rotate: false });
      expect(scene.objects).toHaveLength(2);
      expect(scene.objects.map((o) => o.color).sort()).toEqual(["blue", "red"]);
      for (const o of scene.objects) {
        expect(o.shape).toBe("star");
        expect(o.rotation).toBe(0);
      }
      expect(randomScene(seed, { objects: 1, backgrounds: ["checked"] })).toMatchObject({ background: "checked" });
      expect(randomScene(seed, { objects: 1 }).objects).toHaveLength(1);
    }
    // With one colour and one shape two objects must repeat it, rather than loop forever.
    const forced = randomScene(3, { objects: 2, colors: ["green"], shapes: ["circle"] });
    expect(forced.objects.map((o) => `${o.color} ${o.shape}`)).toEqual(["green circle", "green circle"]);
  });

  it("draws a rotation around upright within a given angle, keeping everything else of the scene", () => {
    let widest = 0;
    for (let seed = 0; seed < 200; seed++) {
      const any = randomScene(seed);
      const near = randomScene(seed, { rotate: 15 });
      expect(near.objects.map(({ rotation, ...rest }) => rest)).toEqual(
        any.objects.map(({ rotation, ...rest }) => rest),
      );
      expect(near.background).toBe(any.background);
      for (const o of near.objects) {
        expect(Math.abs(o.rotation ?? Number.NaN)).toBeLessThanOrEqual(15);
        widest = Math.max(widest, Math.abs(o.rotation ?? 0));
      }
    }
    // uniform over [−15, 15]: in ~300 draws the widest is near the bound
    expect(widest).toBeGreaterThan(14);
  });

  it("rejects bad options with the offending value", () => {
    expect(() => randomScene(1, { rotate: 0 })).toThrow(/angle in \(0, 180\] degrees, got 0/);
    expect(() => randomScene(1, { rotate: Number.NaN })).toThrow(/got NaN/);
    expect(() => randomScene(1, { colors: [] })).toThrow(/options.colors is empty/);
    expect(() => randomScene(1, { shapes: ["hexagon" as never] })).toThrow(/unknown value "hexagon"/);
    expect(() => randomScene(1, { objects: 3 as never })).toThrow(/must be 1, 2 or "any", got 3/);
  });
});

describe("editScene", () => {
  const scene: Scene = {
    background: "white",
    objects: [
      { shape: "circle", color: "red", cx: 0.3, cy: 0.3, size: 0.15, rotation: 10 },
      { shape: "star", color: "blue", cx: 0.7, cy: 0.7, size: 0.15, rotation: 20 },
    ],
  };

  it("changes exactly the named attribute and leaves the source alone", () => {
    const before = JSON.stringify(scene);
    expect(editScene(scene, { kind: "color", objectIndex: 1, to: "yellow" })).toEqual({
      background: "white",
      objects: [scene.objects[0], { ...scene.objects[1], color: "yellow" }],
    });
    expect(editScene(scene, { kind: "shape", objectIndex: 0, to: "triangle" })).toEqual({
      background: "white",
      objects: [{ ...scene.objects[0], shape: "triangle" }, scene.objects[1]],
    });
    expect(editScene(scene, { kind: "background", to: "striped" })).toEqual({ ...scene, background: "striped" });
    expect(JSON.stringify(scene)).toBe(before);
  });

  it("rejects edits that change nothing or name nothing", () => {
    expect(() => editScene(scene, { kind: "color", objectIndex: 0, to: "red" })).toThrow(/already red/);
    expect(() => editScene(scene, { kind: "shape", objectIndex: 2, to: "square" })).toThrow(
      /objectIndex 2 is out of range for a scene with 2 object/,
    );
    expect(() => editScene(scene, { kind: "background", to: "white" })).toThrow(/already "white"/);
    expect(() => editScene(scene, { kind: "color", objectIndex: 0, to: "orange" as never })).toThrow(
      /"orange" is not one of red, yellow/,
    );
  });

  it("randomEdit always gives a valid edit of the allowed kinds (500 seeds)", () => {
    const kinds = new Set<string>();
    for (let seed = 0; seed < 500; seed++) {
      const s = randomScene(seed);
      const edit = randomEdit(seed, s);
      kinds.add(edit.kind);
      expect(editScene(s, edit)).not.toEqual(s);
      expect(randomEdit(seed, s, ["shape"]).kind).toBe("shape");
    }
    expect([...kinds].sort()).toEqual(["background", "color", "shape"]);
  });
});
