/**
 * npm run parity -- <dir>: checks a model folder against golden tensors of the reference
 * implementation. <dir> holds golden.json, golden.safetensors and model/ (as ../shared/parity).
 * Prints one line per entry and exits non-zero if any entry fails or cannot be checked.
 */
import { runParity } from "../src/parity/run.js";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: npm run parity -- <dir with golden.json, golden.safetensors and model/>");
  process.exit(2);
}
const fmt = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));
let failed = 0;
try {
  const lines = await runParity(dir, {
    onLine: (l) => {
      if (!l.ok) failed++;
      console.log(
        `${l.ok ? "OK  " : "FAIL"}  ${l.name.padEnd(44)} max|diff| ${fmt(l.maxDiff).padStart(9)}  allowed ${fmt(l.allowed).padStart(9)}${l.note ? `  (${l.note})` : ""}`,
      );
    },
  });
  console.log(`\n${lines.length - failed}/${lines.length} entries pass`);
} catch (err) {
  console.error(`parity: ${(err as Error).message}`);
  process.exit(1);
}
process.exit(failed ? 1 : 0);
