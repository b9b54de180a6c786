/**
 * The aggregator group's ownership on the real NATS server's JetStream KV: claims, a join by
 * handoff, a member whose store calls fail (as a paused or cut-off process's would) stopping
 * before its partitions are taken, and a crash. Two groups in one process, each with its own
 * connection, on the real clock with a short lease.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Group, type GroupListener } from "../../src/aggregator/group.js";
import type { GroupStore } from "../../src/aggregator/group-store.js";
import { monotonicClock } from "../../src/clock/clock.js";
import { StoreUnavailableError } from "../../src/limiter/strict-store.js";
import { openKvGroupStore } from "../../src/transport/nats/kv-group-store.js";
import { connectNats } from "../../src/transport/nats/nats-transport.js";
import type { Transport } from "../../src/transport/transport.js";
import { SHARED_NATS, sleep, uniquePrefix } from "./helpers/cluster-procs.js";

const P = 8;
const LEASE = 600;

interface Acquired {
  readonly at: number;
  readonly p: number;
  readonly how: string;
  readonly epoch: number;
}

async function member(id: string, bucket: string, acquired: Acquired[]) {
  const transport = await connectNats({ servers: SHARED_NATS, name: `group-${id}` });
  const kv = await openKvGroupStore(transport, { bucket, ttlMs: 60_000 });
  let cut = false;
  const fail = () => Promise.reject(new StoreUnavailableError(`${id} cut off`));
  const store: GroupStore = {
    create: (k, v) => (cut ? fail() : kv.create(k, v)),
    update: (k, v, r) => (cut ? fail() : kv.update(k, v, r)),
    put: (k, v) => (cut ? fail() : kv.put(k, v)),
    get: (k) => (cut ? fail() : kv.get(k)),
    delete: (k) => (cut ? fail() : kv.delete(k)),
    watch: (prefix, onEntry) => kv.watch(prefix, onEntry),
  };
  const listener: GroupListener = {
    wanted: () => {},
    acquired: async (p, epoch, how) => {
      acquired.push({ at: performance.now(), p, how: `${id}:${how}`, epoch });
    },
    renewed: () => {},
    handOff: async (p) => `handoff-${p}`,
    released: () => {},
  };
  const group = new Group({
    store,
    memberId: id,
    run: Date.now() + Math.random(),
    partitions: P,
    clock: monotonicClock,
    leaseMs: LEASE,
    listener,
  });
  return {
    group,
    transport,
    kv,
    cut: (v: boolean) => (cut = v),
    async close(leave = true) {
      await group.close(leave);
      await kv.close();
      await transport.close();
    },
  };
}

const grantable = (g: Group) =>
  Array.from({ length: P }, (_, p) => p).filter((p) => g.canGrant(p, performance.now()));

async function until(what: string, ms: number, ok: () => boolean, check?: () => void) {
  const end = performance.now() + ms;
  while (!ok()) {
    check?.();
    assert.ok(performance.now() < end, `not within ${ms} ms: ${what}`);
    await sleep(10);
  }
}

function exclusive(groups: Group[]): () => void {
  return () => {
    for (let p = 0; p < P; p++) {
      const n = groups.filter((g) => g.canGrant(p, performance.now())).length;
      assert.ok(n <= 1, `partition ${p} grantable by ${n} members`);
    }
  };
}

test("group on NATS KV - claims, a join by handoff, a cut-off member, a crash", async () => {
  const bucket = uniquePrefix("group").replace(/[^A-Za-z0-9_-]/g, "_");
  const acquired: Acquired[] = [];
  const open: { close(leave?: boolean): Promise<void> }[] = [];
  try {
    const a = await member("a", bucket, acquired);
    open.push(a);
    await a.group.start();
    await until("a holds every partition", 3000, () => grantable(a.group).length === P);

    const b = await member("b", bucket, acquired);
    open.push(b);
    await b.group.start();
    const both = exclusive([a.group, b.group]);
    await until(
      "b holds its share",
      5000,
      () =>
        grantable(b.group).length > 0 &&
        grantable(a.group).length + grantable(b.group).length === P,
      both,
    );
    assert.ok(acquired.filter((x) => x.how === "b:handoff").length > 0, "by handoff");
    assert.ok(!acquired.some((x) => x.how.endsWith("takeover")), "no takeover on a join");
    const epochs = acquired.map((x) => x.epoch);
    assert.equal(new Set(epochs).size, epochs.length, "every acquisition has its own epoch");

    // a's store calls fail from now: it stops by its own lease before b takes anything.
    const ofA = grantable(a.group);
    a.cut(true);
    const cutAt = performance.now();
    let aStopped = Number.NaN;
    await until(
      "b holds everything",
      4 * LEASE + 2000,
      () => grantable(b.group).length === P,
      () => {
        both();
        if (Number.isNaN(aStopped) && grantable(a.group).length === 0) aStopped = performance.now();
      },
    );
    const takeovers = acquired.filter((x) => x.how === "b:takeover");
    assert.equal(takeovers.length, ofA.length);
    for (const t of takeovers) assert.ok(t.at >= aStopped, "taken only after a had stopped");
    assert.ok(aStopped - cutAt <= LEASE, `a stopped ${aStopped - cutAt} ms after the cut`);

    // a back: it must not grant what it lost; it gets a share again by handoff later.
    a.cut(false);
    await sleep(3 * LEASE);
    both();

    // A crash of b (no leaving): a takes b's partitions after the lease.
    const ofB = grantable(b.group);
    await b.close(false);
    open.splice(open.indexOf(b), 1);
    const crashAt = performance.now();
    await until(
      "a holds everything again",
      4 * LEASE + 2000,
      () => grantable(a.group).length === P,
    );
    const late = acquired.filter((x) => x.how === "a:takeover" && x.at > crashAt);
    assert.equal(late.length, ofB.length, "a took over b's partitions");
    for (const t of late) assert.ok(t.at - crashAt >= LEASE / 2, "not before b's lease passed");
  } finally {
    for (const o of open.reverse()) await o.close();
    const t: Transport = await connectNats({ servers: SHARED_NATS });
    const { Kvm } = await import("@nats-io/kv");
    const { natsConnectionOf } = await import("../../src/transport/nats/nats-transport.js");
    const kvOpened = await new Kvm(natsConnectionOf(t)!).open(bucket).catch(() => undefined);
    await kvOpened?.destroy().catch(() => {});
    await t.close();
  }
});
