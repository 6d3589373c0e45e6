/**
 * The inversion methods, by id. Adding a method: its module under methods/, one line here, its tests.
 */
import type { InversionMethodModule, InversionSettings } from "./method.js";
import { ddim } from "./methods/ddim.js";
import { ddpm } from "./methods/ddpm.js";
import { direct } from "./methods/direct.js";
import { edict } from "./methods/edict.js";
import { npi } from "./methods/npi.js";
import { nti, ntiConditional, ntiGlobal } from "./methods/nti.js";
import { sdedit } from "./methods/sdedit.js";

// biome-ignore lint/suspicious/noExplicitAny: each module is typed by its own settings
const MODULES: InversionMethodModule<any>[] = [nti, npi, ddim, ntiGlobal, ntiConditional, direct, sdedit, ddpm, edict];

/** The default method. */
export const DEFAULT_METHOD = "nti";

export const METHODS: ReadonlyMap<string, InversionMethodModule> = new Map(MODULES.map((m) => [m.id, m]));

/** The method of this id, or an error listing the registered ones. */
export function getMethod(id: string): InversionMethodModule {
  const m = METHODS.get(id);
  if (!m)
    throw new Error(`unknown inversion method ${JSON.stringify(id)} (methods: ${[...METHODS.keys()].join(", ")})`);
  return m;
}

/**
 * The full settings of a method from partial ones: defaults filled in, unknown names refused (a
 * setting of another method is named as such), every value validated.
 */
export function resolveSettings(partial: Record<string, unknown>): InversionSettings {
  if (partial.method !== undefined && typeof partial.method !== "string")
    throw new Error(`invert: method ${JSON.stringify(partial.method)} is not a method id`);
  const method = getMethod((partial.method as string | undefined) ?? DEFAULT_METHOD);
  const settings: InversionSettings = { method: method.id, ...method.defaults } as InversionSettings;
  for (const [k, v] of Object.entries(partial)) {
    if (v === undefined || k === "method") continue;
    if (!(k in method.defaults)) {
      const owners = [...METHODS.values()].filter((m) => k in m.defaults).map((m) => m.id);
      throw new Error(
        `invert (${method.id}): setting '${k}' ${owners.length ? `applies to ${owners.join(", ")}, not to ${method.id}` : "is unknown"} (${method.id} takes ${Object.keys(method.defaults).join(", ")})`,
      );
    }
    const expected = typeof (method.defaults as Record<string, unknown>)[k];
    if (typeof v !== expected)
      throw new Error(`invert (${method.id}): setting '${k}' is ${JSON.stringify(v)}, expected a ${expected}`);
    settings[k] = v as number | string | boolean;
  }
  method.validate(settings);
  return settings;
}
