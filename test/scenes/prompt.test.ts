import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { editedWord, editPrompt, parsePrompt, promptWords, scenePrompt } from "../../src/scenes/prompt.js";
import { BACKGROUNDS, COLORS, randomEdit, randomScene, type Scene, SHAPES } from "../../src/scenes/scene.js";

const one: Scene = {
  background: "white",
  objects: [{ shape: "circle", color: "red", cx: 0.5, cy: 0.5, size: 0.2 }],
};
const two: Scene = {
  background: "black",
  objects: [
    { shape: "square", color: "blue", cx: 0.3, cy: 0.3, size: 0.15 },
    { shape: "star", color: "yellow", cx: 0.7, cy: 0.7, size: 0.15 },
  ],
};

describe("scenePrompt", () => {
  it("follows the grammar", () => {
    expect(scenePrompt(one)).toBe("a red circle on a white background");
    expect(scenePrompt(two)).toBe("a blue square and a yellow star on a black background");
    expect(scenePrompt({ ...one, background: "striped" })).toBe("a red circle on a striped background");
    expect(scenePrompt({ ...two, background: "checked" })).toBe(
      "a blue square and a yellow star on a checked background",
    );
  });

  it("names the attribute behind each word", () => {
    expect(promptWords(two).map((w) => (w.role.kind === "grammar" ? "-" : w.role.kind))).toEqual([
      "-",
      "color",
      "shape",
      "-",
      "-",
      "color",
      "shape",
      "-",
      "-",
      "background",
      "-",
    ]);
  });

  it("uses only words that are single tokens of the CLIP BPE vocabulary", () => {
    const vocab = JSON.parse(
      readFileSync(new URL("../../../shared/clip-tokenizer/vocab.json", import.meta.url), "utf8"),
    ) as Record<string, number>;
    const words = [...COLORS, ...SHAPES, ...BACKGROUNDS, "a", "and", "on", "background"];
    const missing = words.filter((w) => vocab[`${w}</w>`] === undefined);
    expect(missing).toEqual([]);
    // The ids quoted in the tokenizer's README, as a check that the file is the CLIP vocabulary.
    expect([vocab["a</w>"], vocab["photo</w>"], vocab["cat</w>"]]).toEqual([320, 1125, 2368]);
  });
});

describe("editPrompt", () => {
  it("swaps exactly one word", () => {
    expect(editPrompt(one, { kind: "color", objectIndex: 0, to: "pink" })).toBe("a pink circle on a white background");
    expect(editPrompt(two, { kind: "shape", objectIndex: 1, to: "triangle" })).toBe(
      "a blue square and a yellow triangle on a black background",
    );
    expect(editPrompt(two, { kind: "background", to: "striped" })).toBe(
      "a blue square and a yellow star on a striped background",
    );
    expect(editedWord(two, { kind: "color", objectIndex: 1, to: "green" })).toEqual({
      index: 5,
      from: "yellow",
      to: "green",
    });
    expect(editedWord(one, { kind: "background", to: "checked" })).toEqual({ index: 5, from: "white", to: "checked" });
  });

  it("keeps the word count and changes only the edited word (500 random edits)", () => {
    for (let seed = 0; seed < 500; seed++) {
      const scene = randomScene(seed);
      const edit = randomEdit(seed, scene);
      const source = scenePrompt(scene).split(" ");
      const target = editPrompt(scene, edit).split(" ");
      expect(target).toHaveLength(source.length);
      const differing = source.flatMap((w, i) => (w === target[i] ? [] : [i]));
      const word = editedWord(scene, edit);
      expect(differing).toEqual([word.index]);
      expect([source[word.index], target[word.index]]).toEqual([word.from, word.to]);
    }
  });
});

describe("parsePrompt", () => {
  it("reads every generated prompt back (500 scenes)", () => {
    for (let seed = 0; seed < 500; seed++) {
      const scene = randomScene(seed);
      expect(parsePrompt(scenePrompt(scene))).toEqual({
        background: scene.background,
        objects: scene.objects.map((o) => ({ color: o.color, shape: o.shape })),
      });
    }
  });

  it("rejects prompts outside the grammar, saying where", () => {
    expect(() => parsePrompt("an orange circle on a white background")).toThrow(/expected "a" at word 0, got "an"/);
    expect(() => parsePrompt("a red hexagon on a white background")).toThrow(/"hexagon" is not one of circle/);
    expect(() => parsePrompt("a red circle on a white")).toThrow(/expected "on a <background> background" from word 3/);
    expect(() => parsePrompt("a red circle on a gray background")).toThrow(/"gray" is not one of white/);
    expect(() => parsePrompt("a red circle and a blue star and a green square on a white background")).toThrow(
      /at most two objects/,
    );
  });
});
