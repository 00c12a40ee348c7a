/**
 * What every CLI command shares: global options (threads, GPU, context), model and adapter flags
 * with their environment defaults, exit codes, and stderr logging.
 */
import { basename, extname } from "node:path";

import { Command, InvalidArgumentError, Option } from "commander";

import { Engine, type AdapterSpec, type EngineOptions } from "../engine/engine.js";
import { EXIT, TallrecError, type ErrorCode } from "../errors.js";
import type { GpuMode } from "../engine/native.js";

/** Exit codes: 0 ok, 1 failure, 2 bad usage, 3 done but some rows failed, 130 interrupted (src/errors.ts maps every error code to one). */
export { EXIT };

/**
 * An error the CLI reports as one line (no stack). Its exit status is its code's (ERROR_CODES in
 * src/errors.ts), unless given: PARTIAL for a command that finished with failed items.
 */
export class CliError extends TallrecError {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT.FAILURE, code: ErrorCode = exitCode === EXIT.USAGE ? "invalid_input" : "unavailable") {
    super(code, message);
    this.exitCode = exitCode;
  }
}

export interface GlobalOptions {
  threads?: number;
  fixedThreads?: boolean;
  kvLayout?: "unified" | "streams" | "auto";
  streams?: number;
  gpu: GpuMode;
  ctx?: number;
  batch?: number;
  sequences?: number;
  kvType?: "f16" | "f32";
  flashAttn?: "on" | "off";
  verbose?: boolean;
  quiet?: boolean;
}

export interface ModelOptions {
  model?: string;
  lora: string[];
}

export function positiveIntArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

/** Adds the global options to the program (they apply to every command). */
export function addGlobalOptions(program: Command): Command {
  return program
    .option("--threads <n>", "CPU threads (default: $TALLREC_THREADS, else all cores)", positiveIntArg("--threads"))
    .option("--fixed-threads", "always decode on --threads threads (default: fewer while other processes hold cores; Linux)")
    .addOption(new Option("--gpu <mode>", "auto: CUDA when usable, else CPU; cuda; cpu").choices(["auto", "cuda", "cpu"]).default("auto"))
    .option("--ctx <n>", "KV cells of the context (most tokens resident at once)", positiveIntArg("--ctx"))
    .option("--batch <n>", "most tokens per llama_decode call", positiveIntArg("--batch"))
    .option("--sequences <n>", "most prompts in flight per round (<= 256)", positiveIntArg("--sequences"))
    .addOption(
      new Option("--kv-type <type>", "KV cache precision: f16 (default; half the memory) or f32 (exact mode: with F32 weights, scores equal float math and do not depend on batching)")
        .choices(["f16", "f32"])
        .env("TALLREC_KV_TYPE"),
    )
    .addOption(
      new Option("--kv-layout <layout>", "KV cache layout: auto (default: per call, by a cost model), unified (prompts share cells, a trie), streams (a KV stream per prompt)")
        .choices(["auto", "unified", "streams"])
        .env("TALLREC_KV_LAYOUT"),
    )
    .option("--streams <n>", "KV streams of the streams layout (default 8; each holds --ctx / n cells)", positiveIntArg("--streams"))
    .addOption(new Option("--flash-attn <mode>", "flash attention: off (default) or on (see the README for what it costs in exactness)").choices(["on", "off"]).env("TALLREC_FLASH_ATTN"))
    .option("-v, --verbose", "show llama.cpp's log on stderr")
    .option("-q, --quiet", "no progress or notes on stderr");
}

/** Adds --model and --lora (with TALLREC_MODEL / TALLREC_LORA defaults) to a command. */
export function addModelOptions(cmd: Command): Command {
  return cmd
    .option("-m, --model <path>", "LLaMA GGUF model (default: $TALLREC_MODEL)")
    .option("-l, --lora <[name=]path[:scale]>", "LoRA adapter GGUF, repeatable (default: $TALLREC_LORA, comma-separated)", (v: string, prev: string[] = []) => [...prev, v], [] as string[]);
}

/** Parses `[name=]path[:scale]`; the name defaults to the file name without extension. */
export function parseLoraSpec(spec: string): AdapterSpec {
  let rest = spec.trim();
  let name: string | undefined;
  const eq = rest.indexOf("=");
  if (eq > 0 && !rest.slice(0, eq).includes("/")) {
    name = rest.slice(0, eq);
    rest = rest.slice(eq + 1);
  }
  let scale: number | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > 0) {
    const s = rest.slice(colon + 1);
    if (s !== "" && Number.isFinite(Number(s))) {
      scale = Number(s);
      rest = rest.slice(0, colon);
    }
  }
  if (!rest) throw new CliError(`--lora ${JSON.stringify(spec)}: no file path`, EXIT.USAGE);
  return { name: name ?? basename(rest, extname(rest)), path: rest, scale };
}

export function loraSpecs(opts: ModelOptions): AdapterSpec[] {
  const specs = opts.lora.length > 0 ? opts.lora : (process.env.TALLREC_LORA ?? "").split(",").filter((s) => s.trim() !== "");
  return specs.map(parseLoraSpec);
}

export function modelPath(opts: ModelOptions): string {
  const m = opts.model ?? process.env.TALLREC_MODEL;
  if (!m) throw new CliError("no model: pass --model PATH.gguf or set TALLREC_MODEL", EXIT.USAGE);
  return m;
}

/** stderr notes (silenced by --quiet). */
export function makeLog(g: GlobalOptions): (msg: string) => void {
  return g.quiet ? () => {} : (msg: string) => process.stderr.write(`${msg}\n`);
}

/** Loads the engine for a command from its flags. */
export async function loadEngine(g: GlobalOptions, m: ModelOptions, extra: Partial<EngineOptions> = {}): Promise<Engine> {
  const log = makeLog(g);
  const engine = await Engine.load({
    model: modelPath(m),
    adapters: loraSpecs(m),
    gpu: g.gpu,
    threads: g.threads,
    adaptThreads: g.fixedThreads ? false : undefined,
    kvLayout: g.kvLayout,
    streams: g.streams,
    contextSize: g.ctx,
    batchSize: g.batch,
    sequences: g.sequences,
    kvType: g.kvType,
    flashAttention: g.flashAttn === undefined ? undefined : g.flashAttn === "on",
    verbose: g.verbose ? true : false,
    ...extra,
  });
  const info = engine.info;
  // --gpu cuda fails at load when CUDA is not usable; with auto, --verbose says why the CPU is used
  if (info.fallbackReason && g.verbose) log(`note: ${info.fallbackReason}`);
  return engine;
}

/** The options of a command merged with the program's global options. */
export function allOptions<T>(cmd: Command): T & GlobalOptions {
  return cmd.optsWithGlobals() as T & GlobalOptions;
}

/** Splits a list field ("a;b;c") on a separator, trimming items and dropping empty ones. */
export function splitList(value: string | undefined, sep: string): string[] {
  if (value === undefined || value === "") return [];
  return value
    .split(sep)
    .map((s) => s.trim())
    .filter((s) => s !== "");
}
