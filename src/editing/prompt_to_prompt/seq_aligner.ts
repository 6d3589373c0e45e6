/**
 * Token alignment between a source prompt and an edited one, for Prompt-to-Prompt (Hertz et al.
 * 2022, "Prompt-to-Prompt Image Editing with Cross Attention Control", arXiv 2208.01626, §3.2):
 *
 *   word swap:     M*_t ← M_t · M          (M: the 77×77 replacement mapper, replacementMapper)
 *   adding words:  (M*_t)_{i,j} ← (M_t)_{i,A(j)}   where A(j) ≠ None, else kept   (A: refinementMapper)
 *
 * A is the alignment function of the paper's "Adding a New Phrase", computed by global alignment
 * of the token sequences. Behaviour follows the official `seq_aligner.py`.
 */
import type { ClipTokenizer } from "../../models/clip_tokenizer.js";

export const MAX_TOKENS = 77;

const GAP = 0;
const MATCH = 1;
const MISMATCH = -1;

/**
 * Needleman–Wunsch global alignment of x (source tokens) and y (target tokens) with gap 0, match 1,
 * mismatch −1 and the official code's tie order (left, then up, then diagonal). Returns, for each
 * target position j, the aligned source position or −1 where y[j] was inserted.
 */
export function alignTokens(x: readonly number[], y: readonly number[]): number[] {
  const rows = x.length + 1;
  const cols = y.length + 1;
  const score = new Int32Array(rows * cols);
  const trace = new Uint8Array(rows * cols); // 1 left, 2 up, 3 diagonal, 4 origin
  for (let j = 1; j < cols; j++) {
    score[j] = j * GAP;
    trace[j] = 1;
  }
  for (let i = 1; i < rows; i++) {
    score[i * cols] = i * GAP;
    trace[i * cols] = 2;
  }
  trace[0] = 4;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const left = (score[i * cols + j - 1] as number) + GAP;
      const up = (score[(i - 1) * cols + j] as number) + GAP;
      const diag = (score[(i - 1) * cols + j - 1] as number) + (x[i - 1] === y[j - 1] ? MATCH : MISMATCH);
      const best = Math.max(left, up, diag);
      score[i * cols + j] = best;
      trace[i * cols + j] = best === left ? 1 : best === up ? 2 : 3;
    }
  }
  const mapper: number[] = [];
  let i = x.length;
  let j = y.length;
  while (i > 0 || j > 0) {
    const t = trace[i * cols + j];
    if (t === 3) {
      i--;
      j--;
      mapper.push(i);
    } else if (t === 1) {
      j--;
      mapper.push(-1);
    } else if (t === 2) {
      i--;
    } else break;
  }
  return mapper.reverse();
}

/**
 * The refinement mapper (official `get_mapper`): for each of the 77 target positions, the source
 * position whose attention it takes, and alpha = 0 where the target token has no source (a new word).
 */
export function refinementMapper(
  source: string,
  target: string,
  tokenizer: ClipTokenizer,
): { mapper: Int32Array; alphas: Float32Array } {
  const x = tokenizer.encodeUnpadded(source);
  const y = tokenizer.encodeUnpadded(target);
  if (x.length > MAX_TOKENS || y.length > MAX_TOKENS) {
    throw new Error(`refinement edit: prompts must fit in ${MAX_TOKENS} tokens (have ${x.length} and ${y.length})`);
  }
  const base = alignTokens(x, y);
  const mapper = new Int32Array(MAX_TOKENS);
  const alphas = new Float32Array(MAX_TOKENS).fill(1);
  base.forEach((src, j) => {
    mapper[j] = src;
    alphas[j] = src === -1 ? 0 : 1;
  });
  // Positions after the target prompt (padding) map to the same offsets past it.
  for (let k = base.length; k < MAX_TOKENS; k++) mapper[k] = y.length + (k - base.length);
  return { mapper, alphas };
}

/**
 * The replacement mapper (official `get_replacement_mapper_`): a 77×77 matrix M with
 * edited-prompt attention = source attention · M. Swapped words map onto each other (spread evenly
 * when their token counts differ); every other token maps to itself.
 */
export function replacementMapper(source: string, target: string, tokenizer: ClipTokenizer): Float32Array {
  const wordsX = source.split(" ");
  const wordsY = target.split(" ");
  if (wordsX.length !== wordsY.length) {
    throw new Error(
      `word replacement needs prompts with the same number of words: "${source}" has ${wordsX.length}, "${target}" has ${wordsY.length} (use a refinement edit to add words)`,
    );
  }
  const replaced = wordsY.flatMap((w, i) => (w !== wordsX[i] ? [i] : []));
  const src = replaced.map((i) => tokenizer.wordTokenIndices(source, i));
  const tgt = replaced.map((i) => tokenizer.wordTokenIndices(target, i));
  const m = new Float32Array(MAX_TOKENS * MAX_TOKENS);
  let i = 0;
  let j = 0;
  let cur = 0;
  while (i < MAX_TOKENS && j < MAX_TOKENS) {
    const s = src[cur];
    if (cur < src.length && s && s[0] === i) {
      const t = tgt[cur] as number[];
      if (s.length === t.length) {
        s.forEach((si, k) => {
          m[si * MAX_TOKENS + (t[k] as number)] = 1;
        });
      } else {
        for (const ti of t) for (const si of s) m[si * MAX_TOKENS + ti] = 1 / t.length;
      }
      cur++;
      i += s.length;
      j += t.length;
    } else if (cur < src.length) {
      m[i * MAX_TOKENS + j] = 1;
      i++;
      j++;
    } else {
      // Past the last swapped word the official code maps j → j (not i → j).
      m[j * MAX_TOKENS + j] = 1;
      i++;
      j++;
    }
  }
  return m;
}
