/**
 * `tallrec convert-lora`, `convert-model`, `merge` and `quantize`: from a TALLRec checkpoint
 * (PEFT adapter + Hugging Face LLaMA) to GGUF files llama.cpp serves, without Python.
 * Results go to stdout (one line, or JSON with --json), notes to stderr.
 */
import { Command, Option } from "commander";

import { ConvertError } from "../../convert/errors.js";
import { codeOf } from "../../errors.js";
import { convertPeftLora } from "../../convert/lora.js";
import { mergeLora, type MergeOutType } from "../../convert/merge.js";
import { convertHfModel, type ModelOutType } from "../../convert/model.js";
import { quantizeModel } from "../../convert/quantize.js";
import { GgufError } from "../../gguf/types.js";
import { sameFileAs } from "../../io/same-file.js";
import { allOptions, CliError, EXIT, makeLog, parseLoraSpec } from "../common.js";

/** Refuses an output that is one of the inputs (same file by identity: links and other spellings too). */
function refuseOverwrite(output: string, inputs: readonly string[]): void {
  const hit = sameFileAs(output, inputs);
  if (hit !== undefined) throw new CliError(`the output ${output} is the input file ${hit}: writing it would destroy the input`, EXIT.USAGE);
}

/** Runs a conversion, turning file problems into one-line CLI errors. */
async function run<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ConvertError || e instanceof GgufError) throw new CliError(e.message, EXIT.FAILURE, codeOf(e) === "internal" ? "invalid_file" : codeOf(e));
    throw e;
  }
}

function print(json: boolean | undefined, value: Record<string, unknown>, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${text}\n`);
}

interface ConvertLoraCliOptions {
  model?: string;
  output: string;
  outtype: "f32" | "f16";
  name?: string;
  json?: boolean;
}

/** `tallrec convert-lora ADAPTER_DIR --model BASE.gguf -o adapter.gguf [--outtype f32|f16]`. */
export function convertLoraCommand(): Command {
  return new Command("convert-lora")
    .description("convert a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors/.bin) to a GGUF adapter for a base model")
    .argument("<adapter-dir>", "PEFT adapter directory (what TALLRec's training saves)")
    .option("-m, --model <base.gguf>", "the base GGUF model the adapter was trained on (default: $TALLREC_MODEL)")
    .requiredOption("-o, --output <path>", "GGUF adapter to write")
    .addOption(new Option("--outtype <type>", "type of the LoRA tensors").choices(["f32", "f16"]).default("f32"))
    .option("--name <name>", "general.name of the adapter (default: the directory name)")
    .option("--json", "print a JSON summary")
    .addHelpText(
      "after",
      `
The scale is kept: llama.cpp applies the adapter at --lora scale 1 exactly as PEFT does
(lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora).

Example:
  tallrec convert-lora ./lora-weights/movie -m models/llama-7b-f16.gguf -o models/movie.gguf`,
    )
    .action(async (dir: string, _o, command: Command) => {
      const o = allOptions<ConvertLoraCliOptions>(command);
      const base = o.model ?? process.env.TALLREC_MODEL;
      if (!base) throw new CliError("no base model: pass --model BASE.gguf or set TALLREC_MODEL", EXIT.USAGE);
      refuseOverwrite(o.output, [dir, base]);
      const log = makeLog(o);
      const r = await run(() => convertPeftLora(dir, o.output, { base, outtype: o.outtype, name: o.name, log }));
      print(o.json, { ...r }, `${r.path}: ${r.tensors} tensors, ${r.targets.join("/")} in ${r.layers.length} blocks, r=${r.ranks.join("/")}, alpha ${r.alpha} (scale ${r.scale}) from ${r.source}`);
    });
}

interface ConvertModelCliOptions {
  output: string;
  outtype: ModelOutType;
  name?: string;
  json?: boolean;
}

/** `tallrec convert-model HF_DIR -o model.gguf [--outtype f32|f16|bf16]`. */
export function convertModelCommand(): Command {
  return new Command("convert-model")
    .description("convert a Hugging Face LlamaForCausalLM checkpoint (safetensors or .bin, sharded or not) to a GGUF model")
    .argument("<hf-dir>", "checkpoint directory: config.json, weights, tokenizer.model or tokenizer.json")
    .requiredOption("-o, --output <path>", "GGUF model to write")
    .addOption(new Option("--outtype <type>", "type of the 2-D weights (auto: the checkpoint's)").choices(["f32", "f16", "bf16", "auto"]).default("auto"))
    .option("--name <name>", "general.name (default: from config.json or the directory name)")
    .option("--json", "print a JSON summary")
    .addHelpText(
      "after",
      `
Example:
  tallrec convert-model ./llama-7b-hf -o models/llama-7b-f16.gguf --outtype f16`,
    )
    .action(async (dir: string, _o, command: Command) => {
      const o = allOptions<ConvertModelCliOptions>(command);
      refuseOverwrite(o.output, [dir]);
      const log = makeLog(o);
      const r = await run(() => convertHfModel(dir, o.output, { outtype: o.outtype, name: o.name, log }));
      print(o.json, { ...r }, `${r.path}: ${r.tensors} tensors, ${(r.parameters / 1e6).toFixed(1)}M parameters, ${r.outtype.toUpperCase()}, vocabulary from ${r.tokenizer}`);
    });
}

interface MergeCliOptions {
  model?: string;
  lora: string[];
  output: string;
  outtype: MergeOutType;
  json?: boolean;
}

/** `tallrec merge --model BASE.gguf --lora A.gguf[:scale] -o merged.gguf`. */
export function mergeCommand(): Command {
  return new Command("merge")
    .description("bake LoRA adapters into a model's weights (F32/F16/BF16/Q8_0 bases)")
    .option("-m, --model <base.gguf>", "base model (default: $TALLREC_MODEL)")
    .option("-l, --lora <path[:scale]>", "GGUF adapter with an optional scale (default 1), repeatable", (v: string, prev: string[] = []) => [...prev, v], [] as string[])
    .requiredOption("-o, --output <path>", "merged GGUF model to write")
    .addOption(new Option("--outtype <type>", "type of the merged tensors: keep (the base's), f32 (exact), f16").choices(["keep", "f32", "f16"]).default("keep"))
    .option("--json", "print a JSON summary")
    .addHelpText(
      "after",
      `
A merged model scores as the base model with the adapter applied (same scale rule as llama.cpp).
Merging into F16 weights rounds them to F16 (use --outtype f32 for an exact merge).
For K-quant bases merge into the F16 model, then quantize the result.

Example:
  tallrec merge -m models/llama-7b-f16.gguf -l models/movie.gguf -o models/llama-7b-movie-f16.gguf`,
    )
    .action(async (_o, command: Command) => {
      const o = allOptions<MergeCliOptions>(command);
      const base = o.model ?? process.env.TALLREC_MODEL;
      if (!base) throw new CliError("no base model: pass --model BASE.gguf or set TALLREC_MODEL", EXIT.USAGE);
      if (o.lora.length === 0) throw new CliError("nothing to merge: pass --lora ADAPTER.gguf[:scale]", EXIT.USAGE);
      const adapters = o.lora.map((s) => {
        const spec = parseLoraSpec(s);
        return { path: spec.path, scale: spec.scale };
      });
      refuseOverwrite(o.output, [base, ...adapters.map((a) => a.path)]);
      const log = makeLog(o);
      const r = await run(() => mergeLora(base, adapters, o.output, { outtype: o.outtype, log }));
      print(
        o.json,
        { ...r },
        `${r.path}: merged ${adapters.length} adapter(s) into ${r.merged.length} tensors (${Object.entries(r.types)
          .map(([k, v]) => `${v} ${k}`)
          .join(", ")})`,
      );
    });
}

interface QuantizeCliOptions {
  threads?: number;
  json?: boolean;
}

/** `tallrec quantize IN.gguf OUT.gguf TYPE`. */
export function quantizeCommand(): Command {
  return new Command("quantize")
    .description("quantize a GGUF model with llama.cpp's quantizer (Q8_0, Q4_K_M, ...)")
    .argument("<input>", "GGUF model (F32, F16 or BF16 for best results)")
    .argument("<output>", "GGUF model to write")
    .argument("<type>", "F16, BF16, Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q4_K_M, Q4_K_S, Q5_0, Q5_1, Q4_0, Q4_1, Q3_K_L, Q3_K_M, Q3_K_S, Q2_K")
    .option("--json", "print a JSON summary")
    .action(async (input: string, output: string, type: string, _o, command: Command) => {
      const o = allOptions<QuantizeCliOptions>(command);
      refuseOverwrite(output, [input]);
      const r = await run(() => quantizeModel(input, output, type, { threads: o.threads }));
      print(o.json, { ...r }, `${r.path}: ${r.type}, ${(r.outputBytes / 1e6).toFixed(1)} MB (from ${(r.inputBytes / 1e6).toFixed(1)} MB)`);
    });
}
