/**
 * CLIP byte-level BPE tokenizer, reproducing transformers' slow `CLIPTokenizer`
 * (`models/clip/tokenization_clip.py`) on the path it takes when ftfy is not installed: text is cleaned by
 * BERT's `BasicTokenizer(strip_accents=False, do_split_on_punc=False)` before the CLIP regex and BPE run.
 *
 * `encode` pads and truncates as diffusers' `StableDiffusionPipeline._encode_prompt` asks for
 * (`padding="max_length", max_length=tokenizer.model_max_length, truncation=True`).
 */

import { getPlatform } from "../platform/platform.js";
import { joinPath } from "../util/paths.js";

/** Result of {@link ClipTokenizer.encode}. */
export interface ClipEncoding {
  /** `maxLength` ids: bos, the (possibly truncated) text tokens, eos, then the pad id. */
  ids: number[];
  /** Number of ids before padding (bos and eos included), after truncation: the attention mask's sum. */
  length: number;
  /** Whether text tokens were dropped to fit `maxLength`. */
  truncated: boolean;
  /** Number of ids (bos and eos included) the text would need without truncation. */
  untruncatedLength: number;
}

/** Special-token strings; each must be a key of the vocabulary. */
export interface ClipSpecialTokens {
  bos: string;
  eos: string;
  unk: string;
  pad: string;
}

export interface ClipTokenizerOptions {
  /** Token string → id, as in `vocab.json`. */
  vocab: ReadonlyMap<string, number>;
  /** Merge rules in priority order (rank 0 first), as in `merges.txt` after its version line. */
  merges: ReadonlyArray<readonly [string, string]>;
  /** Defaults are transformers' `CLIPTokenizer` defaults (all `<|endoftext|>` except bos `<|startoftext|>`). */
  specialTokens?: Partial<ClipSpecialTokens>;
  /** Default `maxLength` of {@link ClipTokenizer.encode}; CLIP's text encoder has 77 positions. */
  modelMaxLength?: number;
  /** Default of `decode`'s `cleanUpTokenizationSpaces` (transformers' default: true). */
  cleanUpTokenizationSpaces?: boolean;
}

export interface DecodeOptions {
  /** Drop bos, eos, unk and pad ids (transformers' `skip_special_tokens`). Default false. */
  skipSpecialTokens?: boolean;
  /** Remove the space before `.`, `,`, `!`, `?` and English contractions. Default: the tokenizer's setting. */
  cleanUpTokenizationSpaces?: boolean;
}

const DEFAULT_SPECIAL_TOKENS: ClipSpecialTokens = {
  bos: "<|startoftext|>",
  eos: "<|endoftext|>",
  unk: "<|endoftext|>",
  pad: "<|endoftext|>",
};

const DEFAULT_MODEL_MAX_LENGTH = 77;

/** tokenization_clip.py reads `merges.txt` lines [1, 49152 - 256 - 2 + 1): 48894 merges at most. */
const MAX_MERGES = 49152 - 256 - 2;

const END_OF_WORD = "</w>";

/**
 * The CLIP pre-tokenisation pattern (`self.pat` in tokenization_clip.py, compiled with re.IGNORECASE).
 * Letters run together, digits stand alone, other non-space characters run together.
 */
const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

/**
 * Characters for which Python's `str.isspace()` is true (what `str.strip()` removes). JS's `\s` differs:
 * it lacks U+001C–U+001F and U+0085 and adds U+FEFF.
 */
const PYTHON_WHITESPACE =
  "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PYTHON_STRIP_PATTERN = new RegExp(`^[${PYTHON_WHITESPACE}]+|[${PYTHON_WHITESPACE}]+$`, "gu");

/**
 * GPT-2's reversible byte → character table (`bytes_to_unicode` in tokenization_clip.py): printable
 * Latin-1 bytes map to themselves, the other 68 bytes to U+0100 onwards in byte order, so that no BPE
 * symbol is whitespace or a control character.
 */
function bytesToUnicode(): string[] {
  const isPrintable = (byte: number) =>
    (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
  const table: string[] = [];
  let nextSubstitute = 256;
  for (let byte = 0; byte < 256; byte++) {
    table.push(String.fromCodePoint(isPrintable(byte) ? byte : nextSubstitute++));
  }
  return table;
}

const BYTE_ENCODER = bytesToUnicode();
const BYTE_DECODER = new Map(BYTE_ENCODER.map((char, byte) => [char, byte]));
const UTF8_ENCODER = new TextEncoder();

/** `_is_chinese_char` of BERT's BasicTokenizer: the CJK Unified Ideographs blocks, not kana or hangul. */
function isCjkIdeograph(codePoint: number): boolean {
  return (
    (codePoint >= 0x4e00 && codePoint <= 0x9fff) ||
    (codePoint >= 0x3400 && codePoint <= 0x4dbf) ||
    (codePoint >= 0x20000 && codePoint <= 0x2a6df) ||
    (codePoint >= 0x2a700 && codePoint <= 0x2b73f) ||
    (codePoint >= 0x2b740 && codePoint <= 0x2b81f) ||
    (codePoint >= 0x2b820 && codePoint <= 0x2ceaf) ||
    (codePoint >= 0xf900 && codePoint <= 0xfaff) ||
    (codePoint >= 0x2f800 && codePoint <= 0x2fa1f)
  );
}

const OTHER_CATEGORY = /^\p{C}$/u;
const SPACE_SEPARATOR = /^\p{Zs}$/u;
const WHITESPACE_RUN = /\s+/u;

/**
 * BERT's `BasicTokenizer(do_lower_case=True, strip_accents=False, do_split_on_punc=False).tokenize(text)`
 * joined by single spaces, as CLIPTokenizer uses it without ftfy:
 * drop NUL, U+FFFD and category C characters (tab, LF and CR become spaces, as does any Zs character),
 * put spaces around CJK ideographs, NFC-normalise, split on whitespace and lowercase each word.
 */
function basicClean(text: string): string {
  let cleaned = "";
  for (const char of text) {
    const codePoint = char.codePointAt(0)!;
    if (char === "\t" || char === "\n" || char === "\r" || SPACE_SEPARATOR.test(char)) {
      cleaned += " ";
    } else if (codePoint === 0 || codePoint === 0xfffd || OTHER_CATEGORY.test(char)) {
      // dropped, as `_clean_text` drops control and format characters (zero-width space included)
    } else if (isCjkIdeograph(codePoint)) {
      cleaned += ` ${char} `;
    } else {
      cleaned += char;
    }
  }
  // After cleaning, JS's `\s` and Python's `str.split()` agree on every character that can remain.
  return cleaned
    .normalize("NFC")
    .split(WHITESPACE_RUN)
    .filter((word) => word.length > 0)
    .map((word) => word.toLowerCase())
    .join(" ");
}

function pythonStrip(text: string): string {
  return text.replace(PYTHON_STRIP_PATTERN, "");
}

/** transformers' `PreTrainedTokenizerBase.clean_up_tokenization`. */
function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(" .", ".")
    .replaceAll(" ?", "?")
    .replaceAll(" !", "!")
    .replaceAll(" ,", ",")
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

/** Python's `str.strip(chars)` for a set of BMP characters. */
function stripCharacters(text: string, characters: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && characters.includes(text[start]!)) start++;
  while (end > start && characters.includes(text[end - 1]!)) end--;
  return text.slice(start, end);
}

function codePointLength(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

export class ClipTokenizer {
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly unkTokenId: number;
  readonly padTokenId: number;
  readonly specialTokens: Readonly<ClipSpecialTokens>;
  readonly modelMaxLength: number;
  readonly cleanUpTokenizationSpaces: boolean;

  private readonly encoder: ReadonlyMap<string, number>;
  private readonly decoder = new Map<number, string>();
  /** Key `${first} ${second}`: BPE symbols never contain a space (the byte table maps it to "Ġ"). */
  private readonly mergeRanks = new Map<string, number>();
  /** Special-token strings that are cut out of the text before cleaning, longest first. */
  private readonly noSplitTokens: string[];
  private readonly specialTokenIds: ReadonlySet<number>;
  /** Byte-encoded word → its BPE symbols; seeded as tokenization_clip.py seeds `self.cache`. */
  private readonly bpeCache = new Map<string, string[]>([
    ["<|startoftext|>", ["<|startoftext|>"]],
    ["<|endoftext|>", ["<|endoftext|>"]],
  ]);

  constructor(options: ClipTokenizerOptions) {
    this.encoder = options.vocab;
    for (const [token, id] of options.vocab) this.decoder.set(id, token);
    options.merges.forEach(([first, second], rank) => {
      // A repeated merge keeps its last rank, as Python's dict(zip(merges, range(...))) does.
      this.mergeRanks.set(`${first} ${second}`, rank);
    });

    this.specialTokens = { ...DEFAULT_SPECIAL_TOKENS, ...options.specialTokens };
    const idOf = (role: keyof ClipSpecialTokens) => {
      const token = this.specialTokens[role];
      const id = this.encoder.get(token);
      if (id === undefined) {
        throw new Error(`CLIP tokenizer: ${role} token ${JSON.stringify(token)} is not in the vocabulary`);
      }
      return id;
    };
    this.bosTokenId = idOf("bos");
    this.eosTokenId = idOf("eos");
    this.unkTokenId = idOf("unk");
    this.padTokenId = idOf("pad");
    this.specialTokenIds = new Set([this.bosTokenId, this.eosTokenId, this.unkTokenId, this.padTokenId]);
    this.noSplitTokens = [...new Set(Object.values(this.specialTokens))].sort((a, b) => b.length - a.length);

    this.modelMaxLength = options.modelMaxLength ?? DEFAULT_MODEL_MAX_LENGTH;
    checkMaxLength(this.modelMaxLength, "modelMaxLength");
    this.cleanUpTokenizationSpaces = options.cleanUpTokenizationSpaces ?? true;
  }

  /**
   * Loads a diffusers `tokenizer/` folder: `vocab.json`, `merges.txt`, and when present
   * `tokenizer_config.json` and `special_tokens_map.json` (special tokens, `model_max_length`,
   * `clean_up_tokenization_spaces`). As in transformers, `special_tokens_map.json` overrides
   * `tokenizer_config.json`; SD 2.x folders set the pad token to "!" (id 0) there.
   */
  static async fromFolder(dir: string): Promise<ClipTokenizer> {
    return ClipTokenizer.fromFiles(dir, (name) => readText(joinPath(dir, name)));
  }

  /**
   * Loads a tokenizer folder whose files `read` returns by name ("vocab.json"; undefined for a file
   * that is absent), e.g. from memory or over the network; `dir` names the folder in messages.
   */
  static async fromFiles(dir: string, read: (name: string) => Promise<string | undefined>): Promise<ClipTokenizer> {
    const vocabPath = joinPath(dir, "vocab.json");
    const mergesPath = joinPath(dir, "merges.txt");
    const configPath = joinPath(dir, "tokenizer_config.json");
    const specialTokensMapPath = joinPath(dir, "special_tokens_map.json");
    const required = async (name: string, path: string) => {
      const text = await read(name);
      if (text === undefined) {
        throw new Error(
          `CLIP tokenizer: cannot read ${path} (missing); a tokenizer folder needs vocab.json and merges.txt`,
        );
      }
      return text;
    };

    const vocab = parseVocab(await required("vocab.json", vocabPath), vocabPath);
    const merges = parseMerges(await required("merges.txt", mergesPath), mergesPath);
    const config = parseJsonObject(await read("tokenizer_config.json"), configPath);
    const specialTokensMap = parseJsonObject(await read("special_tokens_map.json"), specialTokensMapPath);

    const specialTokens: Partial<ClipSpecialTokens> = {};
    for (const role of ["bos", "eos", "unk", "pad"] as const) {
      const key = `${role}_token`;
      for (const [source, path] of [
        [config, configPath],
        [specialTokensMap, specialTokensMapPath],
      ] as const) {
        if (source && key in source) specialTokens[role] = specialTokenContent(source[key], key, path);
      }
    }

    let modelMaxLength: number | undefined;
    if (config && config.model_max_length !== undefined) {
      const value = config.model_max_length;
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 2) {
        throw new Error(
          `CLIP tokenizer: model_max_length in ${configPath} is ${JSON.stringify(value)}; expected an integer >= 2 (77 for CLIP)`,
        );
      }
      modelMaxLength = value;
    }

    let cleanUpTokenizationSpaces: boolean | undefined;
    if (config && config.clean_up_tokenization_spaces !== undefined) {
      const value = config.clean_up_tokenization_spaces;
      if (typeof value !== "boolean") {
        throw new Error(
          `CLIP tokenizer: clean_up_tokenization_spaces in ${configPath} is ${JSON.stringify(value)}; expected true or false`,
        );
      }
      cleanUpTokenizationSpaces = value;
    }

    try {
      return new ClipTokenizer({ vocab, merges, specialTokens, modelMaxLength, cleanUpTokenizationSpaces });
    } catch (error) {
      throw new Error(`${(error as Error).message} (${vocabPath})`);
    }
  }

  get vocabSize(): number {
    return this.encoder.size;
  }

  /** BPE tokens of `text` without bos/eos, e.g. "a photo" → ["a</w>", "photo</w>"] (transformers' `tokenize`). */
  tokenize(text: string): string[] {
    const tokens: string[] = [];
    for (const piece of this.splitOnSpecialTokens(text)) {
      if (piece.special) {
        tokens.push(piece.text);
        continue;
      }
      for (const word of basicClean(piece.text).match(CLIP_PATTERN) ?? []) {
        let byteEncoded = "";
        for (const byte of UTF8_ENCODER.encode(word)) byteEncoded += BYTE_ENCODER[byte]!;
        tokens.push(...this.bpe(byteEncoded));
      }
    }
    return tokens;
  }

  /** Ids of `text` with bos and eos, neither truncated nor padded (transformers' `tokenizer.encode(text)`). */
  encodeUnpadded(text: string): number[] {
    return [this.bosTokenId, ...this.textIds(text), this.eosTokenId];
  }

  /**
   * Ids padded to `maxLength`, keeping bos, the first `maxLength - 2` text tokens and eos, as
   * `tokenizer(text, padding="max_length", max_length=maxLength, truncation=True)` returns them.
   */
  encode(text: string, { maxLength = this.modelMaxLength }: { maxLength?: number } = {}): ClipEncoding {
    checkMaxLength(maxLength, "maxLength");
    const textIds = this.textIds(text);
    const kept = textIds.slice(0, maxLength - 2);
    const ids = [this.bosTokenId, ...kept, this.eosTokenId];
    const length = ids.length;
    while (ids.length < maxLength) ids.push(this.padTokenId);
    return { ids, length, truncated: kept.length < textIds.length, untruncatedLength: textIds.length + 2 };
  }

  /**
   * Text of `ids`, as transformers' `decode`: tokens joined, bytes decoded as UTF-8 (invalid sequences
   * become U+FFFD), `</w>` read as a space, surrounding whitespace stripped.
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const { skipSpecialTokens = false, cleanUpTokenizationSpaces = this.cleanUpTokenizationSpaces } = options;
    const bytes: number[] = [];
    for (const id of ids) {
      if (skipSpecialTokens && this.specialTokenIds.has(id)) continue;
      const token = this.decoder.get(id);
      if (token === undefined) {
        throw new Error(`CLIP tokenizer: cannot decode id ${id}; the vocabulary has no such id`);
      }
      for (const char of token) {
        const byte = BYTE_DECODER.get(char);
        if (byte === undefined) {
          throw new Error(
            `CLIP tokenizer: token ${JSON.stringify(token)} (id ${id}) has a character outside the byte table`,
          );
        }
        bytes.push(byte);
      }
    }
    // ignoreBOM keeps a leading U+FEFF, as Python's "utf-8" codec does.
    const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(new Uint8Array(bytes));
    const stripped = pythonStrip(text.replaceAll(END_OF_WORD, " "));
    return cleanUpTokenizationSpaces ? cleanUpTokenization(stripped) : stripped;
  }

  /**
   * Positions of the tokens of one word of `text` in its encoding (1-based: position 0 is bos), for
   * Prompt-to-Prompt's word-level attention control. `word` is either a word string, matched exactly
   * against `text.split(" ")` (all occurrences), or an index into that split.
   *
   * Follows `get_word_inds` in google/prompt-to-prompt `ptp_utils.py`: each text token is decoded on its
   * own and its length consumed against the current word's length, so a word that BPE splits (or that
   * lowercasing or punctuation makes differ from its tokens) is tracked by character count. Where the
   * original would index past the last word and raise, the remaining tokens belong to no word here.
   */
  wordTokenIndices(text: string, word: string | number): number[] {
    const words = text.split(" ");
    let wordPlaces: number[];
    if (typeof word === "string") {
      wordPlaces = words.flatMap((candidate, index) => (candidate === word ? [index] : []));
    } else {
      if (!Number.isInteger(word) || word < 0 || word >= words.length) {
        throw new RangeError(
          `CLIP tokenizer: word index ${word} is out of range; ${JSON.stringify(text)} has ${words.length} words (split on " ")`,
        );
      }
      wordPlaces = [word];
    }
    if (wordPlaces.length === 0) return [];

    const tokenTexts = this.textIds(text).map((id) => stripCharacters(this.decode([id]), "#"));
    const positions: number[] = [];
    let consumed = 0;
    let wordIndex = 0;
    for (let tokenIndex = 0; tokenIndex < tokenTexts.length && wordIndex < words.length; tokenIndex++) {
      consumed += codePointLength(tokenTexts[tokenIndex]!);
      if (wordPlaces.includes(wordIndex)) positions.push(tokenIndex + 1);
      if (consumed >= codePointLength(words[wordIndex]!)) {
        wordIndex++;
        consumed = 0;
      }
    }
    return positions;
  }

  private textIds(text: string): number[] {
    return this.tokenize(text).map((token) => this.encoder.get(token) ?? this.unkTokenId);
  }

  /**
   * Cuts the special-token strings out of `text` before cleaning, as transformers' slow tokenizers do
   * with their trie of no-split tokens (case-sensitive, longest match first). This is why "!" becomes
   * the pad token (id 0) in SD 2.x prompts (diffusers issue #4153).
   */
  private splitOnSpecialTokens(text: string): { text: string; special: boolean }[] {
    const pieces: { text: string; special: boolean }[] = [];
    let pieceStart = 0;
    let position = 0;
    while (position < text.length) {
      const special = this.noSplitTokens.find((token) => text.startsWith(token, position));
      if (special === undefined) {
        position++;
        continue;
      }
      if (position > pieceStart) pieces.push({ text: text.slice(pieceStart, position), special: false });
      pieces.push({ text: special, special: true });
      position += special.length;
      pieceStart = position;
    }
    if (pieceStart < text.length) pieces.push({ text: text.slice(pieceStart), special: false });
    return pieces;
  }

  /**
   * Byte-pair encoding of one byte-encoded word (`bpe` in tokenization_clip.py): start from its characters
   * with `</w>` on the last, then repeatedly merge every occurrence of the adjacent pair with the lowest rank.
   */
  private bpe(word: string): string[] {
    const cached = this.bpeCache.get(word);
    if (cached) return cached;

    const characters = [...word];
    let symbols = characters.map((char, index) => (index === characters.length - 1 ? char + END_OF_WORD : char));
    while (symbols.length > 1) {
      let bestRank = Number.POSITIVE_INFINITY;
      let bestIndex = -1;
      for (let index = 0; index + 1 < symbols.length; index++) {
        const rank = this.mergeRanks.get(`${symbols[index]} ${symbols[index + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          bestIndex = index;
        }
      }
      if (bestIndex < 0) break;
      const first = symbols[bestIndex]!;
      const second = symbols[bestIndex + 1]!;
      const merged: string[] = [];
      for (let index = 0; index < symbols.length; ) {
        if (symbols[index] === first && symbols[index + 1] === second && index + 1 < symbols.length) {
          merged.push(first + second);
          index += 2;
        } else {
          merged.push(symbols[index]!);
          index += 1;
        }
      }
      symbols = merged;
    }
    this.bpeCache.set(word, symbols);
    return symbols;
  }
}

function checkMaxLength(maxLength: number, name: string): void {
  if (!Number.isSafeInteger(maxLength) || maxLength < 2) {
    throw new RangeError(`CLIP tokenizer: ${name} is ${maxLength}; expected an integer >= 2 (room for bos and eos)`);
  }
}

/** A file's text, or undefined when it does not exist. */
async function readText(path: string): Promise<string | undefined> {
  const platform = getPlatform();
  if (!platform.stat(path)) return undefined;
  try {
    return new TextDecoder().decode(platform.readFile(path));
  } catch (error) {
    throw new Error(`CLIP tokenizer: cannot read ${path} (${(error as Error).message})`);
  }
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`CLIP tokenizer: ${path} is not valid JSON (${(error as Error).message})`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseJsonObject(text: string | undefined, path: string): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  const parsed = parseJson(text, path);
  if (!isPlainObject(parsed)) throw new Error(`CLIP tokenizer: ${path} must hold a JSON object`);
  return parsed;
}

function parseVocab(text: string, path: string): Map<string, number> {
  const parsed = parseJson(text, path);
  if (!isPlainObject(parsed)) {
    throw new Error(`CLIP tokenizer: ${path} must hold a JSON object mapping token strings to integer ids`);
  }
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(parsed)) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      throw new Error(
        `CLIP tokenizer: ${path} maps ${JSON.stringify(token)} to ${JSON.stringify(id)}; expected a non-negative integer id`,
      );
    }
    vocab.set(token, id);
  }
  if (vocab.size === 0) throw new Error(`CLIP tokenizer: ${path} has no tokens`);
  return vocab;
}

/**
 * `merges.txt`: a version line, then one merge per line ("first second"). As tokenization_clip.py does,
 * the first line is skipped unread and at most 48894 merges are used; unlike it, a malformed line is an error.
 */
function parseMerges(text: string, path: string): [string, string][] {
  const lines = pythonStrip(text)
    .split("\n")
    .slice(1, MAX_MERGES + 1);
  if (lines.length === 0) {
    throw new Error(`CLIP tokenizer: ${path} has no merges; expected a "#version" line and then lines "first second"`);
  }
  return lines.map((line, index) => {
    const parts = line.split(WHITESPACE_RUN).filter((part) => part.length > 0);
    if (parts.length !== 2) {
      throw new Error(
        `CLIP tokenizer: ${path} line ${index + 2} is ${JSON.stringify(line)}; expected two symbols separated by a space`,
      );
    }
    return [parts[0]!, parts[1]!];
  });
}

/** A special token in a transformers config is a string or an AddedToken object `{ content, ... }`. */
function specialTokenContent(value: unknown, key: string, path: string): string {
  if (typeof value === "string") return value;
  if (isPlainObject(value) && typeof value.content === "string") return value.content;
  throw new Error(
    `CLIP tokenizer: ${key} in ${path} is ${JSON.stringify(value)}; expected a string or an object with a "content" string`,
  );
}
