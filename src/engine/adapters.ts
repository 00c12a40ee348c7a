/**
 * The LoRA adapters loaded on an engine's model: by name, with their default scales, and the
 * resolution of a call's adapter selection into native handles and scales.
 */
import { TallrecError } from "../errors.js";
import type { NativeLora } from "./native.js";
import type { ResolvedAdapters } from "./score-call.js";
import { checkLoraScale, type AdapterSummary } from "./validate.js";

/** Which adapters a call uses: a name, names, explicit scales, or null for the base model alone. */
export type AdapterSelection = string | null | ReadonlyArray<string | { name: string; scale?: number }>;

export interface LoadedAdapter {
  id: number;
  name: string;
  path: string;
  scale: number;
  native: NativeLora;
  summary: AdapterSummary;
}

let adapterIds = 0;

export class AdapterSet {
  private readonly byName = new Map<string, LoadedAdapter>();

  constructor(
    /** Adapter used when a call names none (null: the base model, unless several are loaded). */
    public defaultName: string | null,
  ) {}

  add(spec: { name: string; path: string; scale?: number }, native: NativeLora, summary: AdapterSummary): void {
    this.byName.set(spec.name, { id: ++adapterIds, name: spec.name, path: spec.path, scale: spec.scale ?? 1, native, summary });
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** Removes an adapter from the set (its native handle is the caller's to dispose). */
  remove(name: string): LoadedAdapter {
    const a = this.byName.get(name);
    if (!a) throw new TallrecError("unknown_adapter", `no adapter named ${JSON.stringify(name)}`);
    this.byName.delete(name);
    if (this.defaultName === name) this.defaultName = null;
    return a;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  list(): LoadedAdapter[] {
    return [...this.byName.values()];
  }

  /** True when every adapter of `resolved` is still the one loaded under its name. */
  stillLoaded(resolved: ResolvedAdapters): string | null {
    for (const [i, name] of resolved.names.entries()) if (this.byName.get(name)?.native !== resolved.natives[i]) return name;
    return null;
  }

  /** A call's selection resolved to native handles and scales (`unknown_adapter`, `adapter_required`, `invalid_input`). */
  resolve(selection: AdapterSelection | undefined): ResolvedAdapters {
    const pick = (name: string, scale?: number) => {
      const a = this.byName.get(name);
      if (!a)
        throw new TallrecError(
          "unknown_adapter",
          `unknown adapter ${JSON.stringify(name)} (loaded: ${
            this.names()
              .map((n) => JSON.stringify(n))
              .join(", ") || "none"
          })`,
        );
      if (scale !== undefined) checkLoraScale(scale, `adapter scale for ${name}`);
      return { a, scale: scale ?? a.scale };
    };
    let chosen: Array<{ a: LoadedAdapter; scale: number }>;
    if (selection === undefined) {
      if (this.defaultName === null && this.byName.size > 1) {
        throw new TallrecError("adapter_required", `several adapters are loaded (${this.names().join(", ")}): choose one with { adapter }, or null for the base model`);
      }
      chosen = this.defaultName === null ? [] : [pick(this.defaultName)];
    } else if (selection === null) chosen = [];
    else if (typeof selection === "string") chosen = [pick(selection)];
    else if (Array.isArray(selection)) chosen = selection.map((s) => (typeof s === "string" ? pick(s) : pick(s?.name, s?.scale)));
    else throw new TallrecError("invalid_input", "adapter must be a name, an array of names or { name, scale }, or null");
    return {
      names: chosen.map((c) => c.a.name),
      natives: chosen.map((c) => c.a.native),
      scales: chosen.map((c) => c.scale),
      key: chosen.map((c) => `${c.a.id}:${c.scale}`).join(","),
    };
  }
}
