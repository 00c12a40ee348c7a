/**
 * Adapters: `GET /v1/adapters`, and loading (`POST /v1/adapters`) and unloading
 * (`DELETE /v1/adapters/:name`) at run time, restricted to files inside the server's models folder.
 */
import { realpath, stat } from "node:fs/promises";
import { isAbsolute, relative, resolve, sep } from "node:path";

import type { FastifyPluginAsync } from "fastify";

import { GgufError } from "../../gguf/types.js";
import { HttpError } from "../errors.js";
import { ADAPTER_LOAD_BODY, ADAPTER_LOAD_RESPONSE, ADAPTER_NAME_SCHEMA, ADAPTER_UNLOAD_RESPONSE, ADAPTERS_LIST_RESPONSE } from "../schemas.js";
import type { ServerEngine, ServerState } from "../state.js";

function inside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel !== "" && !rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel);
}

/**
 * The real path of `requested` (relative to `modelsDir`), refusing absolute paths, `..` that
 * leaves the folder, symbolic links that lead out of it, and anything but a regular file.
 */
export async function resolveInside(modelsDir: string, requested: string, field = "body/path"): Promise<string> {
  if (isAbsolute(requested)) throw new HttpError("invalid_input", `${field} must be relative to the models folder, not an absolute path`);
  if (requested.includes("\0")) throw new HttpError("invalid_input", `${field} must not contain NUL characters`);
  const root = await realpath(modelsDir);
  const full = resolve(root, requested);
  if (!inside(root, full)) throw new HttpError("invalid_input", `${field} must stay inside the models folder`);
  let real: string;
  try {
    real = await realpath(full);
  } catch {
    throw new HttpError("not_found", `${field}: no file ${JSON.stringify(requested)} in the models folder`);
  }
  if (!inside(root, real)) throw new HttpError("invalid_input", `${field} leads outside the models folder (symbolic link)`);
  if (!(await stat(real)).isFile()) throw new HttpError("invalid_input", `${field}: ${JSON.stringify(requested)} is not a file`);
  return real;
}

function describe(engine: ServerEngine, modelsDir: string | null) {
  return engine.info.adapters.map((a) => {
    let path = a.path;
    if (modelsDir !== null) {
      const rel = relative(modelsDir, resolve(a.path));
      if (!rel.startsWith("..") && !isAbsolute(rel)) path = rel;
    }
    return { ...a, path };
  });
}

/** Registers `GET /v1/adapters`, `POST /v1/adapters` and `DELETE /v1/adapters/:name` (the last two need the state's models folder; else 403). */
export const adapterRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  const modelsDir = state.modelsDir === null ? null : resolve(state.modelsDir);
  let realModelsDir: string | null = null;
  const requireLoading = (): string => {
    if (modelsDir === null) throw new HttpError("forbidden", "runtime adapter loading is disabled (the server has no models folder)");
    return modelsDir;
  };

  app.get("/v1/adapters", { schema: { summary: "List the loaded adapters", tags: ["adapters"], response: ADAPTERS_LIST_RESPONSE } }, async () => {
    const engine = state.requireEngine();
    realModelsDir ??= modelsDir === null ? null : await realpath(modelsDir).catch(() => modelsDir);
    return { adapters: describe(engine, realModelsDir), default: state.currentDefault(engine) ?? null, runtimeLoading: modelsDir !== null };
  });

  app.post(
    "/v1/adapters",
    {
      schema: {
        summary: "Load an adapter",
        description: "Loads a GGUF LoRA adapter from the server's models folder (path relative to it) under a name; scoring requests then select it by that name.",
        tags: ["adapters"],
        body: ADAPTER_LOAD_BODY,
        response: ADAPTER_LOAD_RESPONSE,
      },
    },
    async (request, reply) => {
      const dir = requireLoading();
      const engine = state.requireEngine();
      const { name, path, scale } = request.body as { name: string; path: string; scale?: number };
      const real = await resolveInside(dir, path);
      await engine.scheduler.exclusive(async () => {
        if (engine.adapterNames().includes(name)) throw new HttpError("adapter_exists", `body/name: an adapter named ${JSON.stringify(name)} is already loaded`);
        try {
          await engine.loadAdapter({ name, path: real, scale });
        } catch (err) {
          // the file is the only input: whatever fails to load it is the file's problem
          const message = err instanceof GgufError ? err.message : `cannot load ${real}: ${(err as Error).message}`;
          throw new HttpError("invalid_file", `body/path: ${message.split(real).join(path)}`);
        }
      });
      realModelsDir ??= await realpath(dir);
      const adapter = describe(engine, realModelsDir).find((a) => a.name === name);
      request.log.info({ adapter: name, path }, "adapter loaded");
      return reply.code(201).send({ adapter });
    },
  );

  app.delete(
    "/v1/adapters/:name",
    {
      schema: {
        summary: "Unload an adapter",
        description: "Unloads an adapter after the running batch; queued requests for it then fail with 404.",
        tags: ["adapters"],
        params: { type: "object", required: ["name"], properties: { name: ADAPTER_NAME_SCHEMA } },
        response: ADAPTER_UNLOAD_RESPONSE,
      },
    },
    async (request) => {
      requireLoading();
      const engine = state.requireEngine();
      const { name } = request.params as { name: string };
      if (!engine.adapterNames().includes(name)) throw new HttpError("unknown_adapter", `params/name: no adapter named ${JSON.stringify(name)} is loaded`);
      // new calls can no longer choose it; the running batch finishes before it is freed
      await engine.unloadAdapter(name);
      request.log.info({ adapter: name }, "adapter unloaded");
      return { unloaded: name };
    },
  );
};
