/**
 * The prompt grammar of the built-in model:
 *   prompt  = object [" and " object] " on a " background " background"
 *   object  = "a " color " " shape
 * e.g. "a blue square and a yellow star on a striped background". Every word is a single token of
 * the CLIP BPE vocabulary, and every attribute is one word, so a word-swap edit keeps both the
 * word count and the token count (Prompt-to-Prompt word replacement, Hertz et al. 2022, §3.2).
 */
import {
  BACKGROUNDS,
  type Background,
  COLORS,
  type Color,
  editScene,
  type Scene,
  type SceneEdit,
  SHAPES,
  type Shape,
  validateScene,
} from "./scene.js";

/** What a prompt word says about the scene: which attribute of which object, or nothing (grammar). */
export type WordRole =
  | { kind: "color"; objectIndex: number }
  | { kind: "shape"; objectIndex: number }
  | { kind: "background" }
  | { kind: "grammar" };

/** The prompt's words, each with the attribute it names. */
export function promptWords(scene: Scene): { word: string; role: WordRole }[] {
  validateScene(scene);
  const words: { word: string; role: WordRole }[] = [];
  const grammar = (word: string) => words.push({ word, role: { kind: "grammar" } });
  scene.objects.forEach((object, objectIndex) => {
    if (objectIndex > 0) grammar("and");
    grammar("a");
    words.push({ word: object.color, role: { kind: "color", objectIndex } });
    words.push({ word: object.shape, role: { kind: "shape", objectIndex } });
  });
  grammar("on");
  grammar("a");
  words.push({ word: scene.background, role: { kind: "background" } });
  grammar("background");
  return words;
}

/** "a red circle on a white background", "a blue square and a yellow star on a black background". */
export function scenePrompt(scene: Scene): string {
  return promptWords(scene)
    .map((w) => w.word)
    .join(" ");
}

/** The prompt of the edited scene: the source prompt with exactly one word swapped. */
export function editPrompt(scene: Scene, edit: SceneEdit): string {
  return scenePrompt(editScene(scene, edit));
}

/** Which word (0-based index among the space-separated words) the edit swaps, and for what. */
export function editedWord(scene: Scene, edit: SceneEdit): { index: number; from: string; to: string } {
  editScene(scene, edit); // validates the edit
  const words = promptWords(scene);
  const index = words.findIndex(({ role }) =>
    edit.kind === "background"
      ? role.kind === "background"
      : role.kind === edit.kind && role.objectIndex === edit.objectIndex,
  );
  return { index, from: words[index]!.word, to: edit.to };
}

/** What a prompt asks for: a scene without layout. Positions, when known, let the checker match by place. */
export type ExpectedScene = {
  background?: Background;
  objects: { color?: Color; shape?: Shape; cx?: number; cy?: number; size?: number }[];
};

/** Reads a prompt of the grammar above back into colours, shapes and background; throws on anything else. */
export function parsePrompt(prompt: string): ExpectedScene & { background: Background } {
  const words = prompt.trim().split(/\s+/);
  const fail = (why: string): never => {
    throw new Error(
      `prompt "${prompt}" does not follow the grammar "a <color> <shape> [and a <color> <shape>] on a <background> background": ${why}`,
    );
  };
  const objects: { color: Color; shape: Shape }[] = [];
  let at = 0;
  for (;;) {
    if (words[at] !== "a") fail(`expected "a" at word ${at}, got "${words[at] ?? ""}"`);
    const color = words[at + 1] as Color;
    const shape = words[at + 2] as Shape;
    if (!COLORS.includes(color)) fail(`"${color ?? ""}" is not one of ${COLORS.join(", ")}`);
    if (!SHAPES.includes(shape)) fail(`"${shape ?? ""}" is not one of ${SHAPES.join(", ")}`);
    objects.push({ color, shape });
    at += 3;
    if (words[at] !== "and") break;
    at += 1;
  }
  if (objects.length > 2) fail(`a scene has at most two objects, the prompt names ${objects.length}`);
  const background = words[at + 2] as Background;
  if (words[at] !== "on" || words[at + 1] !== "a" || words[at + 3] !== "background" || words.length !== at + 4) {
    fail(`expected "on a <background> background" from word ${at}`);
  }
  if (!BACKGROUNDS.includes(background)) fail(`"${background}" is not one of ${BACKGROUNDS.join(", ")}`);
  return { background, objects };
}
