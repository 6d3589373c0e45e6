/**
 * npm run eval:recon -- [FOLDER] [--json] [--model M] [--steps N] [--limit N]
 * The paper's reconstruction comparison on a folder of images with prompts: each image (PNG, JPEG,
 * WebP) with its prompt in a same-named .txt file, or a prompts.json {"file": "prompt"}. Without a
 * folder, 10 evaluation scenes of the built-in model are used.
 */
import fs from "node:fs";
import path from "node:path";
import { argValue, printTable, wantsJson } from "../bench/common.js";
import { DEFAULT_MODEL } from "../src/cli/main.js";
import { reconstructionComparison } from "../src/eval/recon.js";
import { fitToSquare, type RgbImage, readImage } from "../src/image/index.js";
import { NullTextPipeline } from "../src/pipeline.js";
import { randomScene, renderScene, scenePrompt } from "../src/scenes/index.js";

const folder = process.argv.slice(2).find((a, i, all) => !a.startsWith("--") && !all[i - 1]?.startsWith("--"));
const pipe = await NullTextPipeline.load(argValue("--model") ?? DEFAULT_MODEL);
const limit = Number(argValue("--limit") ?? 1e9);
const items: { image: RgbImage; prompt: string; name: string }[] = [];
if (folder) {
  const index = path.join(folder, "prompts.json");
  const prompts: Record<string, string> = fs.existsSync(index) ? JSON.parse(fs.readFileSync(index, "utf8")) : {};
  for (const file of fs.readdirSync(folder).sort()) {
    if (!/\.(png|jpe?g|webp)$/i.test(file) || items.length >= limit) continue;
    const txt = path.join(folder, file.replace(/\.[^.]+$/, ".txt"));
    const prompt = prompts[file] ?? (fs.existsSync(txt) ? fs.readFileSync(txt, "utf8").trim() : undefined);
    if (prompt === undefined)
      throw new Error(`eval:recon: no prompt for ${file} (add ${path.basename(txt)} or an entry in prompts.json)`);
    items.push({ image: fitToSquare(await readImage(path.join(folder, file)), pipe.resolution), prompt, name: file });
  }
  if (items.length === 0) throw new Error(`eval:recon: no images in ${folder}`);
} else {
  for (let seed = 0; seed < Math.min(10, limit); seed++) {
    const scene = randomScene(seed, { objects: "any" });
    items.push({ image: renderScene(scene, pipe.resolution), prompt: scenePrompt(scene), name: `scene ${seed}` });
  }
}
const rows = await reconstructionComparison(pipe, items, {
  steps: Number(argValue("--steps") ?? 50),
  onItem: (i, n) => process.stderr.write(`eval:recon ${i}/${n}\n`),
});
if (wantsJson()) for (const r of rows) console.log(JSON.stringify(r));
else {
  console.log(
    `eval:recon — ${items.length} images at ${pipe.resolution}×${pipe.resolution}, model ${pipe.model.source}\n`,
  );
  printTable(
    rows.map((r) => ({
      method: r.method,
      "PSNR dB": r.psnr.toFixed(2),
      SSIM: r.ssim.toFixed(4),
      "UNet evals": r.unet_evals.toFixed(0),
      VJPs: r.vjps.toFixed(0),
      "s/image": r.seconds.toFixed(1),
    })),
  );
}
await pipe.release();
