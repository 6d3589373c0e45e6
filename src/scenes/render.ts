/**
 * Rasterises scenes with 4×4 supersampling (light anti-aliasing), and the masks used to score
 * edits: which pixels an object touches, which pixels an edit can change.
 */
import {
  BACKGROUND_TONES,
  type Background,
  COLOR_RGB,
  editScene,
  PATTERN_CELLS,
  type Rgb,
  type Scene,
  type SceneEdit,
  type SceneObject,
  type Shape,
  validateScene,
} from "./scene.js";

/** An 8-bit RGB image, row-major, 3 bytes per pixel. */
export type RgbImage = { width: number; height: number; data: Uint8Array };

/** Subsamples per pixel side. */
const SUPERSAMPLE = 4;

/** A star's inner vertices lie at this fraction of its outer radius (0.38 for a regular pentagram). */
export const STAR_INNER_RADIUS = 0.5;

const SQUARE_HALF_SIDE = Math.SQRT1_2; // a square inscribed in the unit circle
const TRIANGLE_INRADIUS = 0.5; // an equilateral triangle inscribed in the unit circle
const SIN_30 = 0.5;
const COS_30 = Math.sqrt(3) / 2;
const STAR_SECTOR = (2 * Math.PI) / 5;
// The star's edge in one half-sector, from the outer vertex (1, 0) to the inner vertex at 36°.
const STAR_EDGE_X = STAR_INNER_RADIUS * Math.cos(Math.PI / 5) - 1;
const STAR_EDGE_Y = STAR_INNER_RADIUS * Math.sin(Math.PI / 5);

/**
 * Whether the point (x, y) of the shape's own frame lies inside the shape. The frame has the
 * shape's bounding circle as unit circle, y pointing down; at rotation 0 the square is axis-aligned
 * and the triangle and star point up.
 */
export function insideShape(shape: Shape, x: number, y: number): boolean {
  switch (shape) {
    case "circle":
      return x * x + y * y <= 1;
    case "square":
      return Math.abs(x) <= SQUARE_HALF_SIDE && Math.abs(y) <= SQUARE_HALF_SIDE;
    case "triangle":
      // Three half-planes at the inradius: the bottom edge and the two slanted ones.
      return (
        y <= TRIANGLE_INRADIUS &&
        -COS_30 * x - SIN_30 * y <= TRIANGLE_INRADIUS &&
        COS_30 * x - SIN_30 * y <= TRIANGLE_INRADIUS
      );
    case "star": {
      const r = Math.sqrt(x * x + y * y);
      if (r <= STAR_INNER_RADIUS) return true;
      if (r > 1) return false;
      // Angle from the top point, folded onto the half-sector [0, 36°] by the star's symmetry.
      let phi = (Math.atan2(y, x) + Math.PI / 2) % STAR_SECTOR;
      if (phi < 0) phi += STAR_SECTOR;
      if (phi > STAR_SECTOR / 2) phi = STAR_SECTOR - phi;
      const qx = r * Math.cos(phi) - 1;
      const qy = r * Math.sin(phi);
      return STAR_EDGE_X * qy - STAR_EDGE_Y * qx >= 0;
    }
  }
}

/** An object's placement in pixels, ready for point tests. */
type PlacedObject = {
  shape: Shape;
  rgb: Rgb;
  cx: number;
  cy: number;
  radius: number;
  cos: number;
  sin: number;
  x0: number;
  x1: number;
  y0: number;
  y1: number;
};

function place(object: SceneObject, size: number): PlacedObject {
  const radius = object.size * size;
  const cx = object.cx * size;
  const cy = object.cy * size;
  const angle = ((object.rotation ?? 0) * Math.PI) / 180;
  return {
    shape: object.shape,
    rgb: COLOR_RGB[object.color],
    cx,
    cy,
    radius,
    cos: Math.cos(angle),
    sin: Math.sin(angle),
    x0: Math.max(0, Math.floor(cx - radius) - 1),
    x1: Math.min(size - 1, Math.ceil(cx + radius) + 1),
    y0: Math.max(0, Math.floor(cy - radius) - 1),
    y1: Math.min(size - 1, Math.ceil(cy + radius) + 1),
  };
}

/** Whether the image point (px, py), in pixel units, is inside the placed object. */
function insidePlaced(o: PlacedObject, px: number, py: number): boolean {
  const dx = px - o.cx;
  const dy = py - o.cy;
  // Undo the clockwise rotation (clockwise on screen, where y points down).
  const x = (o.cos * dx + o.sin * dy) / o.radius;
  const y = (-o.sin * dx + o.cos * dy) / o.radius;
  return insideShape(o.shape, x, y);
}

/** Background colour at (u, v), fractions of the side. Stripes are horizontal bands. */
function backgroundAt(background: Background, u: number, v: number): Rgb {
  const [first, second] = BACKGROUND_TONES[background];
  const row = Math.floor(v * PATTERN_CELLS);
  if (background === "striped") return row % 2 === 0 ? first : second;
  if (background === "checked") return (Math.floor(u * PATTERN_CELLS) + row) % 2 === 0 ? first : second;
  return first;
}

function checkSize(size: number, caller: string): void {
  if (!Number.isInteger(size) || size < 8) {
    throw new Error(`${caller}: image size must be an integer >= 8, got ${size}`);
  }
}

/** Draws `scene` as a size×size RGB image; later objects are drawn over earlier ones. */
export function renderScene(scene: Scene, size = 64): RgbImage {
  validateScene(scene);
  checkSize(size, "renderScene");
  const placed = scene.objects.map((o) => place(o, size));
  const data = new Uint8Array(size * size * 3);
  const samples = SUPERSAMPLE * SUPERSAMPLE;
  const candidates: PlacedObject[] = [];
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      candidates.length = 0;
      for (const o of placed) {
        if (px >= o.x0 && px <= o.x1 && py >= o.y0 && py <= o.y1) candidates.push(o);
      }
      let r = 0;
      let g = 0;
      let b = 0;
      for (let sy = 0; sy < SUPERSAMPLE; sy++) {
        const y = py + (sy + 0.5) / SUPERSAMPLE;
        for (let sx = 0; sx < SUPERSAMPLE; sx++) {
          const x = px + (sx + 0.5) / SUPERSAMPLE;
          let rgb = backgroundAt(scene.background, x / size, y / size);
          for (let k = candidates.length - 1; k >= 0; k--) {
            const o = candidates[k]!;
            if (insidePlaced(o, x, y)) {
              rgb = o.rgb;
              break;
            }
          }
          r += rgb[0];
          g += rgb[1];
          b += rgb[2];
        }
      }
      const at = (py * size + px) * 3;
      data[at] = Math.round(r / samples);
      data[at + 1] = Math.round(g / samples);
      data[at + 2] = Math.round(b / samples);
    }
  }
  return { width: size, height: size, data };
}

/** Per pixel, how many of its SUPERSAMPLE² subsamples fall inside the object. */
function objectCoverage(object: SceneObject, size: number): Uint8Array {
  const o = place(object, size);
  const coverage = new Uint8Array(size * size);
  for (let py = o.y0; py <= o.y1; py++) {
    for (let px = o.x0; px <= o.x1; px++) {
      let count = 0;
      for (let sy = 0; sy < SUPERSAMPLE; sy++) {
        for (let sx = 0; sx < SUPERSAMPLE; sx++) {
          if (insidePlaced(o, px + (sx + 0.5) / SUPERSAMPLE, py + (sy + 0.5) / SUPERSAMPLE)) count++;
        }
      }
      coverage[py * size + px] = count;
    }
  }
  return coverage;
}

/** Sets every pixel within `radius` pixels (Chebyshev distance) of a set pixel. */
export function dilateMask(mask: Uint8Array, size: number, radius: number): Uint8Array {
  if (!Number.isInteger(radius) || radius < 0) {
    throw new Error(`dilation must be a non-negative integer number of pixels, got ${radius}`);
  }
  if (mask.length !== size * size) {
    throw new Error(`mask has ${mask.length} entries; a ${size}×${size} mask needs ${size * size}`);
  }
  let current = mask;
  // A square of side 2r+1 is r steps of the 3×3 square, each separable into a row and a column pass.
  for (let step = 0; step < radius; step++) {
    const rows = new Uint8Array(size * size);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const i = y * size + x;
        rows[i] = current[i]! | (x > 0 ? current[i - 1]! : 0) | (x < size - 1 ? current[i + 1]! : 0);
      }
    }
    const next = new Uint8Array(size * size);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const i = y * size + x;
        next[i] = rows[i]! | (y > 0 ? rows[i - size]! : 0) | (y < size - 1 ? rows[i + size]! : 0);
      }
    }
    current = next;
  }
  return current === mask ? mask.slice() : current;
}

/**
 * 1 for every pixel the object touches (any coverage), grown by `dilation` pixels; 0 elsewhere.
 * Row-major, size×size. Scoring "PSNR outside the edited object" uses the complement.
 */
export function objectMask(scene: Scene, index: number, size = 64, dilation = 0): Uint8Array {
  validateScene(scene);
  checkSize(size, "objectMask");
  const object = scene.objects[index];
  if (object === undefined) {
    throw new Error(`objectMask: index ${index} is out of range for a scene with ${scene.objects.length} object(s)`);
  }
  const coverage = objectCoverage(object, size);
  const mask = coverage.map((c) => (c > 0 ? 1 : 0));
  return dilateMask(mask, size, dilation);
}

/**
 * 1 for every pixel whose colour `edit` can change, grown by `dilation` pixels. For a colour or
 * shape edit: the pixels the object touches before or after. For a background edit: every pixel
 * that some background shows through (all but the objects' fully covered interiors).
 */
export function editRegion(scene: Scene, edit: SceneEdit, size = 64, dilation = 0): Uint8Array {
  const edited = editScene(scene, edit);
  checkSize(size, "editRegion");
  if (edit.kind === "background") {
    const full = SUPERSAMPLE * SUPERSAMPLE;
    const showsBackground = new Uint8Array(size * size).fill(1);
    for (const object of scene.objects) {
      const coverage = objectCoverage(object, size);
      coverage.forEach((c, i) => {
        if (c === full) showsBackground[i] = 0;
      });
    }
    return dilateMask(showsBackground, size, dilation);
  }
  const before = objectMask(scene, edit.objectIndex, size);
  const after = objectMask(edited, edit.objectIndex, size);
  return dilateMask(
    before.map((v, i) => v | after[i]!),
    size,
    dilation,
  );
}
