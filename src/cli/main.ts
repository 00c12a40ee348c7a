#!/usr/bin/env node
/** The `tallrec` command line. Data goes to stdout, progress and notes to stderr. */
import { readFileSync } from "node:fs";

import { Command, CommanderError } from "commander";

import { addGlobalOptions, CliError, EXIT } from "./common.js";
import { exitCodeOf, TallrecError } from "../errors.js";
import { batchCommand } from "./commands/batch.js";
import { chatCommand } from "./commands/chat.js";
import { convertLoraCommand, convertModelCommand, mergeCommand, quantizeCommand } from "./commands/convert.js";
import { demoCommand } from "./commands/demo.js";
import { evalCommand } from "./commands/eval.js";
import { inspectCommand } from "./commands/inspect.js";
import { recsysEvalCommand } from "./commands/recsys-eval.js";
import { scoreCommand } from "./commands/score.js";
import { serveCommand } from "./commands/serve.js";
import { workerCommand } from "./commands/worker.js";
import { printableText } from "../printable.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

export function buildProgram(): Command {
  const program = new Command("tallrec").description("TALLRec inference: LLaMA + LoRA yes/no scoring of user-item pairs over llama.cpp").version(pkg.version).showHelpAfterError().exitOverride();
  addGlobalOptions(program);
  for (const cmd of [
    scoreCommand(),
    batchCommand(),
    evalCommand(),
    inspectCommand(),
    serveCommand(),
    workerCommand(),
    chatCommand(),
    recsysEvalCommand(),
    convertModelCommand(),
    convertLoraCommand(),
    mergeCommand(),
    quantizeCommand(),
    demoCommand(),
  ])
    program.addCommand(cmd.exitOverride());
  return program;
}

async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return process.exitCode === undefined ? EXIT.OK : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; usage errors were already printed by commander
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    if (err instanceof CliError) {
      process.stderr.write(`tallrec: ${printableText(err.message)}\n`);
      return err.exitCode;
    }
    if (err instanceof TallrecError) {
      // the library's errors: one line, and the exit status of their code (src/errors.ts)
      process.stderr.write(`tallrec: ${printableText(err.message)}\n`);
      if (process.env.TALLREC_DEBUG) process.stderr.write(`${err.stack}\n`);
      return exitCodeOf(err);
    }
    // messages can quote names from files: never let their control characters reach the terminal
    process.stderr.write(`tallrec: ${printableText((err as Error).message ?? String(err))}\n`);
    if (process.env.TALLREC_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return EXIT.FAILURE;
  }
}

process.exitCode = await main(process.argv);
