/** GGUF reading and writing (no dependencies). */
export * from "./types.js";
export * from "./float.js";
export * from "./reader.js";
export * from "./writer.js";
