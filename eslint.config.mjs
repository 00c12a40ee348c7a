// ESLint (flat config) for src/, test/ and bench/: @eslint/js and typescript-eslint recommended
// (syntax only, no type information), Node globals. Formatting is Prettier's (.prettierrc.json);
// `npm run lint` checks, `npm run format` fixes what can be fixed.
import js from "@eslint/js";
import { defineConfig, globalIgnores } from "eslint/config";
import globals from "globals";
import tseslint from "typescript-eslint";

export default defineConfig([
  globalIgnores(["dist/", "build/", "node_modules/", "models/", "bench/.cache/", "bench/results/", "native/.cache/"]),
  {
    files: ["src/**/*.{ts,mjs}", "test/**/*.{ts,mjs}", "bench/**/*.{ts,mjs}"],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: { globals: globals.node },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      // `_name` marks a deliberately unused parameter (an interface's signature) or a field dropped by `{ x: _x, ...rest }`
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrorsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_", ignoreRestSiblings: true }],
      // `catch {}` is the deliberate best-effort idiom (polling /proc, probing a server that is still starting)
      "no-empty": ["error", { allowEmptyCatch: true }],
      // the hostile-input code and its tests match control characters on purpose
      "no-control-regex": "off",
      // `let [a, b] = ...` where only one is reassigned, and `let x;` read by a closure before its one assignment, are deliberate
      "prefer-const": ["error", { destructuring: "all", ignoreReadBeforeAssign: true }],
    },
  },
]);
