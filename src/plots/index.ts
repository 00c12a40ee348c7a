/**
 * Plots of evaluations, rendered on the server without a browser: Vega-Lite specifications
 * compiled to Vega and rendered by Vega's SVG renderer (headless), PNG through resvg (a Rust SVG
 * renderer on npm, no download), HTML as a self-contained page with the SVG inline and the data
 * and specification embedded as JSON.
 *
 * - {@link evalPlotSpec}: for each scoring rule, the ROC curve (AUC in its title), a reliability
 *   diagram (observed share of "Yes" labels against the mean pYes per bin, with the bin counts) and
 *   the score histograms per label. Used by `tallrec eval --plot`.
 * - {@link recsysPlotSpec}: P@k, R@k and NDCG@k per recommender, alone and re-ranked by TALLRec.
 *   Used by `tallrec recsys-eval --plot`.
 * - {@link writePlot}: renders a specification to FILE.svg, FILE.png or FILE.html.
 *
 * @module
 */
import { writeFile } from "node:fs/promises";

/** The file formats {@link writePlot} writes, by extension. */
export const PLOT_FORMATS = ["svg", "png", "html"] as const;
export type PlotFormat = (typeof PLOT_FORMATS)[number];

/** The format of a plot file from its extension; undefined when it is none of svg, png, html. */
export function plotFormat(file: string): PlotFormat | undefined {
  const m = /\.(svg|png|html?)$/i.exec(file);
  if (!m) return undefined;
  const ext = m[1].toLowerCase();
  return ext === "htm" ? "html" : (ext as PlotFormat);
}

/** A point of a ROC curve. */
export interface RocPoint {
  fpr: number;
  tpr: number;
  /** The threshold: scores >= it are called positive (Infinity for the origin). */
  threshold: number;
}

/**
 * The ROC curve: one point per distinct score (ties move both rates at once, a diagonal step), from
 * (0, 0) to (1, 1). Its trapezoidal area is the AUC with ties counted one half, as `auc` in src/eval/classification.
 */
export function rocCurve(labels: ArrayLike<number>, scores: ArrayLike<number>): RocPoint[] {
  const n = labels.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  let pos = 0;
  for (let i = 0; i < n; i++) pos += labels[i] === 1 ? 1 : 0;
  const neg = n - pos;
  const points: RocPoint[] = [{ fpr: 0, tpr: 0, threshold: Infinity }];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < n;) {
    const v = scores[order[i]];
    while (i < n && scores[order[i]] === v) {
      if (labels[order[i]] === 1) tp++;
      else fp++;
      i++;
    }
    points.push({ fpr: neg ? fp / neg : 0, tpr: pos ? tp / pos : 0, threshold: v });
  }
  return points;
}

/** The trapezoidal area under a ROC curve. */
export function areaUnder(points: readonly RocPoint[]): number {
  let a = 0;
  for (let i = 1; i < points.length; i++) a += ((points[i].fpr - points[i - 1].fpr) * (points[i].tpr + points[i - 1].tpr)) / 2;
  return a;
}

/** One bin of a reliability diagram. */
export interface ReliabilityBin {
  /** The bin's range of pYes, [lo, hi) (the last bin includes 1). */
  lo: number;
  hi: number;
  /** Examples in the bin. */
  count: number;
  /** Their mean pYes. */
  meanScore: number;
  /** The share of them labelled 1. */
  positiveRate: number;
}

/** Reliability diagram bins: `bins` equal-width bins over [0, 1]; empty bins are left out. */
export function reliabilityBins(labels: ArrayLike<number>, scores: ArrayLike<number>, bins = 10): ReliabilityBin[] {
  const count = new Array<number>(bins).fill(0);
  const sum = new Array<number>(bins).fill(0);
  const pos = new Array<number>(bins).fill(0);
  for (let i = 0; i < labels.length; i++) {
    const s = scores[i];
    const b = Math.min(bins - 1, Math.max(0, Math.floor(s * bins)));
    count[b]++;
    sum[b] += s;
    pos[b] += labels[i] === 1 ? 1 : 0;
  }
  const out: ReliabilityBin[] = [];
  for (let b = 0; b < bins; b++) if (count[b] > 0) out.push({ lo: b / bins, hi: (b + 1) / bins, count: count[b], meanScore: sum[b] / count[b], positiveRate: pos[b] / count[b] });
  return out;
}

/** One bar of a score histogram. */
export interface HistogramBin {
  label: "Yes" | "No";
  lo: number;
  hi: number;
  count: number;
}

/**
 * Histograms of the scores of each label over the scores' own range (a model's pYes may span a
 * narrow range), with `bins` equal-width bins shared by both labels.
 */
export function scoreHistograms(labels: ArrayLike<number>, scores: ArrayLike<number>, bins = 20): HistogramBin[] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < scores.length; i++) {
    lo = Math.min(lo, scores[i]);
    hi = Math.max(hi, scores[i]);
  }
  if (!(hi >= lo)) return [];
  if (hi === lo) {
    lo = Math.max(0, lo - 0.005);
    hi = Math.min(1, hi + 0.005);
    if (hi === lo) hi = lo + 1e-6;
  }
  const width = (hi - lo) / bins;
  const yes = new Array<number>(bins).fill(0);
  const no = new Array<number>(bins).fill(0);
  for (let i = 0; i < scores.length; i++) {
    const b = Math.min(bins - 1, Math.max(0, Math.floor((scores[i] - lo) / width)));
    if (labels[i] === 1) yes[b]++;
    else no[b]++;
  }
  const out: HistogramBin[] = [];
  for (let b = 0; b < bins; b++) {
    out.push({ label: "Yes", lo: lo + b * width, hi: lo + (b + 1) * width, count: yes[b] });
    out.push({ label: "No", lo: lo + b * width, hi: lo + (b + 1) * width, count: no[b] });
  }
  return out;
}

/** The AUC as plots and `tallrec eval` print it (4 decimals; "n/a" for NaN). */
export function formatAuc(x: number): string {
  return Number.isNaN(x) ? "n/a" : x.toFixed(4);
}

/** One scoring rule's predictions for {@link evalPlotSpec}. */
export interface RulePredictions {
  /** The rule's name ("softmax", "tallrec-compat"). */
  rule: string;
  labels: ArrayLike<number>;
  scores: ArrayLike<number>;
  /** The AUC as computed by the report (printed in the ROC chart's title). */
  auc: number;
}

type Spec = Record<string, unknown>;

const WIDTH = 230;
const HEIGHT = 200;
const LABEL_COLORS = { domain: ["Yes", "No"], range: ["#2f7ed8", "#e4572e"] };

/** A Vega-Lite specification of ROC, reliability and histograms for each rule (one row per rule). */
export function evalPlotSpec(title: string, rules: readonly RulePredictions[]): Spec {
  const rows = rules.map((r) => {
    const roc = rocCurve(r.labels, r.scores).map((p) => ({ fpr: p.fpr, tpr: p.tpr }));
    const rel = reliabilityBins(r.labels, r.scores, 10);
    const hist = scoreHistograms(r.labels, r.scores, 20);
    const diagonal = {
      data: {
        values: [
          { x: 0, y: 0 },
          { x: 1, y: 1 },
        ],
      },
      mark: { type: "line", strokeDash: [4, 4], color: "#999" },
      encoding: { x: { field: "x", type: "quantitative" }, y: { field: "y", type: "quantitative" } },
    };
    return {
      hconcat: [
        {
          title: `ROC, ${r.rule} (AUC ${formatAuc(r.auc)})`,
          width: WIDTH,
          height: HEIGHT,
          layer: [
            diagonal,
            {
              data: { values: roc },
              mark: { type: "line", interpolate: "linear", color: "#2f7ed8" },
              encoding: {
                x: { field: "fpr", type: "quantitative", title: "false positive rate", scale: { domain: [0, 1] } },
                y: { field: "tpr", type: "quantitative", title: "true positive rate", scale: { domain: [0, 1] } },
                order: { field: "fpr" },
              },
            },
          ],
        },
        {
          title: `Reliability, ${r.rule} (n per bin)`,
          width: WIDTH,
          height: HEIGHT,
          layer: [
            diagonal,
            {
              data: { values: rel },
              layer: [
                {
                  mark: { type: "line", color: "#2f7ed8", point: true },
                  encoding: {
                    x: { field: "meanScore", type: "quantitative", title: "mean pYes in bin", scale: { domain: [0, 1] } },
                    y: { field: "positiveRate", type: "quantitative", title: "share labelled Yes", scale: { domain: [0, 1] } },
                  },
                },
                {
                  mark: { type: "text", dy: -9, fontSize: 9, color: "#333" },
                  encoding: { x: { field: "meanScore", type: "quantitative" }, y: { field: "positiveRate", type: "quantitative" }, text: { field: "count", type: "quantitative" } },
                },
              ],
            },
          ],
        },
        {
          title: `Scores by label, ${r.rule}`,
          width: WIDTH,
          height: HEIGHT,
          data: { values: hist },
          mark: { type: "rect", opacity: 0.55 },
          encoding: {
            x: { field: "lo", type: "quantitative", title: "pYes", scale: { zero: false } },
            x2: { field: "hi" },
            y: { field: "count", type: "quantitative", title: "examples", stack: null },
            color: { field: "label", type: "nominal", title: "label", scale: LABEL_COLORS },
          },
        },
      ],
    };
  });
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: title, anchor: "start", fontSize: 13 },
    background: "white",
    padding: 10,
    config: { font: "DejaVu Sans, Liberation Sans, Arial, sans-serif", title: { fontSize: 11 }, axis: { labelFontSize: 9, titleFontSize: 10 } },
    vconcat: rows,
  };
}

/** One recommender's ranking metrics for {@link recsysPlotSpec}. */
export interface RankingPlotRow {
  /** The recommender ("item-kNN"). */
  model: string;
  reranked: boolean;
  at: Record<number, { precision: number; recall: number; ndcg: number }>;
}

/** A Vega-Lite specification of P/R/NDCG@k per recommender, with and without TALLRec re-ranking. */
export function recsysPlotSpec(title: string, ks: readonly number[], rows: readonly RankingPlotRow[]): Spec {
  const values = rows.flatMap((r) =>
    ks.flatMap((k) =>
      (["precision", "recall", "ndcg"] as const).map((m) => ({
        model: r.model,
        ranking: r.reranked ? "re-ranked by TALLRec" : "recommender alone",
        metric: `${m === "precision" ? "P" : m === "recall" ? "R" : "NDCG"}@${k}`,
        value: r.at[k]?.[m] ?? NaN,
      })),
    ),
  );
  const metrics = ks.flatMap((k) => [`P@${k}`, `R@${k}`, `NDCG@${k}`]);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: title, anchor: "start", fontSize: 13 },
    background: "white",
    padding: 10,
    config: { font: "DejaVu Sans, Liberation Sans, Arial, sans-serif", axis: { labelFontSize: 9, titleFontSize: 10 }, header: { labelFontSize: 11 } },
    data: { values },
    facet: { column: { field: "metric", type: "nominal", title: null, sort: metrics } },
    spec: {
      width: { step: 14 },
      height: 180,
      mark: "bar",
      encoding: {
        x: { field: "model", type: "nominal", title: null, axis: { labelAngle: -40 } },
        xOffset: { field: "ranking", type: "nominal", sort: ["recommender alone", "re-ranked by TALLRec"] },
        y: { field: "value", type: "quantitative", title: null },
        color: { field: "ranking", type: "nominal", title: null, sort: ["recommender alone", "re-ranked by TALLRec"], scale: { range: ["#9aa5b1", "#2f7ed8"] }, legend: { orient: "bottom", labelLimit: 400 } },
        tooltip: [{ field: "model" }, { field: "ranking" }, { field: "metric" }, { field: "value", format: ".4f" }],
      },
    },
    resolve: { scale: { y: "independent" } },
  };
}

/** Renders a Vega-Lite specification to SVG (headless: Vega's SVG renderer, no browser). */
export async function renderSvg(spec: Spec): Promise<string> {
  const [vega, vl] = await Promise.all([import("vega"), import("vega-lite")]);
  const compiled = vl.compile(spec as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}

/** Renders a specification into the bytes of a file of `format`. */
export async function renderPlot(spec: Spec, format: PlotFormat): Promise<Buffer> {
  const svg = await renderSvg(spec);
  if (format === "svg") return Buffer.from(svg, "utf8");
  if (format === "png") {
    const { Resvg } = await import("@resvg/resvg-js");
    return Buffer.from(new Resvg(svg, { background: "white", fitTo: { mode: "zoom", value: 2 }, font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" } }).render().asPng());
  }
  const title = typeof spec.title === "object" && spec.title ? String((spec.title as { text?: unknown }).text ?? "tallrec plot") : "tallrec plot";
  // self-contained: the SVG inline, the Vega-Lite specification (with its data) as JSON for reuse
  const json = JSON.stringify(spec).replace(/</g, "\\u003c");
  return Buffer.from(
    `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>\n<style>body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}</style></head>\n<body>\n${svg}\n<script type="application/json" id="vega-lite-spec">${json}</script>\n</body></html>\n`,
    "utf8",
  );
}

/** Renders a specification to `file` (.svg, .png or .html). */
export async function writePlot(file: string, spec: Spec): Promise<void> {
  const format = plotFormat(file);
  if (!format) throw new RangeError(`${file}: a plot file must end in .svg, .png or .html`);
  await writeFile(file, await renderPlot(spec, format));
}

/** The ROC area of predictions, as the plots draw it (equal to `auc` of src/eval/classification up to rounding). */
export function plottedAuc(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  return areaUnder(rocCurve(labels, scores));
}
