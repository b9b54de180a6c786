/** Decision entries for tests: every field at its quiet value unless given. */
import type { DecisionEntry } from "../../src/protocol/messages.js";

/**
 * A decision entry for key `k`, generation 1, with nothing admitted, no grant and no age: the
 * fields a test names replace those.
 */
export function decisionEntry(fields: Partial<DecisionEntry> = {}): DecisionEntry {
  return {
    key: "k",
    generation: 1,
    admitted: 0,
    rejected: 0,
    isNew: false,
    grantEpoch: 0,
    grantVersion: 0,
    allowance: 0,
    admittedSinceLast: 0,
    ageMs: 0,
    ...fields,
  };
}
