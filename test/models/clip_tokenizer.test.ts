import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClipTokenizer } from "../../src/models/clip_tokenizer.js";

const PARITY_DIR = fileURLToPath(new URL("../../../shared/parity/", import.meta.url));
const TOKENIZER_DIR = join(PARITY_DIR, "model", "tokenizer");

interface GoldenTokenizerCase {
  text: string;
  ids: number[];
  tokens: string[] | null;
  truncated: boolean;
  untruncated_length: number;
  attention_mask_sum: number;
  ids_alt_text_cleaning?: number[];
}

interface GoldenTokenizer {
  pad_token_id: number;
  bos_token_id: number;
  eos_token_id: number;
  cases: GoldenTokenizerCase[];
}

const golden = JSON.parse(await readFile(join(PARITY_DIR, "golden.json"), "utf8")).tokenizer as GoldenTokenizer;
const tokenizer = await ClipTokenizer.fromFolder(TOKENIZER_DIR);

const temporaryDirs: string[] = [];
async function tokenizerFolder(extraFiles: Record<string, string>, copied = ["vocab.json", "merges.txt"]) {
  const dir = await mkdtemp(join(tmpdir(), "clip-tokenizer-test-"));
  temporaryDirs.push(dir);
  for (const name of copied) await copyFile(join(TOKENIZER_DIR, name), join(dir, name));
  for (const [name, content] of Object.entries(extraFiles)) await writeFile(join(dir, name), content);
  return dir;
}
afterAll(async () => {
  for (const dir of temporaryDirs) await rm(dir, { recursive: true, force: true });
});

describe("ClipTokenizer against transformers' CLIPTokenizer goldens", () => {
  it("has the special ids of the reference", () => {
    expect(golden.cases).toHaveLength(31);
    expect(tokenizer.bosTokenId).toBe(golden.bos_token_id);
    expect(tokenizer.eosTokenId).toBe(golden.eos_token_id);
    expect(tokenizer.padTokenId).toBe(golden.pad_token_id);
    expect(tokenizer.modelMaxLength).toBe(77);
    expect(tokenizer.vocabSize).toBe(49408);
  });

  it.each(golden.cases.map((goldenCase, index) => [index, JSON.stringify(goldenCase.text).slice(0, 60), goldenCase]))(
    "case %i: %s",
    (_index, _label, goldenCase) => {
      const encoding = tokenizer.encode(goldenCase.text);
      expect(encoding.ids).toEqual(goldenCase.ids);
      expect(encoding.truncated).toBe(goldenCase.truncated);
      expect(encoding.untruncatedLength).toBe(goldenCase.untruncated_length);
      expect(encoding.length).toBe(goldenCase.attention_mask_sum);
      if (goldenCase.tokens !== null) expect(tokenizer.tokenize(goldenCase.text)).toEqual(goldenCase.tokens);
    },
  );

  it("encodes the README example without padding", () => {
    // /work/shared/clip-tokenizer/README.md
    expect(tokenizer.encodeUnpadded("a photo of a cat")).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
  });

  it("truncates to a shorter maxLength keeping bos and eos", () => {
    const encoding = tokenizer.encode("a photo of a cat", { maxLength: 5 });
    expect(encoding).toEqual({ ids: [49406, 320, 1125, 539, 49407], length: 5, truncated: true, untruncatedLength: 7 });
    expect(() => tokenizer.encode("a", { maxLength: 1 })).toThrow(/maxLength is 1/);
  });
});

describe("pad token from the folder's configs (SD 2.x)", () => {
  it("pads with '!' (id 0) when tokenizer_config.json sets pad_token '!'", async () => {
    const dir = await tokenizerFolder({
      "tokenizer_config.json": JSON.stringify({ pad_token: "!", model_max_length: 77 }),
    });
    const sd2 = await ClipTokenizer.fromFolder(dir);
    expect(sd2.padTokenId).toBe(0);
    const encoding = sd2.encode("a photo of a cat");
    expect(encoding.ids.slice(0, 8)).toEqual([49406, 320, 1125, 539, 320, 2368, 49407, 0]);
    expect(encoding.ids.slice(7)).toEqual(new Array(70).fill(0));
    expect(encoding.length).toBe(7);
    // transformers treats the pad token as a no-split special token, so every "!" in the prompt becomes id 0
    // (diffusers issue #4153 shows these ids for "! !! !!!" with the SD 2.x tokenizer).
    expect(sd2.encode("! !! !!!").ids.slice(0, 9)).toEqual([49406, 0, 0, 0, 0, 0, 0, 49407, 0]);
    // The SD 1.x folder keeps "!!!" as one BPE token.
    expect(tokenizer.encodeUnpadded("! !! !!!")).toEqual([49406, 256, 748, 995, 49407]);
  });

  it("lets special_tokens_map.json ({content} form) override tokenizer_config.json", async () => {
    const dir = await tokenizerFolder({
      "tokenizer_config.json": JSON.stringify({ pad_token: "<|endoftext|>" }),
      "special_tokens_map.json": JSON.stringify({ pad_token: { content: "!", lstrip: false } }),
    });
    expect((await ClipTokenizer.fromFolder(dir)).padTokenId).toBe(0);
  });

  it("rejects a pad token that is not in the vocabulary, naming it", async () => {
    const dir = await tokenizerFolder({ "tokenizer_config.json": JSON.stringify({ pad_token: "<pad>" }) });
    await expect(ClipTokenizer.fromFolder(dir)).rejects.toThrow(/pad token "<pad>" is not in the vocabulary/);
  });
});

describe("decode", () => {
  it("round-trips lowercase prompts through the byte table", () => {
    for (const text of ["a photo of a cat", "café naïve résumé", "привет мир", "emoji 🐱🚀✨"]) {
      const encoding = tokenizer.encode(text);
      expect(tokenizer.decode(encoding.ids.slice(1, encoding.length - 1))).toBe(text);
      expect(tokenizer.decode(encoding.ids, { skipSpecialTokens: true })).toBe(text);
    }
  });

  it("returns CJK ideographs with the spaces that text cleaning put around them", () => {
    // BasicTokenizer._tokenize_chinese_chars spaces out 日, 本 and 語 (CJK Unified Ideographs), not kana.
    expect(tokenizer.decode(tokenizer.encode("日本語のテキスト").ids, { skipSpecialTokens: true })).toBe(
      "日 本 語 のテキスト",
    );
  });

  it("reads </w> as a space and cleans up spaces before , . ! ? as transformers does", () => {
    const ids = tokenizer.encodeUnpadded("A cat, a dog; and a bird!");
    expect(tokenizer.decode(ids.slice(1, -1))).toBe("a cat, a dog ; and a bird!");
    expect(tokenizer.decode(ids.slice(1, -1), { cleanUpTokenizationSpaces: false })).toBe(
      "a cat , a dog ; and a bird !",
    );
    expect(tokenizer.decode(ids)).toBe("<|startoftext|>a cat, a dog ; and a bird! <|endoftext|>");
  });

  it("decodes a lone continuation byte as U+FFFD and rejects unknown ids", () => {
    // "²" is the byte-table character for byte 0xB2, id 110 in vocab.json.
    expect(tokenizer.decode([110])).toBe("\ufffd");
    expect(() => tokenizer.decode([49408])).toThrow(/id 49408/);
  });
});

describe("wordTokenIndices (prompt-to-prompt get_word_inds)", () => {
  it("finds single-token words by string and by index", () => {
    expect(tokenizer.wordTokenIndices("a photo of a cat", "cat")).toEqual([5]);
    expect(tokenizer.wordTokenIndices("a photo of a cat", "a")).toEqual([1, 4]);
    expect(tokenizer.wordTokenIndices("a photo of a cat", 1)).toEqual([2]);
    expect(tokenizer.wordTokenIndices("A Photo Of A CAT", "CAT")).toEqual([5]);
    expect(tokenizer.wordTokenIndices("a photo of a cat", "dog")).toEqual([]);
  });

  it("covers every token of a word that BPE splits", () => {
    // "artstation," is art + station</w> + ,</w>; "8k" is 8</w> + k</w> (see the golden tokens).
    const text = "trending on artstation, 8k render";
    expect(tokenizer.wordTokenIndices(text, "artstation,")).toEqual([3, 4, 5]);
    expect(tokenizer.wordTokenIndices(text, "8k")).toEqual([6, 7]);
    expect(tokenizer.wordTokenIndices(text, "render")).toEqual([8]);
    const long = "a pneumonoultramicroscopicsilicovolcanoconiosis lung";
    expect(tokenizer.wordTokenIndices(long, 1)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(tokenizer.wordTokenIndices(long, "lung")).toEqual([16]);
  });

  it("rejects a word index outside the prompt", () => {
    expect(() => tokenizer.wordTokenIndices("a photo of a cat", 5)).toThrow(/has 5 words/);
  });
});

describe("loading errors", () => {
  let emptyDir: string;
  beforeAll(async () => {
    emptyDir = await tokenizerFolder({}, ["merges.txt"]);
  });

  it("names a missing vocab.json", async () => {
    await expect(ClipTokenizer.fromFolder(emptyDir)).rejects.toThrow(/cannot read .*vocab\.json/);
  });

  it("names vocab.json when it is not JSON", async () => {
    const dir = await tokenizerFolder({ "vocab.json": '{"a": 1,' }, ["merges.txt"]);
    await expect(ClipTokenizer.fromFolder(dir)).rejects.toThrow(/vocab\.json is not valid JSON/);
  });

  it("names the corrupt line of merges.txt", async () => {
    const dir = await tokenizerFolder({ "merges.txt": "#version: 0.2\ni n\nt h e\n" }, ["vocab.json"]);
    await expect(ClipTokenizer.fromFolder(dir)).rejects.toThrow(/merges\.txt line 3 is "t h e"/);
  });
});
