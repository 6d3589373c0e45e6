/** Shared by the API and browser tests: the demo scene, HTTP helpers and PNG decoding. */
import http from "node:http";
import sharp from "sharp";
import type { RgbImage } from "../../src/image/index.js";
import {
  editPrompt,
  editScene,
  randomScene,
  renderScene,
  type SceneEdit,
  scenePrompt,
} from "../../src/scenes/index.js";
import { COLORS } from "../../src/scenes/scene.js";

export const MODEL = new URL("../../models/nulltext-shapes", import.meta.url).pathname;

/** The demo's scene (randomScene(7, {objects: 1}) at 64²) and its colour swap. */
export function demoScene() {
  const scene = randomScene(7, { objects: 1 });
  const object = scene.objects[0];
  if (!object) throw new Error("demo scene has no object");
  const edit: SceneEdit = { kind: "color", objectIndex: 0, to: COLORS.find((c) => c !== object.color) ?? "red" };
  return {
    scene,
    image: renderScene(scene, 64),
    prompt: scenePrompt(scene),
    shape: object.shape,
    color: object.color,
    edited: editPrompt(scene, edit),
    truth: editScene(scene, edit),
  };
}

export async function pngBytes(img: RgbImage): Promise<Uint8Array> {
  const buf = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .png()
    .toBuffer();
  return new Uint8Array(buf);
}

export async function decodePng(bytes: Uint8Array): Promise<RgbImage> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

/** A request with the path sent exactly as given (fetch would normalise `../`). */
export function rawRequest(
  base: string,
  method: string,
  rawPath: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path: rawPath, headers }, (res) => {
      let body = "";
      res.on("data", (c) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Reads a job's server-sent events until it ends; `onEvent` may act on each (e.g. cancel). */
export async function followJob(
  base: string,
  job: string,
  onEvent: (e: { state: string; position?: number; progress?: { phase: string; step: number } }) => void = () => {},
  headers: Record<string, string> = {},
): Promise<{
  state: string;
  error?: string;
  events: { state: string; position?: number; progress?: { phase: string; step: number } }[];
}> {
  const res = await fetch(`${base}api/jobs/${job}/events`, { headers });
  if (!res.ok || !res.body) throw new Error(`events of ${job}: ${res.status}`);
  const events: { state: string; position?: number; progress?: { phase: string; step: number }; error?: string }[] = [];
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (line.startsWith("data: ")) {
        const e = JSON.parse(line.slice(6));
        events.push(e);
        onEvent(e);
      }
      end = buffer.indexOf("\n\n");
    }
  }
  const last = events[events.length - 1];
  if (!last) throw new Error(`events of ${job}: none`);
  return { state: last.state, error: last.error, events };
}
