/**
 * Peer counting while the node follows no aggregator (at start, and while the aggregator is
 * lost): the node listens to the other nodes' heartbeats and answers a node run it has not seen
 * with one of its own, so nodes learn of each other within a round trip. The `static` loss
 * policy's share is then limit / the nodes it knows of, not the whole limit for a node that
 * believes it is alone. Once an aggregator is followed it counts the nodes, and this stops.
 *
 * A node run is its id and epoch: a newer epoch under a known id is a restart (a new run, and
 * answered), an older one a late word from a dead run (ignored). A leaving notice uncounts its
 * run; a run not heard for PEER_TTL_HEARTBEATS heartbeat intervals is forgotten.
 */
import type { Clock, TimerHandle } from "../clock/clock.js";
import { decode } from "../protocol/decode.js";
import { Role } from "../protocol/messages.js";
import type { Subjects } from "../protocol/subjects.js";
import type { Subscription, Transport } from "../transport/transport.js";

/** Least time between two heartbeats sent to answer node runs not seen before, ms. */
const ANSWER_GAP_MS = 20;
/** A peer heard of is counted for this many of its heartbeat intervals after its last one. */
const PEER_TTL_HEARTBEATS = 6;

export interface PeerDiscoveryOptions {
  readonly transport: Transport;
  readonly subjects: Subjects;
  readonly clock: Clock;
  /** This node's id: its own heartbeats are not counted. */
  readonly nodeId: string;
  /** The heartbeat interval of every node, ms: the unit of a peer's time to live. */
  readonly heartbeatIntervalMs: number;
  /** Sends one heartbeat of this node now, the answer to newcomers (it calls `heartbeatSent`). */
  readonly answer: () => void;
  /** The node runs known may have changed: `known` counts this one too. */
  readonly onChange: (known: number) => void;
}

export class PeerDiscovery {
  readonly #o: PeerDiscoveryOptions;
  /** Other node runs heard of: id -> [epoch, last heard]. */
  readonly #peers = new Map<string, [epoch: number, lastHeardMs: number]>();
  /** The heartbeat subscription, held while listening. */
  #sub: Subscription | undefined;
  #lastHeartbeatMs = Number.NEGATIVE_INFINITY;
  #answerTimer: TimerHandle | undefined;
  #closed = false;

  constructor(options: PeerDiscoveryOptions) {
    this.#o = options;
  }

  /** Starts listening to heartbeats, if not already (and not closed). */
  listen(): void {
    if (this.#sub !== undefined || this.#closed) return;
    const o = this.#o;
    this.#sub = o.transport.subscribe(o.subjects.heartbeats, (bytes) => this.#onHeartbeat(bytes));
  }

  /** Stops listening, forgets the peers and drops a pending answer (an aggregator counts now). */
  stop(): void {
    if (this.#sub === undefined) return;
    this.#sub.unsubscribe();
    this.#sub = undefined;
    this.#peers.clear();
    this.#answerTimer?.cancel();
    this.#answerTimer = undefined;
  }

  /** This node sent a heartbeat at `nowMs` (answers keep ANSWER_GAP_MS from it). */
  heartbeatSent(nowMs: number): void {
    this.#lastHeartbeatMs = nowMs;
  }

  /** Forgets the peers not heard for their time to live by `nowMs`. */
  expire(nowMs: number): void {
    const ttlMs = PEER_TTL_HEARTBEATS * this.#o.heartbeatIntervalMs;
    let expired = false;
    for (const [id, [, lastHeardMs]] of this.#peers) {
      if (nowMs - lastHeardMs > ttlMs) {
        this.#peers.delete(id);
        expired = true;
      }
    }
    if (expired) this.#changed();
  }

  /** Stops listening and answering for good. */
  close(): void {
    this.#closed = true;
    this.#answerTimer?.cancel();
    this.#answerTimer = undefined;
    this.#sub?.unsubscribe();
    this.#sub = undefined;
  }

  /**
   * A node run not heard of before is counted and answered (one heartbeat of ours, at most one
   * per ANSWER_GAP_MS, serves every newcomer at once, since heartbeats are broadcast); a
   * leaving notice uncounts its run.
   */
  #onHeartbeat(bytes: Uint8Array): void {
    const r = decode(bytes);
    if (!r.ok || r.message.type !== "heartbeat") return; // the aggregator-side checks count these
    const hb = r.message;
    if (hb.nodeId === this.#o.nodeId || hb.role === Role.aggregator) return;
    const known = this.#peers.get(hb.nodeId);
    if (hb.role === Role.nodeLeaving) {
      if (known !== undefined && known[0] === hb.nodeEpoch) this.#peers.delete(hb.nodeId);
      this.#changed();
      return;
    }
    if (known !== undefined && hb.nodeEpoch < known[0]) return; // a late word from an old run
    const isNew = known === undefined || known[0] !== hb.nodeEpoch;
    this.#peers.set(hb.nodeId, [hb.nodeEpoch, this.#o.clock.nowMs()]);
    if (!isNew) return;
    this.#changed();
    this.#answer();
  }

  #changed(): void {
    this.#o.onChange(this.#peers.size + 1);
  }

  #answer(): void {
    if (this.#answerTimer !== undefined || this.#closed) return;
    const waitMs = this.#lastHeartbeatMs + ANSWER_GAP_MS - this.#o.clock.nowMs();
    if (waitMs <= 0) {
      this.#o.answer();
      return;
    }
    this.#answerTimer = this.#o.clock.setTimer(() => {
      this.#answerTimer = undefined;
      this.#o.answer();
    }, waitMs);
  }
}
