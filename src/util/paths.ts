/**
 * '/'-separated path arithmetic as `node:path`'s posix functions do it, for code that must not
 * import `node:*` (Windows accepts '/' too). Paths are only computed here, never touched.
 */

/** Joins the parts and normalises the result ('a//b/./c/../d' → 'a/b/d'), as `path.posix.join`. */
export function joinPath(...parts: string[]): string {
  const joined = parts.filter((p) => p.length > 0).join("/");
  if (joined.length === 0) return ".";
  const absolute = joined.startsWith("/");
  const out: string[] = [];
  for (const segment of joined.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === ".." && out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else if (segment !== ".." || !absolute) out.push(segment);
  }
  const trailing = joined.endsWith("/") && out.length > 0 ? "/" : "";
  const body = out.join("/") + trailing;
  if (absolute) return `/${body}`;
  return body.length > 0 ? body : ".";
}

/** The folder part ('a/b/c.json' → 'a/b'; 'c.json' → '.'). */
export function dirName(path: string): string {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  const at = trimmed.lastIndexOf("/");
  if (at < 0) return ".";
  if (at === 0) return "/";
  return trimmed.slice(0, at);
}

/** The last part ('a/b/c.json' → 'c.json'). */
export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** The extension with its dot ('c.safetensors' → '.safetensors'; 'README' → ''). */
export function extName(path: string): string {
  const base = baseName(path);
  const at = base.lastIndexOf(".");
  return at <= 0 ? "" : base.slice(at);
}
