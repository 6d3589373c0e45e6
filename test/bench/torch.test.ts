/** bench:unet's --torch file: unet_bench.py's JSON lines, read into figures or refused with file and line. */
import { describe, expect, it } from "vitest";
import { parseTorchJsonl, readTorchJsonl } from "../../bench/torch.js";

// Two lines as unet_bench.py prints them (fields trimmed), and a blank last line as `>` leaves it.
const TWO_LINES = [
  '{"name": "fwd32", "seconds": 4.73, "peak_rss_gb": 3.652, "runs_s": [4.7, 4.73, 4.8], "torch": "1.13.0a0", "blas": "openblas"}',
  '{"name": "grad64", "seconds": 35.51, "peak_rss_gb": 8.66, "torch": "1.13.0a0", "blas": "openblas"}',
  "",
].join("\n");

describe("parseTorchJsonl", () => {
  it("reads each case's seconds and peak RSS", () => {
    const rows = parseTorchJsonl(TWO_LINES, "torch.jsonl");
    expect([...rows.keys()]).toEqual(["fwd32", "grad64"]);
    expect(rows.get("fwd32")).toEqual({
      name: "fwd32",
      seconds: 4.73,
      peak_rss_gb: 3.652,
      torch: "1.13.0a0",
      blas: "openblas",
    });
    expect(rows.get("grad64")?.seconds).toBe(35.51);
    expect(rows.get("grad64")?.peak_rss_gb).toBe(8.66);
  });

  it("names the file and line of a bad row", () => {
    const truncated = `${TWO_LINES.split("\n")[0]}\n{"name": "fwd64", "seconds": 16.3`;
    expect(() => parseTorchJsonl(truncated, "t.jsonl")).toThrow(/^t\.jsonl:2: not a JSON line/);
    const noRss = '{"name": "fwd64", "seconds": 16.34}';
    expect(() => parseTorchJsonl(noRss, "t.jsonl")).toThrow('t.jsonl:1: "peak_rss_gb" must be a positive number');
    const unknownCase = '{"name": "fwd128", "seconds": 1, "peak_rss_gb": 1}';
    expect(() => parseTorchJsonl(unknownCase, "t.jsonl")).toThrow(/t\.jsonl:1: "name" must be one of fwd32, fwd64/);
    const twice = `${TWO_LINES}${TWO_LINES}`;
    expect(() => parseTorchJsonl(twice, "t.jsonl")).toThrow("t.jsonl:3: a second row for fwd32");
    expect(() => parseTorchJsonl("\n", "t.jsonl")).toThrow("t.jsonl: no rows");
  });

  it("names a file it cannot read", () => {
    expect(() => readTorchJsonl("/nonexistent/torch.jsonl")).toThrow(
      /cannot read PyTorch figures \/nonexistent\/torch\.jsonl/,
    );
  });
});
