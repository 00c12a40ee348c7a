/** `tallrec inspect`: what a GGUF model or adapter is, and whether an adapter fits a model. */
import { Command } from "commander";

import { getMetadataNumber, getMetadataString, openGgufSync, type GgufFile } from "../../gguf/index.js";
import { loadBinding } from "../../engine/native.js";
import { printable } from "../../printable.js";
import { RESPONSE_MARKER } from "../../engine/prompt.js";
import { checkAdapterContent, checkAdapterFile, checkModelFile } from "../../engine/validate.js";
import { allOptions, CliError, EXIT } from "../common.js";
import { codeOf } from "../../errors.js";

interface InspectOptions {
  model?: string;
  json?: boolean;
}

function typeHistogram(f: GgufFile): Record<string, number> {
  const h: Record<string, number> = {};
  for (const t of f.tensors) h[t.typeName] = (h[t.typeName] ?? 0) + t.nElements;
  return h;
}

/** The quantization a model "is": the type holding most of its weights. */
function dominantType(h: Record<string, number>): string {
  return Object.entries(h).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "none";
}

async function answerTokens(path: string): Promise<{ yes: number; no: number; yesPiece: string; noPiece: string }> {
  const { binding } = loadBinding("cpu");
  const model = await binding.Model.load(path, { vocabOnly: true });
  try {
    const probe = `Q?\n\n${RESPONSE_MARKER}`;
    const base = model.tokenize(probe, true, false);
    const first = (answer: string) => model.tokenize(probe + answer, true, false)[base.length];
    const yes = first("Yes");
    const no = first("No");
    return { yes, no, yesPiece: model.tokenPiece(yes).toString("utf8"), noPiece: model.tokenPiece(no).toString("utf8") };
  } finally {
    model.dispose();
  }
}

export function inspectCommand(): Command {
  return new Command("inspect")
    .description("describe a GGUF model or LoRA adapter (with --model: check that the adapter fits it)")
    .argument("<file>", "GGUF file")
    .option("-m, --model <path>", "base model to check an adapter against")
    .option("--json", "print JSON")
    .action(async (file: string, _o, command: Command) => {
      const o = allOptions<InspectOptions>(command);
      let f: GgufFile;
      try {
        f = openGgufSync(file);
      } catch (err) {
        throw new CliError((err as Error).message, EXIT.FAILURE, codeOf(err) === "internal" ? "invalid_file" : codeOf(err));
      }
      const kind = getMetadataString(f, "general.type", "model");
      const arch = getMetadataString(f, "general.architecture", "unknown");
      const types = typeHistogram(f);
      const bytes = f.tensors.reduce((s, t) => s + t.byteSize, 0);
      const params = f.tensors.reduce((s, t) => s + t.nElements, 0);
      let out: Record<string, unknown>;
      if (kind === "adapter") {
        const alpha = f.metadata.get("adapter.lora.alpha");
        const ranks = [...new Set(f.tensors.filter((t) => t.name.endsWith(".lora_a")).map((t) => t.dims[1]))];
        const targets = [...new Set(f.tensors.filter((t) => t.name.endsWith(".lora_a")).map((t) => t.name.replace(/^blk\.\d+\./, "").replace(/\.weight\.lora_a$/, "")))];
        out = {
          file,
          kind: "lora adapter",
          architecture: arch,
          adapterType: getMetadataString(f, "adapter.type", "unknown"),
          rank: ranks.length === 1 ? ranks[0] : ranks,
          alpha: alpha && typeof alpha.value === "number" ? alpha.value : null,
          targets,
          tensors: f.tensors.length,
          parameters: params,
          bytes,
          types,
        };
        // the adapter on its own: what llama.cpp would choke on (metadata types, tensor types, alpha, non-finite weights)
        try {
          checkAdapterContent(file);
          out.valid = { ok: true };
        } catch (err) {
          out.valid = { ok: false, reason: (err as Error).message };
        }
        if (o.model) {
          try {
            checkAdapterFile(file, checkModelFile(o.model));
            out.fits = { model: o.model, ok: true };
          } catch (err) {
            out.fits = { model: o.model, ok: false, reason: (err as Error).message };
          }
        }
      } else {
        const n = (k: string) => getMetadataNumber(f, `${arch}.${k}`, NaN);
        const tokens = f.metadata.get("tokenizer.ggml.tokens");
        out = {
          file,
          kind: "model",
          name: getMetadataString(f, "general.name", ""),
          architecture: arch,
          parameters: params,
          bytes,
          quantization: dominantType(types),
          types,
          contextLength: n("context_length"),
          embedding: n("embedding_length"),
          layers: n("block_count"),
          heads: n("attention.head_count"),
          kvHeads: n("attention.head_count_kv"),
          feedForward: n("feed_forward_length"),
          vocabulary: { model: getMetadataString(f, "tokenizer.ggml.model", "none"), size: tokens && Array.isArray(tokens.value) ? tokens.value.length : 0 },
        };
        if (tokens) {
          // llama.cpp loads the vocabulary only after tallrec's checks pass (some bad files abort it)
          try {
            checkModelFile(file);
            out.valid = { ok: true };
          } catch (err) {
            out.valid = { ok: false, reason: (err as Error).message };
          }
          if ((out.valid as { ok: boolean }).ok) out.answerTokens = await answerTokens(file);
        }
      }
      if (o.json) {
        process.stdout.write(JSON.stringify(out, null, 2) + "\n");
      } else {
        for (const [k, v] of Object.entries(out))
          process.stdout.write(`${k.padEnd(14)} ${typeof v === "object" && v !== null ? printable(JSON.stringify(v), Number.MAX_SAFE_INTEGER) : printable(String(v), Number.MAX_SAFE_INTEGER)}\n`);
      }
      if (out.fits && !(out.fits as { ok: boolean }).ok) process.exitCode = EXIT.FAILURE;
      if (out.valid && !(out.valid as { ok: boolean }).ok) process.exitCode = EXIT.FAILURE;
    });
}
