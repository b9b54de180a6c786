import assert from "node:assert/strict";
import { test } from "node:test";
import { type AcquireKind, Group, type GroupListener } from "../../../src/aggregator/group.js";
import type { GroupStore } from "../../../src/aggregator/group-store.js";
import { ManualClock } from "../../../src/clock/clock.js";
import { StoreUnavailableError } from "../../../src/limiter/strict-store.js";
import {
  createMemoryGroupStore,
  type MemoryGroupStore,
} from "../../../src/transport/memory-group-store.js";

const P = 16;
const LEASE = 1500;

interface Event {
  readonly at: number;
  readonly what: string;
  readonly p: number;
  readonly how?: AcquireKind | string;
  readonly checkpoint?: string | undefined;
}

/** A member on its own view of the shared store (which a test can cut off alone). */
function member(
  id: string,
  shared: MemoryGroupStore,
  clock: ManualClock,
  events: Event[],
  run = 1,
  watchWhileCut = false,
): {
  group: Group;
  cut: (off: boolean) => void;
  refused: () => number;
  /** The watch stops (or resumes) delivering, the writes still working: a stale watch. */
  freezeWatch: (frozen: boolean) => void;
  /** Member writes wait `ms` before they are stored, and are acknowledged then. */
  delayPuts: (ms: number) => void;
} {
  let off = false;
  let refused = 0;
  let frozen = false;
  let putDelayMs = 0;
  const later = (ms: number) =>
    new Promise<void>((resolve) => {
      const until = clock.nowMs() + ms;
      const t = clock.setRepeating(() => {
        if (clock.nowMs() >= until) {
          t.cancel();
          resolve();
        }
      }, 10);
    });
  const unavailable = () => {
    refused++;
    return Promise.reject(new StoreUnavailableError(`${id} is cut off`));
  };
  const store: GroupStore = {
    create: (k, v) => (off ? unavailable() : shared.create(k, v)),
    update: (k, v, r) => (off ? unavailable() : shared.update(k, v, r)),
    put: (k, v) =>
      off
        ? unavailable()
        : putDelayMs > 0
          ? later(putDelayMs).then(() => shared.put(k, v))
          : shared.put(k, v),
    get: (k) => (off ? unavailable() : shared.get(k)),
    delete: (k) => (off ? unavailable() : shared.delete(k)),
    watch: (prefix, onEntry) =>
      shared.watch(prefix, (e) => ((off && !watchWhileCut) || frozen ? undefined : onEntry(e))),
  };
  const listener: GroupListener = {
    wanted: (p) => events.push({ at: clock.nowMs(), what: `${id} wanted`, p }),
    acquired: async (p, _epoch, how, checkpoint) => {
      events.push({ at: clock.nowMs(), what: `${id} acquired`, p, how, checkpoint });
    },
    renewed: (p) => events.push({ at: clock.nowMs(), what: `${id} renewed`, p }),
    handOff: async (p, to) => {
      events.push({ at: clock.nowMs(), what: `${id} handOff`, p, how: to });
      return `handoff-${p}-${id}`;
    },
    released: (p, why) => events.push({ at: clock.nowMs(), what: `${id} released`, p, how: why }),
  };
  const group = new Group({
    store,
    memberId: id,
    run,
    partitions: P,
    clock,
    leaseMs: LEASE,
    listener,
  });
  return {
    group,
    cut: (v) => (off = v),
    refused: () => refused,
    freezeWatch: (v) => (frozen = v),
    delayPuts: (ms) => (putDelayMs = ms),
  };
}

async function settle(store: MemoryGroupStore): Promise<void> {
  for (let i = 0; i < 4; i++) {
    await store.settle();
    await new Promise((r) => setImmediate(r));
  }
}

/** Advances `ms` in steps of 10, letting the store and promises settle after each. */
async function run(
  clock: ManualClock,
  store: MemoryGroupStore,
  ms: number,
  check?: () => void,
): Promise<void> {
  for (let t = 0; t < ms; t += 10) {
    clock.advance(10);
    await settle(store);
    check?.();
  }
}

/** Members a and b on one store, started and settled for 600 ms (a's watch as `member` says). */
async function twoMembers(aWatchesWhileCut = false) {
  const clock = new ManualClock(0);
  const store = createMemoryGroupStore();
  const events: Event[] = [];
  const a = member("a", store, clock, events, 1, aWatchesWhileCut);
  const b = member("b", store, clock, events);
  await a.group.start();
  await b.group.start();
  await run(clock, store, 600);
  return { clock, store, events, a, b };
}

/** No partition may be grantable by two members at the same instant. */
function exclusive(clock: ManualClock, groups: Group[]): () => void {
  return () => {
    for (let p = 0; p < P; p++) {
      const granting = groups.filter((g) => g.canGrant(p, clock.nowMs())).map((g) => g.memberId);
      assert.ok(granting.length <= 1, `at ${clock.nowMs()} partition ${p}: ${granting}`);
    }
  };
}

const grantable = (g: Group, clock: ManualClock) =>
  Array.from({ length: P }, (_, p) => p).filter((p) => g.canGrant(p, clock.nowMs()));

test("group - one member claims every partition, each with its own growing owner epoch", async () => {
  const clock = new ManualClock(0);
  const store = createMemoryGroupStore();
  const events: Event[] = [];
  const a = member("a", store, clock, events);
  await a.group.start();
  await run(clock, store, 100);
  assert.equal(grantable(a.group, clock).length, P);
  const epochs = a.group.held().map(([, e]) => e);
  assert.equal(new Set(epochs).size, P, "one epoch per partition");
  assert.ok(events.filter((e) => e.what === "a acquired").every((e) => e.how === "fresh"));
  await a.group.close();
});

test("group - a join moves the newcomer's share by handoff, never granting a partition twice", async () => {
  const clock = new ManualClock(0);
  const store = createMemoryGroupStore();
  const events: Event[] = [];
  const a = member("a", store, clock, events);
  const b = member("b", store, clock, events);
  await a.group.start();
  await run(clock, store, 100);
  const epochBefore = new Map(a.group.held());
  await b.group.start();
  await run(clock, store, 600, exclusive(clock, [a.group, b.group]));
  const ofA = grantable(a.group, clock);
  const ofB = grantable(b.group, clock);
  assert.equal(ofA.length + ofB.length, P, `a ${ofA} b ${ofB}`);
  assert.ok(ofB.length >= 3 && ofB.length <= P - 3, `b holds ${ofB.length}`);
  for (const p of ofB) {
    const handOff = events.find((e) => e.what === "a handOff" && e.p === p);
    const acquired = events.find((e) => e.what === "b acquired" && e.p === p);
    assert.ok(handOff && acquired, `partition ${p} went by handoff`);
    assert.equal(acquired.how, "handoff");
    assert.equal(acquired.checkpoint, `handoff-${p}-a`, "with the checkpoint a saved");
    assert.ok(b.group.epochOf(p)! > epochBefore.get(p)!, "a newer owner epoch");
  }
  assert.ok(!events.some((e) => e.how === "takeover"), "no takeover on a join");
  await b.group.close();
  await a.group.close();
});

test("group - a member cut off stops granting before anyone takes over, then lets go", async () => {
  const { clock, store, events, a, b } = await twoMembers();
  const ofA = grantable(a.group, clock);
  assert.ok(ofA.length > 0);
  const cutAt = clock.nowMs();
  a.cut(true); // a's renewals fail from now: its lease runs out by its own clock
  let aStoppedAt = -1;
  await run(clock, store, 3000, () => {
    exclusive(clock, [a.group, b.group])();
    if (aStoppedAt < 0 && grantable(a.group, clock).length === 0) aStoppedAt = clock.nowMs();
  });
  assert.ok(aStoppedAt > cutAt && aStoppedAt <= cutAt + LEASE, `a stopped at ${aStoppedAt}`);
  const takeovers = events.filter((e) => e.what === "b acquired" && e.how === "takeover");
  assert.deepEqual(
    takeovers.map((e) => e.p).sort((x, y) => x - y),
    ofA,
    "b took a's partitions",
  );
  for (const t of takeovers) assert.ok(t.at >= aStoppedAt, "only after a had stopped");
  assert.ok(
    takeovers.every((t) => t.at - cutAt <= 2 * LEASE),
    "within two leases",
  );
  assert.equal(grantable(b.group, clock).length, P);
  // Back: a's renewal works again; what it held was taken, so it lets go and grants nothing.
  a.cut(false);
  await run(clock, store, 1000, exclusive(clock, [a.group, b.group]));
  const released = events.filter((e) => e.what === "a released" && e.how === "taken");
  assert.equal(released.length, ofA.length, "a let go of every partition taken from it");
  assert.ok(grantable(a.group, clock).length <= P, "a may get its share back by handoff");
  await b.group.close();
  await a.group.close();
});

test("group - a member whose writes fail (its watch still delivering) retries once a beat", async () => {
  const { clock, store, a, b } = await twoMembers(true);
  const ofA = grantable(a.group, clock);
  assert.ok(ofA.length > 0);
  // a still sees b alive and, once its own lease has lapsed, wants to hand everything to b;
  // every write fails, and each failure must wait for the next beat, not retry at once.
  a.cut(true);
  await run(clock, store, 3000, exclusive(clock, [a.group, b.group]));
  const beats = Math.ceil(3000 / (LEASE / 3)) + 1;
  assert.ok(a.refused() > 0);
  assert.ok(a.refused() <= beats * (P + 1), `${a.refused()} refused calls in ${beats} beats`);
  assert.equal(grantable(b.group, clock).length, P, "b took over");
  assert.equal(grantable(a.group, clock).length, 0);
  await b.group.close();
  await a.group.close();
});

test("group - a member whose watch falls behind takes nothing from members that are alive", async () => {
  const { clock, store, events, a, b } = await twoMembers();
  assert.ok(grantable(a.group, clock).length > 0 && grantable(b.group, clock).length > 0);
  // b's watch stops delivering (its server died) while every write still works: it sees no
  // writes from a, but cannot know a is gone, since it does not see its own writes either.
  b.freezeWatch(true);
  await run(clock, store, 4 * LEASE, exclusive(clock, [a.group, b.group]));
  assert.equal(events.filter((e) => e.how === "takeover").length, 0, "no takeover");
  b.freezeWatch(false);
  await run(clock, store, LEASE, exclusive(clock, [a.group, b.group]));
  await b.group.close();
  await a.group.close();
});

test("group - a member whose writes are stored late, its watch behind, lets go of everything taken meanwhile", async () => {
  const { clock, store, events, a, b } = await twoMembers();
  const ofA = grantable(a.group, clock);
  assert.ok(ofA.length > 0);
  // a's next writes are stored (and acknowledged) 0.75 lease late: a renewal sent in time comes
  // back after a's lease ran out, while b, seeing no write from a for a lease, takes a's share;
  // a's own watch is behind meanwhile, so only its renewal can tell it.
  a.delayPuts(0.75 * LEASE);
  a.freezeWatch(true);
  await run(clock, store, 2 * LEASE, exclusive(clock, [a.group, b.group]));
  a.delayPuts(0);
  a.freezeWatch(false);
  await run(clock, store, 2 * LEASE, exclusive(clock, [a.group, b.group]));
  const taken = events.filter((e) => e.what === "a released" && e.how === "taken");
  const takeovers = events.filter((e) => e.what === "b acquired" && e.how === "takeover");
  assert.equal(takeovers.length, taken.length, "a let go of everything b took");
  await b.group.close();
  await a.group.close();
});

test("group - a draining member hands everything over and leaves", async () => {
  const { clock, store, events, a, b } = await twoMembers();
  const ofA = grantable(a.group, clock);
  const drained = a.group.drain(5000);
  // A beat for the takers to learn of the drain, then the handoffs.
  await run(clock, store, LEASE / 3 + 300, exclusive(clock, [a.group, b.group]));
  await drained;
  assert.deepEqual(a.group.held(), []);
  assert.equal(grantable(b.group, clock).length, P);
  const moved = events.filter((e) => e.what === "b acquired" && ofA.includes(e.p));
  assert.ok(
    moved.every((e) => e.how === "handoff"),
    "by handoff, not takeover",
  );
  await a.group.close();
  await settle(store);
  assert.equal(store.snapshot().get("members.a")?.deleted, true, "its member key is gone");
  await b.group.close();
});

test("group - a crashed member's partitions are taken once its lease has passed", async () => {
  const { clock, store, events, a, b } = await twoMembers();
  const ofA = grantable(a.group, clock);
  const crashAt = clock.nowMs();
  await a.group.close(false); // stops without leaving: its member key stays, unrenewed
  await run(clock, store, 2 * LEASE + 100);
  const takeovers = events.filter((e) => e.what === "b acquired" && e.how === "takeover");
  assert.equal(takeovers.length, ofA.length);
  for (const t of takeovers) {
    assert.ok(t.at - crashAt >= LEASE - LEASE / 3 - 10, `taken at +${t.at - crashAt} ms`);
  }
  await b.group.close();
});
