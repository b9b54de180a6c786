/**
 * Key administration (`Limiter.reset`, `penalty`, `reward`, `block`) as one value: what a
 * limiter applies to its own tables, and what a node agent carries to the aggregator and the
 * other nodes for a global rule.
 */
import type { KeyTable } from "./key-table.js";

export type KeyCommandOp = "reset" | "penalty" | "reward" | "block";

export interface KeyCommand {
  readonly rule: string;
  readonly key: string;
  readonly op: KeyCommandOp;
  /** `penalty` and `reward`: cost charged or refunded (> 0); 0 for the others. */
  readonly cost: number;
  /** `block`: how long, ms (> 0); 0 for the others. */
  readonly durationMs: number;
}

/** Applies `command` to `table`'s own state at `nowMs`. */
export function applyKeyCommand(table: KeyTable, command: KeyCommand, nowMs: number): void {
  switch (command.op) {
    case "reset":
      table.reset(command.key, nowMs);
      return;
    case "penalty":
      table.adjust(command.key, nowMs, command.cost);
      return;
    case "reward":
      table.adjust(command.key, nowMs, -command.cost);
      return;
    case "block":
      table.blocks.block(command.key, nowMs + command.durationMs);
      return;
  }
}
