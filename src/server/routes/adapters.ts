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
  if (isAbsolute(requested)) throw new HttpError(400, `${field} must be relative to the models folder, not an absolute path`, "TALLREC_BAD_PATH");
  if (requested.includes("\0")) throw new HttpError(400, `${field} must not contain NUL characters`, "TALLREC_BAD_PATH");
  const root = await realpath(modelsDir);
  const full = resolve(root, requested);
  if (!inside(root, full)) throw new HttpError(400, `${field} must stay inside the models folder`, "TALLREC_BAD_PATH");
  let real: string;
  try {
    real = await realpath(full);
  } catch {
    throw new HttpError(404, `${field}: no file ${JSON.stringify(requested)} in the models folder`, "TALLREC_NO_FILE");
  }
  if (!inside(root, real)) throw new HttpError(400, `${field} leads outside the models folder (symbolic link)`, "TALLREC_BAD_PATH");
  if (!(await stat(real)).isFile()) throw new HttpError(400, `${field}: ${JSON.stringify(requested)} is not a file`, "TALLREC_BAD_PATH");
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
    if (modelsDir === null) throw new HttpError(403, "runtime adapter loading is disabled (the server has no models folder)", "TALLREC_ADAPTERS_DISABLED");
    return modelsDir;
  };

  app.get(
    "/v1/adapters",
    { schema: { summary: "List the loaded adapters", tags: ["adapters"], response: ADAPTERS_LIST_RESPONSE } },
    async () => {
      const engine = state.requireEngine();
      realModelsDir ??= modelsDir === null ? null : await realpath(modelsDir).catch(() => modelsDir);
      return { adapters: describe(engine, realModelsDir), default: state.currentDefault(engine) ?? null, runtimeLoading: modelsDir !== null };
    },
  );

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
      await state.batcher.exclusive(async () => {
        if (engine.adapterNames().includes(name)) throw new HttpError(409, `body/name: an adapter named ${JSON.stringify(name)} is already loaded`, "TALLREC_ADAPTER_EXISTS");
        try {
          await engine.loadAdapter({ name, path: real, scale });
        } catch (err) {
          // the file is the only input: whatever fails to load it is the file's problem
          const message = err instanceof GgufError ? err.message : `cannot load ${real}: ${(err as Error).message}`;
          throw new HttpError(422, `body/path: ${message.split(real).join(path)}`, "TALLREC_BAD_ADAPTER");
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
      await state.batcher.exclusive(async () => {
        if (!engine.adapterNames().includes(name)) throw new HttpError(404, `params/name: no adapter named ${JSON.stringify(name)} is loaded`, "TALLREC_UNKNOWN_ADAPTER");
        await engine.unloadAdapter(name);
      });
      request.log.info({ adapter: name }, "adapter unloaded");
      return { unloaded: name };
    },
  );
};
