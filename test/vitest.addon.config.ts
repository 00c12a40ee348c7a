// `npm run test:addon`: the half of the suite that needs the native addon, node-llama-cpp or dist/ (ADDON_TESTS).
import { ADDON_TESTS, checkTestSets, testConfig } from "./vitest.config.js";

checkTestSets();
export default testConfig(ADDON_TESTS);
