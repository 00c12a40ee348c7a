/**
 * `quantize`: llama.cpp's own quantizer (`llama_model_quantize`, through the native addon) with
 * tallrec's checks around it: the input must be a valid GGUF model (not an adapter), the type one
 * llama.cpp knows, and the output appears only when complete and readable.
 */
import { rename, rm } from "node:fs/promises";
import { resolve } from "node:path";

import { openGgufSync } from "../gguf/reader.js";
import { GgufError } from "../gguf/types.js";
import { loadBinding } from "../engine/native.js";
import { checkModelFile } from "../engine/validate.js";
import { ConvertError } from "./errors.js";

/** Options of {@link quantizeModel}. */
export interface QuantizeOptions {
  /** Threads for the quantizer (default: llama.cpp's choice, all cores). */
  threads?: number;
}

/** What {@link quantizeModel} wrote. */
export interface QuantizeResult {
  path: string;
  type: string;
  inputBytes: number;
  outputBytes: number;
}

/** The type names llama.cpp's quantizer accepts here (e.g. "Q8_0", "Q4_K_M", "F16"). */
export function quantizationTypes(): string[] {
  return loadBinding("cpu").binding.quantizeTypes();
}

/**
 * Quantizes a GGUF model with llama.cpp's quantizer. The type is case-insensitive ("q4_k_m"
 * works). Tensors whose rows do not fit the type's block size get llama.cpp's fallback type.
 *
 * @throws {ConvertError} for an invalid input, an unknown type, input = output, or a failure
 *   inside llama.cpp (no output is left behind).
 */
export async function quantizeModel(input: string, output: string, type: string, opts: QuantizeOptions = {}): Promise<QuantizeResult> {
  let inputBytes: number;
  try {
    inputBytes = checkModelFile(input).file.fileSize;
  } catch (e) {
    if (e instanceof GgufError) throw new ConvertError(input, e.message.replace(`${input}: `, ""), "invalid_file", { cause: e });
    throw e;
  }
  const { binding } = loadBinding("cpu");
  const known = binding.quantizeTypes();
  const t = known.find((k) => k.toLowerCase() === type.toLowerCase());
  if (!t) throw new ConvertError(input, `unknown quantization type ${JSON.stringify(type)} (known: ${known.join(", ")})`);
  if (resolve(input) === resolve(output)) throw new ConvertError(output, "the output must differ from the input");
  if (opts.threads !== undefined && (!Number.isInteger(opts.threads) || opts.threads < 1)) throw new ConvertError(output, `threads must be a positive integer, got ${opts.threads}`);
  const tmp = `${output}.tmp-${process.pid}`;
  try {
    await binding.quantize(input, tmp, t, opts.threads ?? 0);
    const f = openGgufSync(tmp);
    await rename(tmp, output);
    return { path: output, type: t, inputBytes, outputBytes: f.fileSize };
  } catch (e) {
    await rm(tmp, { force: true });
    if (e instanceof ConvertError) throw e;
    throw new ConvertError(input, `quantization to ${t} failed: ${(e as Error).message}`, "invalid_file", { cause: e });
  }
}
