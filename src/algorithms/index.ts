/** Registry of the built-in algorithms by rule name. */
import { gcra } from "./gcra.js";
import { slidingWindow } from "./sliding-window.js";
import { tokenBucket } from "./token-bucket.js";
import type { Algorithm, AlgorithmName } from "./types.js";

export const algorithms: Readonly<Record<AlgorithmName, Algorithm>> = {
  "token-bucket": tokenBucket,
  gcra,
  "sliding-window": slidingWindow,
};
