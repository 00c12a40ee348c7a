// `npm run test:unit`: the addon-free half of the suite (UNIT_TESTS), without building anything.
import { checkTestSets, testConfig, UNIT_TESTS } from "./vitest.config.js";

checkTestSets();
export default testConfig(UNIT_TESTS);
