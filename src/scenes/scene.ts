/**
 * Procedural scenes for the built-in model: one or two flat-coloured shapes on a plain or
 * patterned background. A scene is plain data (JSON-friendly); `renderScene` draws it and
 * `scenePrompt` describes it, so a word-swap edit has an exact ground truth (`editScene`).
 *
 * Coordinates are fractions of the image side, so one scene renders at any resolution:
 * (cx, cy) is the object's centre with y pointing down, `size` the radius of the circle the
 * shape is inscribed in (a circle's own radius), `rotation` degrees clockwise.
 */
import { Rng } from "../util/rng.js";

export const COLORS = ["red", "yellow", "green", "blue", "purple", "pink"] as const;
export const SHAPES = ["circle", "square", "triangle", "star"] as const;
export const BACKGROUNDS = ["white", "black", "striped", "checked"] as const;

export type Color = (typeof COLORS)[number];
export type Shape = (typeof SHAPES)[number];
export type Background = (typeof BACKGROUNDS)[number];
export type Rgb = readonly [r: number, g: number, b: number];

/**
 * Object colours, all strongly saturated and at least ΔE*ab 44 apart (blue–purple is the closest
 * pair), so that blur, noise and a colour cast of a generated image do not move one onto another.
 * No colour name starts with a vowel: "a orange circle" would force the article to change with
 * the colour, and a word-swap edit must change exactly one word.
 */
export const COLOR_RGB: Readonly<Record<Color, Rgb>> = {
  red: [220, 30, 30],
  yellow: [245, 215, 30],
  green: [40, 170, 60],
  blue: [20, 120, 240],
  purple: [130, 40, 170],
  pink: [255, 140, 210],
};

/**
 * The two tones of each background (equal for solid ones). All are greys, so a background
 * pixel never reads as an object colour (every object colour is ΔE*ab > 55 from every grey).
 */
export const BACKGROUND_TONES: Readonly<Record<Background, readonly [Rgb, Rgb]>> = {
  white: [
    [255, 255, 255],
    [255, 255, 255],
  ],
  black: [
    [0, 0, 0],
    [0, 0, 0],
  ],
  striped: [
    [235, 235, 235],
    [150, 150, 150],
  ],
  checked: [
    [215, 215, 215],
    [110, 110, 110],
  ],
};

/** Stripes (horizontal bands) and checks per image side; 8 gives 8-pixel cells at 64×64. */
export const PATTERN_CELLS = 8;

export type SceneObject = {
  shape: Shape;
  color: Color;
  cx: number;
  cy: number;
  size: number;
  rotation?: number;
};

export type Scene = { background: Background; objects: SceneObject[] };

export type SceneEdit =
  | { kind: "color"; objectIndex: number; to: Color }
  | { kind: "shape"; objectIndex: number; to: Shape }
  | { kind: "background"; to: Background };

export type RandomSceneOptions = {
  /** Number of objects; "any" draws one or two with equal probability. Default "any". */
  objects?: 1 | 2 | "any";
  colors?: readonly Color[];
  shapes?: readonly Shape[];
  backgrounds?: readonly Background[];
  /**
   * Rotation of every object: true (default) any angle, false upright, a number d in (0, 180] an angle
   * drawn uniformly from [−d, d] around upright. Every choice but false draws one number per object, last,
   * so that the scene's layout, colours and shapes are the same whatever the rotation.
   */
  rotate?: boolean | number;
};

// Object radii (fractions of the side): large enough that a star's points stay readable at
// 64×64 (the smallest star spans 18 pixels), small enough that two objects fit side by side.
const SINGLE_SIZE = [0.18, 0.32] as const;
const PAIR_SIZE = [0.14, 0.22] as const;
/** Gap between the bounding circles of two objects and between an object and the border. */
const OBJECT_GAP = 0.05;
const BORDER_MARGIN = 0.03;

/** A random scene, the same for the same seed and options on every platform. */
export function randomScene(seed: number, options: RandomSceneOptions = {}): Scene {
  const colors = checkedChoices("colors", options.colors, COLORS);
  const shapes = checkedChoices("shapes", options.shapes, SHAPES);
  const backgrounds = checkedChoices("backgrounds", options.backgrounds, BACKGROUNDS);
  const objectsOption = options.objects ?? "any";
  if (objectsOption !== 1 && objectsOption !== 2 && objectsOption !== "any") {
    throw new Error(`randomScene: options.objects must be 1, 2 or "any", got ${JSON.stringify(objectsOption)}`);
  }
  const rotate = options.rotate ?? true;
  if (typeof rotate === "number" && !(rotate > 0 && rotate <= 180)) {
    throw new Error(`randomScene: options.rotate must be true, false or an angle in (0, 180] degrees, got ${rotate}`);
  }

  const rng = new Rng(seed);
  const count = objectsOption === "any" ? 1 + rng.int(2) : objectsOption;
  const background = rng.pick(backgrounds);

  const looks: { color: Color; shape: Shape }[] = [];
  for (let i = 0; i < count; i++) {
    let look = { color: rng.pick(colors), shape: rng.pick(shapes) };
    // Two identical objects would make "the red circle" ambiguous; allow it only when the
    // options leave no other choice.
    const distinctPossible = colors.length * shapes.length > 1;
    while (distinctPossible && looks.some((l) => l.color === look.color && l.shape === look.shape)) {
      look = { color: rng.pick(colors), shape: rng.pick(shapes) };
    }
    looks.push(look);
  }

  const [minSize, maxSize] = count === 1 ? SINGLE_SIZE : PAIR_SIZE;
  const sizes = looks.map(() => rng.uniform(minSize, maxSize));
  const centres = placeApart(rng, sizes);

  return {
    background,
    objects: looks.map((look, i) => ({
      shape: look.shape,
      color: look.color,
      cx: centres[i]![0],
      cy: centres[i]![1],
      size: sizes[i]!,
      rotation: rotate === false ? 0 : rotate === true ? rng.uniform(0, 360) : rng.uniform(-rotate, rotate),
    })),
  };
}

/** Centres inside the image whose bounding circles keep OBJECT_GAP apart (rejection sampling). */
function placeApart(rng: Rng, sizes: readonly number[]): [number, number][] {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const centres = sizes.map((s): [number, number] => {
      const lo = s + BORDER_MARGIN;
      return [rng.uniform(lo, 1 - lo), rng.uniform(lo, 1 - lo)];
    });
    let apart = true;
    for (let i = 0; i < centres.length && apart; i++) {
      for (let j = i + 1; j < centres.length && apart; j++) {
        const d = Math.hypot(centres[i]![0] - centres[j]![0], centres[i]![1] - centres[j]![1]);
        apart = d >= sizes[i]! + sizes[j]! + OBJECT_GAP;
      }
    }
    if (apart) return centres;
  }
  // Unreachable with the size ranges above (two largest objects fit in opposite corners).
  throw new Error(`randomScene: could not place objects of radii ${sizes.join(", ")} apart`);
}

function checkedChoices<T extends string>(
  name: string,
  given: readonly T[] | undefined,
  all: readonly T[],
): readonly T[] {
  if (given === undefined) return all;
  if (given.length === 0) {
    throw new Error(`randomScene: options.${name} is empty; give some of ${all.join(", ")}`);
  }
  for (const value of given) {
    if (!all.includes(value)) {
      throw new Error(`randomScene: options.${name} has unknown value "${value}"; expected one of ${all.join(", ")}`);
    }
  }
  return given;
}

/** Throws a message naming the offending field unless `scene` is a well-formed Scene. */
export function validateScene(scene: Scene): void {
  if (!BACKGROUNDS.includes(scene.background)) {
    throw new Error(`scene.background "${scene.background}" is not one of ${BACKGROUNDS.join(", ")}`);
  }
  if (scene.objects.length < 1 || scene.objects.length > 2) {
    throw new Error(`a scene has one or two objects, got ${scene.objects.length}`);
  }
  scene.objects.forEach((object, i) => {
    if (!COLORS.includes(object.color)) {
      throw new Error(`scene.objects[${i}].color "${object.color}" is not one of ${COLORS.join(", ")}`);
    }
    if (!SHAPES.includes(object.shape)) {
      throw new Error(`scene.objects[${i}].shape "${object.shape}" is not one of ${SHAPES.join(", ")}`);
    }
    for (const key of ["cx", "cy", "size", "rotation"] as const) {
      const value = object[key];
      if (value !== undefined && !Number.isFinite(value)) {
        throw new Error(`scene.objects[${i}].${key} must be a finite number, got ${value}`);
      }
    }
    if (!(object.size > 0)) {
      throw new Error(`scene.objects[${i}].size must be positive, got ${object.size}`);
    }
  });
}

/**
 * The scene with one attribute changed and everything else (layout, rotation, the other object)
 * kept: the ground truth of the matching word-swap edit.
 */
export function editScene(scene: Scene, edit: SceneEdit): Scene {
  validateScene(scene);
  const edited: Scene = { background: scene.background, objects: scene.objects.map((o) => ({ ...o })) };
  if (edit.kind === "background") {
    if (!BACKGROUNDS.includes(edit.to)) {
      throw new Error(`background edit: "${edit.to}" is not one of ${BACKGROUNDS.join(", ")}`);
    }
    if (edit.to === scene.background) {
      throw new Error(`background edit: the background is already "${edit.to}"`);
    }
    edited.background = edit.to;
    return edited;
  }
  const target = edited.objects[edit.objectIndex];
  if (target === undefined) {
    throw new Error(
      `${edit.kind} edit: objectIndex ${edit.objectIndex} is out of range for a scene with ${scene.objects.length} object(s)`,
    );
  }
  if (edit.kind === "color") {
    if (!COLORS.includes(edit.to)) {
      throw new Error(`color edit: "${edit.to}" is not one of ${COLORS.join(", ")}`);
    }
    if (edit.to === target.color) {
      throw new Error(`color edit: object ${edit.objectIndex} is already ${edit.to}`);
    }
    target.color = edit.to;
  } else if (edit.kind === "shape") {
    if (!SHAPES.includes(edit.to)) {
      throw new Error(`shape edit: "${edit.to}" is not one of ${SHAPES.join(", ")}`);
    }
    if (edit.to === target.shape) {
      throw new Error(`shape edit: object ${edit.objectIndex} is already a ${edit.to}`);
    }
    target.shape = edit.to;
  } else {
    throw new Error(
      `unknown edit kind ${JSON.stringify((edit as { kind: unknown }).kind)}; expected color, shape or background`,
    );
  }
  return edited;
}

/** A random valid edit of `scene` (an attribute changed to a different value), from a seed. */
export function randomEdit(
  seed: number,
  scene: Scene,
  kinds: readonly SceneEdit["kind"][] = ["color", "shape", "background"],
): SceneEdit {
  validateScene(scene);
  if (kinds.length === 0) {
    throw new Error("randomEdit: kinds is empty; give some of color, shape, background");
  }
  const rng = new Rng(seed);
  const kind = rng.pick(kinds);
  if (kind === "background") {
    return { kind, to: rng.pick(BACKGROUNDS.filter((b) => b !== scene.background)) };
  }
  const objectIndex = rng.int(scene.objects.length);
  const object = scene.objects[objectIndex]!;
  if (kind === "color") {
    return { kind, objectIndex, to: rng.pick(COLORS.filter((c) => c !== object.color)) };
  }
  if (kind === "shape") {
    return { kind, objectIndex, to: rng.pick(SHAPES.filter((s) => s !== object.shape)) };
  }
  throw new Error(`randomEdit: unknown edit kind ${JSON.stringify(kind)}; expected color, shape or background`);
}
