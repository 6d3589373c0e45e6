/**
 * Typed parsing of diffusers/transformers `config.json` files: every key is either a known
 * option (type-checked against its default), a key known to be irrelevant here, or an error
 * naming the key — as nanoGPT's configurator refuses unknown keys.
 */
import { getPlatform } from "../platform/platform.js";

export type ConfigValue = number | string | boolean | null | readonly (number | string | null)[];

export interface ConfigSchema<T> {
  /** The options we implement, with diffusers' defaults. */
  defaults: T;
  /** Keys that do not change the computation here (metadata, training-only options). */
  ignored?: readonly string[];
  /**
   * Keys diffusers knows that we accept only at their neutral value (listed so that a config
   * using them fails with "unsupported" rather than "unknown").
   */
  neutral?: Readonly<Record<string, ConfigValue>>;
}

export function readJson(file: string, what: string): unknown {
  const platform = getPlatform();
  if (!platform.stat(file)) throw new Error(`${what}: cannot read ${file} (missing)`);
  let text: string;
  try {
    text = new TextDecoder().decode(platform.readFile(file));
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new Error(`${what}: cannot read ${file} (${code ?? (err as Error).message})`);
  }
  return parseJson(text, file, what);
}

/** `text` parsed as JSON; `file` names it in the error. */
export function parseJson(text: string, file: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what}: ${file} is not valid JSON (${(err as Error).message})`);
  }
}

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

function equalValues(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Parses `json` against a schema. A key whose default is null accepts any JSON value; otherwise
 * the value must have the default's type (number, string, boolean, or array), or be null when
 * `nullable` lists it.
 */
export function parseConfig<T extends object>(
  json: unknown,
  schema: ConfigSchema<T>,
  file: string,
  nullable: readonly string[] = [],
): T {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`${file}: expected a JSON object`);
  }
  const out = { ...schema.defaults } as Record<string, unknown>;
  for (const [key, value] of Object.entries(json)) {
    if (key.startsWith("_") || schema.ignored?.includes(key)) continue;
    if (schema.neutral && key in schema.neutral) {
      if (!equalValues(value, schema.neutral[key])) {
        throw new Error(
          `${file}: '${key}' = ${JSON.stringify(value)} is not supported (only ${JSON.stringify(schema.neutral[key])})`,
        );
      }
      continue;
    }
    if (!(key in schema.defaults)) throw new Error(`${file}: unknown option '${key}' = ${JSON.stringify(value)}`);
    const expected = (schema.defaults as Record<string, unknown>)[key];
    const ok =
      expected === null ||
      kindOf(value) === kindOf(expected) ||
      (value === null && nullable.includes(key)) ||
      // list-or-scalar options (e.g. attention_head_dim) are declared with a scalar default
      (Array.isArray(value) && nullable.includes(`${key}[]`));
    if (!ok) {
      throw new Error(`${file}: '${key}' must be a ${kindOf(expected)}, got ${JSON.stringify(value)}`);
    }
    out[key] = value;
  }
  return out as T;
}

/** Fails with a message naming the option unless `ok`. */
export function ensureSupported(ok: boolean, file: string, key: string, value: unknown, accepted: string): void {
  if (!ok) throw new Error(`${file}: '${key}' = ${JSON.stringify(value)} is not supported (${accepted})`);
}

/** An int-or-list option expanded to one value per block. */
export function perBlock<V>(value: V | readonly V[], blocks: number, file: string, key: string): V[] {
  if (Array.isArray(value)) {
    if (value.length !== blocks) {
      throw new Error(`${file}: '${key}' has ${value.length} entries for ${blocks} blocks`);
    }
    return [...value];
  }
  return new Array<V>(blocks).fill(value as V);
}
