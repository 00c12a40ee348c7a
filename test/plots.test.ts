/**
 * Evaluation plots (src/plots, `tallrec eval --plot`, `tallrec recsys-eval --plot`): the curves'
 * data against the metrics, and the files the CLI writes: valid SVG (parsed by resvg's strict XML
 * parser), PNG and self-contained HTML, with the plotted AUC equal to the printed one.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Resvg } from "@resvg/resvg-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { auc } from "../src/eval/classification.js";
import { areaUnder, evalPlotSpec, formatAuc, plotFormat, reliabilityBins, renderPlot, rocCurve, scoreHistograms } from "../src/plots/index.js";
import { repoRoot, sampleFile, syntheticMovieLens } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

const cli = join(repoRoot, "dist", "cli", "main.js");

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Parses an SVG (throws when it is not well-formed XML or not an SVG) and returns its size in px. */
function parseSvg(svg: string): { width: number; height: number } {
  const r = new Resvg(svg);
  expect(svg.trimStart().startsWith("<svg")).toBe(true);
  return { width: r.width, height: r.height };
}

/** The texts of an SVG's <text> elements. */
function svgTexts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1].replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">"));
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

let dir: string;
let m: Awaited<ReturnType<typeof testModels>>;
beforeAll(async () => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" (npm test does it in pretest)`);
  m = await testModels();
  dir = mkdtempSync(join(tmpdir(), "tallrec-plots-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("plot data", () => {
  it("the ROC curve's area is the AUC (ties counted one half), from (0,0) to (1,1), monotone", () => {
    const rnd = seeded(7);
    for (const n of [2, 10, 200, 1000]) {
      const labels = Array.from({ length: n }, (_, i) => (i < 2 ? i : rnd() < 0.4 ? 1 : 0));
      // coarse scores: many ties
      const scores = labels.map((y) => Math.round((rnd() * 0.7 + y * 0.3) * 20) / 20);
      const curve = rocCurve(labels, scores);
      expect(curve[0]).toMatchObject({ fpr: 0, tpr: 0 });
      expect(curve.at(-1)).toMatchObject({ fpr: 1, tpr: 1 });
      for (let i = 1; i < curve.length; i++) {
        expect(curve[i].fpr).toBeGreaterThanOrEqual(curve[i - 1].fpr);
        expect(curve[i].tpr).toBeGreaterThanOrEqual(curve[i - 1].tpr);
      }
      expect(Math.abs(areaUnder(curve) - auc(labels, scores))).toBeLessThan(1e-12);
    }
  });

  it("reliability bins and histograms count every example once", () => {
    const rnd = seeded(3);
    const scores = Array.from({ length: 500 }, () => rnd());
    scores.push(0, 1);
    const labels = scores.map((s) => (rnd() < s ? 1 : 0));
    const bins = reliabilityBins(labels, scores, 10);
    expect(bins.reduce((a, b) => a + b.count, 0)).toBe(scores.length);
    for (const b of bins) {
      expect(b.meanScore).toBeGreaterThanOrEqual(b.lo);
      expect(b.meanScore).toBeLessThanOrEqual(b.hi);
      const inBin = scores.map((s, i) => [s, labels[i]]).filter(([s]) => (s >= b.lo && s < b.hi) || (b.hi === 1 && s === 1));
      expect(inBin.length).toBe(b.count);
      expect(b.positiveRate).toBeCloseTo(inBin.filter(([, y]) => y === 1).length / b.count, 12);
    }
    const hist = scoreHistograms(labels, scores, 20);
    expect(hist.filter((h) => h.label === "Yes").reduce((a, h) => a + h.count, 0)).toBe(labels.filter((y) => y === 1).length);
    expect(hist.filter((h) => h.label === "No").reduce((a, h) => a + h.count, 0)).toBe(labels.filter((y) => y === 0).length);
    // one distinct score: still a histogram, not a division by zero
    expect(scoreHistograms([0, 1], [0.5, 0.5], 4).reduce((a, h) => a + h.count, 0)).toBe(2);
  });

  it("renders SVG, PNG and HTML; the format comes from the extension", async () => {
    expect([plotFormat("a.svg"), plotFormat("b.PNG"), plotFormat("c.html"), plotFormat("d.htm"), plotFormat("e.pdf")]).toEqual(["svg", "png", "html", "html", undefined]);
    const spec = evalPlotSpec("test", [{ rule: "softmax", labels: [0, 1, 0, 1], scores: [0.1, 0.9, 0.4, 0.35], auc: 0.75 }]);
    const svg = (await renderPlot(spec, "svg")).toString("utf8");
    expect(parseSvg(svg).width).toBeGreaterThan(300);
    expect(svgTexts(svg)).toContain("ROC, softmax (AUC 0.7500)");
    const png = await renderPlot(spec, "png");
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(png.readUInt32BE(16)).toBeGreaterThan(600); // IHDR width, drawn at 2x
    const html = (await renderPlot(spec, "html")).toString("utf8");
    expect(html).toMatch(/^<!doctype html>/);
    parseSvg(/<svg[\s\S]*<\/svg>/.exec(html)![0]);
  });
});

describe("tallrec eval --plot", () => {
  it("writes ROC, reliability and histograms for both rules; the plotted AUC equals the printed one", async () => {
    const svgPath = join(dir, "roc.svg");
    const res = await run(["eval", sampleFile("movie"), "-m", m.tiny, "-l", m.loraA, "--limit", "80", "--plot", svgPath, "--json", "-o", join(dir, "preds.jsonl")]);
    expect(res.code, res.stderr).toBe(0);
    const report = JSON.parse(res.stdout) as { metrics: Record<"softmax" | "tallrec-compat", { auc: number }> };
    const svg = readFileSync(svgPath, "utf8");
    const size = parseSvg(svg);
    expect(size.width).toBeGreaterThan(600);
    expect(size.height).toBeGreaterThan(300);
    const texts = svgTexts(svg);
    for (const rule of ["softmax", "tallrec-compat"] as const) {
      expect(texts).toContain(`ROC, ${rule} (AUC ${formatAuc(report.metrics[rule].auc)})`);
      expect(texts).toContain(`Reliability, ${rule} (n per bin)`);
      expect(texts).toContain(`Scores by label, ${rule}`);
    }
    // the printed table shows the same AUC as the plot
    const table = await run(["eval", sampleFile("movie"), "-m", m.tiny, "-l", m.loraA, "--limit", "80", "--plot", join(dir, "roc.html")]);
    expect(table.code, table.stderr).toBe(0);
    for (const rule of ["softmax", "tallrec-compat"] as const) {
      const line = table.stdout.split("\n").find((l) => l.startsWith(rule + " "))!;
      expect(line.trim().split(/\s+/)[1]).toBe(formatAuc(report.metrics[rule].auc));
    }
    // the HTML carries the data: its ROC curves' areas are the report's AUCs, and the bin counts add up to the rows
    const html = readFileSync(join(dir, "roc.html"), "utf8");
    const spec = JSON.parse(/<script type="application\/json" id="vega-lite-spec">([\s\S]*?)<\/script>/.exec(html)![1]) as {
      vconcat: Array<{ hconcat: [{ layer: Array<{ data: { values: Array<{ fpr: number; tpr: number }> } }> }, { layer: Array<{ data: { values: Array<{ count: number }> } }> }] }>;
    };
    expect(spec.vconcat).toHaveLength(2);
    (["softmax", "tallrec-compat"] as const).forEach((rule, i) => {
      const roc = spec.vconcat[i].hconcat[0].layer[1].data.values.map((p) => ({ ...p, threshold: 0 }));
      expect(Math.abs(areaUnder(roc) - report.metrics[rule].auc)).toBeLessThan(1e-12);
      expect(spec.vconcat[i].hconcat[1].layer[1].data.values.reduce((a, b) => a + b.count, 0)).toBe(80);
    });
    // PNG
    const png = await run(["eval", sampleFile("movie"), "-m", m.tiny, "-l", m.loraA, "--limit", "20", "--plot", join(dir, "roc.png"), "--quiet"]);
    expect(png.code, png.stderr).toBe(0);
    expect(readFileSync(join(dir, "roc.png")).subarray(1, 4).toString("latin1")).toBe("PNG");
    // a wrong extension is a usage error before the model loads
    const bad = await run(["eval", sampleFile("movie"), "-m", m.tiny, "-l", m.loraA, "--plot", join(dir, "roc.pdf")]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/\.svg, \.png or \.html/);
  });
});

describe("tallrec recsys-eval --plot", () => {
  it("draws P/R/NDCG@k per model with and without re-ranking, with the report's values", async () => {
    const data = (await syntheticMovieLens()).dir;
    const htmlPath = join(dir, "recsys.html");
    const res = await run(["recsys-eval", "--data", data, "--models", "popularity,knn", "--users", "8", "--candidates", "8", "--ks", "5", "-m", m.tiny, "-l", m.loraA, "--no-published", "--json", "--plot", htmlPath]);
    expect(res.code, res.stderr).toBe(0);
    const report = JSON.parse(res.stdout) as { ranking: Array<{ name: string; reranked: boolean; at: Record<string, { precision: number; recall: number; ndcg: number }> }> };
    expect(report.ranking.filter((r) => r.reranked)).toHaveLength(2);
    const html = readFileSync(htmlPath, "utf8");
    const svg = /<svg[\s\S]*<\/svg>/.exec(html)![0];
    parseSvg(svg);
    const texts = svgTexts(svg);
    for (const t of ["P@5", "R@5", "NDCG@5", "recommender alone", "re-ranked by TALLRec"]) expect(texts).toContain(t);
    const spec = JSON.parse(/<script type="application\/json" id="vega-lite-spec">([\s\S]*?)<\/script>/.exec(html)![1]) as { data: { values: Array<{ ranking: string; metric: string; value: number }> } };
    const values = spec.data.values;
    expect(values).toHaveLength(report.ranking.length * 3);
    for (const [i, row] of report.ranking.entries()) {
      const mine = values.slice(i * 3, i * 3 + 3);
      expect(mine.map((v) => v.ranking)).toEqual(Array(3).fill(row.reranked ? "re-ranked by TALLRec" : "recommender alone"));
      expect(mine.map((v) => v.value)).toEqual([row.at["5"].precision, row.at["5"].recall, row.at["5"].ndcg]);
    }
    const svgOut = await run(["recsys-eval", "--data", data, "--models", "popularity", "--users", "8", "--ks", "5,10", "--no-published", "--plot", join(dir, "recsys.svg"), "--quiet"]);
    expect(svgOut.code, svgOut.stderr).toBe(0);
    expect(svgTexts(readFileSync(join(dir, "recsys.svg"), "utf8"))).toContain("NDCG@10");
  });
});
