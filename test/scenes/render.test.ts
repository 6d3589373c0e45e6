import { describe, expect, it } from "vitest";
import { dilateMask, editRegion, objectMask, renderScene, STAR_INNER_RADIUS } from "../../src/scenes/render.js";
import {
  COLOR_RGB,
  editScene,
  randomEdit,
  randomScene,
  type Scene,
  type SceneObject,
  type Shape,
} from "../../src/scenes/scene.js";

function pixel(img: { width: number; data: Uint8Array }, x: number, y: number): number[] {
  const at = (y * img.width + x) * 3;
  return [img.data[at]!, img.data[at + 1]!, img.data[at + 2]!];
}

function changedPixels(a: Uint8Array, b: Uint8Array): Uint8Array {
  const changed = new Uint8Array(a.length / 3);
  for (let p = 0; p < changed.length; p++) {
    if (a[3 * p] !== b[3 * p] || a[3 * p + 1] !== b[3 * p + 1] || a[3 * p + 2] !== b[3 * p + 2]) changed[p] = 1;
  }
  return changed;
}

const count = (mask: Uint8Array) => mask.reduce((n, v) => n + v, 0);

function onWhite(shape: Shape, rotation = 0, size = 0.3): Scene {
  return { background: "white", objects: [{ shape, color: "red", cx: 0.5, cy: 0.5, size, rotation }] };
}

describe("renderScene", () => {
  it("gives identical bytes for the same seed and different images for different seeds", () => {
    const seen = new Set<string>();
    for (let seed = 0; seed < 100; seed++) {
      const a = renderScene(randomScene(seed));
      const b = renderScene(randomScene(seed));
      expect(Buffer.from(a.data).equals(Buffer.from(b.data))).toBe(true);
      seen.add(Buffer.from(a.data).toString("base64"));
    }
    expect(seen.size).toBe(100);
  });

  it("has the requested size", () => {
    for (const size of [8, 32, 64, 100]) {
      const img = renderScene(randomScene(1), size);
      expect([img.width, img.height, img.data.length]).toEqual([size, size, size * size * 3]);
    }
    expect(renderScene(randomScene(1)).width).toBe(64);
    expect(() => renderScene(randomScene(1), 6)).toThrow(/integer >= 8, got 6/);
  });

  it("paints the palette colour inside an object and the background tones outside", () => {
    const scene: Scene = {
      background: "checked",
      objects: [{ shape: "square", color: "purple", cx: 0.8, cy: 0.8, size: 0.15, rotation: 0 }],
    };
    const img = renderScene(scene, 64);
    expect(pixel(img, 51, 51)).toEqual([...COLOR_RGB.purple]);
    // 8-pixel checks at 64×64, starting light at the top left.
    expect(pixel(img, 0, 0)).toEqual([215, 215, 215]);
    expect(pixel(img, 8, 0)).toEqual([110, 110, 110]);
    expect(pixel(img, 8, 8)).toEqual([215, 215, 215]);
    expect(pixel(img, 20, 40)).toEqual([110, 110, 110]);

    const striped = renderScene({ ...scene, background: "striped" }, 64);
    for (let y = 0; y < 32; y++) {
      expect(pixel(striped, 5, y)).toEqual(Math.floor(y / 8) % 2 === 0 ? [235, 235, 235] : [150, 150, 150]);
    }
    expect(pixel(renderScene({ ...scene, background: "black" }), 3, 3)).toEqual([0, 0, 0]);
    expect(pixel(renderScene({ ...scene, background: "white" }), 3, 3)).toEqual([255, 255, 255]);
  });

  it("draws each shape with its geometric area (anti-aliased coverage at 128×128)", () => {
    const radius = 0.3 * 128;
    const expectedArea: Record<Shape, number> = {
      circle: Math.PI * radius ** 2,
      square: 2 * radius ** 2,
      triangle: ((3 * Math.sqrt(3)) / 4) * radius ** 2,
      // Ten triangles with sides R and r enclosing 36° each.
      star: 5 * radius * STAR_INNER_RADIUS * radius * Math.sin(Math.PI / 5),
    };
    for (const shape of ["circle", "square", "triangle", "star"] as const) {
      for (const rotation of [0, 17, 45]) {
        const img = renderScene(onWhite(shape, rotation), 128);
        // Green channel: 255 on white, 30 on red, linear in coverage in between.
        let covered = 0;
        for (let p = 0; p < 128 * 128; p++) covered += (255 - img.data[3 * p + 1]!) / (255 - 30);
        // 4×4 subsamples quantise an axis-aligned edge to quarter pixels: the upright square's
        // edges at x = 64 ± 27.15 each gain 0.1 pixel per row (+0.7% in all); slanted edges average out.
        const tolerance = shape === "square" && rotation % 90 === 0 ? 0.008 : 0.002;
        expect(Math.abs(covered / expectedArea[shape] - 1)).toBeLessThan(tolerance);
      }
    }
  });

  it("rotates clockwise on screen, with triangle and star pointing up at 0°", () => {
    const at = (scene: Scene, dx: number, dy: number) => {
      const img = renderScene(scene, 128);
      const r = 0.3 * 128;
      return pixel(img, Math.floor(64 + dx * r), Math.floor(64 + dy * r));
    };
    const red = [...COLOR_RGB.red];
    const white = [255, 255, 255];
    expect(at(onWhite("triangle", 0), 0, -0.9)).toEqual(red);
    expect(at(onWhite("triangle", 0), 0, 0.9)).toEqual(white);
    expect(at(onWhite("triangle", 90), 0.9, 0)).toEqual(red); // the tip turns to the right
    expect(at(onWhite("triangle", 90), -0.9, 0)).toEqual(white);
    expect(at(onWhite("star", 0), 0, -0.9)).toEqual(red);
    expect(at(onWhite("star", 36), 0, -0.9)).toEqual(white); // between two points
    expect(at(onWhite("square", 0), 0, -0.9)).toEqual(white); // half side 0.71
    expect(at(onWhite("square", 45), 0, -0.9)).toEqual(red); // a corner
    expect(at(onWhite("circle", 0), 0.95, 0)).toEqual(red);
  });

  it("rejects a malformed scene naming the field", () => {
    const bad = { background: "white", objects: [{ shape: "hexagon", color: "red", cx: 0.5, cy: 0.5, size: 0.2 }] };
    expect(() => renderScene(bad as unknown as Scene)).toThrow(/objects\[0\].shape "hexagon"/);
    const nan = onWhite("circle");
    (nan.objects[0] as SceneObject).cx = Number.NaN;
    expect(() => renderScene(nan)).toThrow(/objects\[0\].cx must be a finite number/);
  });
});

describe("objectMask and editRegion", () => {
  it("marks exactly the pixels an object touches", () => {
    for (let seed = 0; seed < 50; seed++) {
      const scene = randomScene(seed, { objects: 1, backgrounds: ["white"] });
      const img = renderScene(scene, 64);
      const mask = objectMask(scene, 0, 64);
      // On white every pixel with any coverage differs from white in some channel.
      const notWhite = Array.from({ length: 64 * 64 }, (_, p) =>
        img.data[3 * p] === 255 && img.data[3 * p + 1] === 255 && img.data[3 * p + 2] === 255 ? 0 : 1,
      );
      expect(Array.from(mask)).toEqual(notWhite);
    }
  });

  it("grows a mask by a Chebyshev radius", () => {
    const single = new Uint8Array(100);
    single[5 * 10 + 5] = 1;
    expect(count(dilateMask(single, 10, 2))).toBe(25);
    const corner = new Uint8Array(100);
    corner[0] = 1;
    expect(count(dilateMask(corner, 10, 1))).toBe(4);
    const scene = randomScene(3);
    const base = objectMask(scene, 0, 64);
    const grown = objectMask(scene, 0, 64, 2);
    for (let p = 0; p < base.length; p++) if (base[p]) expect(grown[p]).toBe(1);
    expect(count(grown)).toBeGreaterThan(count(base));
    expect(() => dilateMask(single, 10, -1)).toThrow(/non-negative integer/);
  });

  it("covers every pixel an edit changes, and a colour edit changes exactly the object (300 edits)", () => {
    for (let seed = 0; seed < 300; seed++) {
      const scene = randomScene(seed);
      const edit = randomEdit(seed + 1, scene);
      const edited = editScene(scene, edit);
      const changed = changedPixels(renderScene(scene).data, renderScene(edited).data);
      const region = editRegion(scene, edit, 64);
      expect(count(changed.map((c, p) => c & (1 - region[p]!)))).toBe(0);

      if (edit.kind === "background") {
        // Object interiors keep their colour; some background pixels must change.
        for (const o of scene.objects) {
          const x = Math.floor(o.cx * 64);
          const y = Math.floor(o.cy * 64);
          expect(changed[y * 64 + x]).toBe(0);
        }
        expect(count(changed)).toBeGreaterThan(64 * 64 * 0.3);
        continue;
      }
      // Only the edited object's pixels change: never a pixel of another object.
      scene.objects.forEach((_, i) => {
        if (i === edit.objectIndex) return;
        const other = objectMask(scene, i, 64);
        expect(count(changed.map((c, p) => c & other[p]!))).toBe(0);
      });
      if (edit.kind === "color") {
        expect(Array.from(changed)).toEqual(Array.from(objectMask(scene, edit.objectIndex, 64)));
      }
    }
  });
});
