/**
 * Key administration on global rules between nodes: what `Limiter.reset`, `penalty`, `reward`
 * and `block` do on this node goes out as a KeyCommand to the aggregators (which change the
 * key's global window, or stop granting it for a block) and to every other node (which applies
 * it to its own state: a block refuses there at once, a reset forgets the key's recent
 * admissions); what other nodes send comes in and is applied here the same way.
 *
 * A command is applied once per node: the sender applies its own before sending and skips it
 * when the server delivers it back. Commands are not signed (nodes hold no group key): the
 * commands subjects are for trusted service users only (docs/operations.md, "Trust model").
 */
import { wallClockMs } from "../clock/clock.js";
import type { KeyCommand } from "../limiter/key-command.js";
import type { Limiter } from "../limiter/limiter.js";
import { decode } from "../protocol/decode.js";
import { encodeKeyCommand } from "../protocol/key-command.js";
import type { Subjects } from "../protocol/subjects.js";
import type { Subscription, Transport } from "../transport/transport.js";
import { type AgentCounters, countInvalidMessage } from "./node-agent-stats.js";

export interface KeyCommandLinkOptions {
  readonly limiter: Limiter;
  readonly transport: Transport;
  readonly subjects: Subjects;
  readonly nodeId: string;
  readonly nodeEpoch: number;
  readonly counters: AgentCounters;
}

export class KeyCommandLink {
  readonly #o: KeyCommandLinkOptions;
  readonly #sub: Subscription;
  #seq = 0;

  constructor(options: KeyCommandLinkOptions) {
    this.#o = options;
    this.#sub = options.transport.subscribe(options.subjects.allCommands, (bytes) =>
      this.#onCommand(bytes),
    );
    options.limiter.global.onAdministered((command) => this.#send(command));
  }

  async #send(command: KeyCommand): Promise<void> {
    const o = this.#o;
    this.#seq = (this.#seq + 1) >>> 0;
    const frame = encodeKeyCommand({
      nodeId: o.nodeId,
      nodeEpoch: o.nodeEpoch,
      seq: this.#seq,
      sentAtWallMs: wallClockMs(),
      ...command,
    });
    o.transport.publish(o.subjects.commands(o.nodeId), frame);
    o.counters.commandsSent++;
    // Resolves once the server has it: the caller's administration has then left this node.
    await o.transport.flush();
  }

  #onCommand(bytes: Uint8Array): void {
    const o = this.#o;
    const r = decode(bytes);
    if (!r.ok) {
      countInvalidMessage(o.counters, r.reason);
      return;
    }
    const m = r.message;
    if (m.type !== "key-command") {
      countInvalidMessage(o.counters, "wrong-type");
      return;
    }
    if (m.nodeId === o.nodeId && m.nodeEpoch === o.nodeEpoch) return; // our own, applied
    if (o.limiter.global.applyKeyCommand(m)) o.counters.commandsApplied++;
    else o.counters.commandsIgnored++;
  }

  close(): void {
    this.#o.limiter.global.onAdministered(undefined);
    this.#sub.unsubscribe();
  }
}
