/** A plugin helper: what fastify-plugin does, without the dependency. */
import type { FastifyPluginAsync } from "fastify";

/**
 * Marks a plugin as not encapsulated (Fastify's `skip-override`), so the hooks and decorators it
 * adds apply to the whole server rather than to its own context only; used for cross-cutting
 * plugins (auth, metrics, error handling).
 */
export function globalPlugin<O extends Record<string, unknown>>(plugin: FastifyPluginAsync<O>): FastifyPluginAsync<O> {
  (plugin as unknown as Record<symbol, boolean>)[Symbol.for("skip-override")] = true;
  return plugin;
}
