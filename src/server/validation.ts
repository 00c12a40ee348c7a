/**
 * Per-item validation (see schemas.ts): when a request fails its route's body schema, the route
 * checks the envelope and each item separately, so a bad item fails alone.
 */
import type { FastifyReply, FastifyRequest } from "fastify";

import type { PromptInput, StructuredPrompt } from "../engine/prompt.js";
import { formatSchemaErrors, HttpError, type SchemaError } from "./errors.js";
import type { Schema } from "./schemas.js";

/** An item as a client sends it (after validation). */
export type RequestItem =
  | { id?: string | number; instruction: string; input: string }
  | {
      id?: string | number;
      domain: "movie" | "book";
      liked: Array<string | { title: string; author: string }>;
      disliked: Array<string | { title: string; author: string }>;
      target: string | { title: string; author: string };
      instruction?: string;
    };

type ValidateFn = ((data: unknown) => unknown) & { errors?: SchemaError[] | null };

function compile(request: FastifyRequest, schema: Schema): ValidateFn {
  return request.compileValidationSchema(schema, "body") as unknown as ValidateFn;
}

/**
 * The per-item errors of a request whose list of items is `body[listField]` (undefined for a valid
 * item). Throws a 400 (413 for too many items) when the envelope itself is invalid.
 */
export function itemErrors(request: FastifyRequest, envelope: Schema, listField: string, schemaFor: (item: unknown) => Schema): Array<string | undefined> {
  const body = request.body as Record<string, unknown> | null | undefined;
  if (!request.validationError) return new Array(((body?.[listField] as unknown[]) ?? []).length).fill(undefined);
  const checkEnvelope = compile(request, envelope);
  if (!checkEnvelope(body)) {
    const errors = checkEnvelope.errors ?? [];
    const first = errors[0];
    const tooMany = first?.keyword === "maxItems" && first.instancePath === `/${listField}`;
    throw new HttpError(tooMany ? "too_many_items" : "invalid_input", formatSchemaErrors(errors, "body"));
  }
  const list = body![listField] as unknown[];
  return list.map((item, i) => {
    const check = compile(request, schemaFor(item));
    if (check(item)) return undefined;
    const errors = (check.errors ?? []).map((e) => ({ ...e, instancePath: `/${listField}/${i}${e.instancePath}` }));
    return formatSchemaErrors(errors, "body");
  });
}

/** The id echoed for item `i`: its own id when it has a valid one, else its index. */
export function itemId(item: unknown, i: number): string | number {
  const id = item && typeof item === "object" ? (item as { id?: unknown }).id : undefined;
  return typeof id === "string" || (typeof id === "number" && Number.isInteger(id)) ? id : i;
}

/** The engine's prompt for a validated item (the id removed). */
export function toPrompt(item: RequestItem): PromptInput {
  if ("target" in item) {
    const p: StructuredPrompt = { domain: item.domain, liked: item.liked, disliked: item.disliked, target: item.target };
    if (item.instruction !== undefined) p.instruction = item.instruction;
    return p;
  }
  return { instruction: item.instruction, input: item.input };
}

/** An engine per-item error message, with the merged batch's "item k: " prefix removed. */
export function engineItemError(message: string): string {
  return message.replace(/^item \d+: /, "");
}

/**
 * An AbortSignal that aborts when the client goes away before its response was sent (the
 * connection closed), so that its queued work is dropped.
 */
export function clientGoneSignal(request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableEnded) ac.abort(new Error("client disconnected"));
  };
  if (request.raw.destroyed || res.destroyed) onClose();
  else res.once("close", onClose);
  return ac.signal;
}
