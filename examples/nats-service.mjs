// A guarded NATS service chain: front → billing (limited, 2 per second) → ledger.
// Run: npm run build && node examples/nats-service.mjs   (NATS_URL, default nats://127.0.0.1:4222)
import { connect } from "@nats-io/transport-node";
import { createLimiter } from "sluice";
import { DEADLINE_HEADER, guardHandler, request } from "sluice/nats-service";

const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const prefix = `example.${process.pid}`;
const limiter = createLimiter({
  rules: [{ name: "billing", algorithm: "token-bucket", limit: 2, windowMs: 1000 }],
});

nc.subscribe(`${prefix}.ledger`, {
  callback: (_err, msg) => msg.respond(`ledger saw ${msg.headers?.get(DEADLINE_HEADER)} ms left`),
});
nc.subscribe(`${prefix}.billing`, {
  callback: guardHandler(limiter, { rule: "billing", key: () => "billing" }, (_err, msg) => {
    request(nc, `${prefix}.ledger`, msg.data, {
      deadline: msg,
      timeoutMs: 1000,
      reserveMs: 25,
    }).then(
      (reply) => msg.respond(reply.data),
      (err) => msg.respond(`billing failed: ${err.message}`),
    );
  }),
});
await nc.flush();

function show(label, reply) {
  const code = reply.headers?.get("Nats-Service-Error-Code");
  if (!code) return console.log(`${label}: ok, ${reply.string()}`);
  const retry = reply.headers.get("Retry-After");
  const retryMs = reply.headers.get("Sluice-Retry-After-Ms");
  console.log(
    `${label}: ${code} ${reply.headers.get("Nats-Service-Error")} (Retry-After: ${retry} s, ${retryMs} ms)`,
  );
}

// No deadline: decided at once; the third in the same second is refused with 429.
for (let i = 1; i <= 3; i++) {
  show(`plain request ${i}`, await nc.request(`${prefix}.billing`, "", { timeout: 2000 }));
}
// A deadline of 1000 ms: billing waits for its next token (within the deadline), and the
// ledger sees what is left less billing's wait and its 25 ms reserve.
show(
  "request with 1000 ms deadline",
  await request(nc, `${prefix}.billing`, "", { timeoutMs: 1000 }),
);
// A deadline of 50 ms: the wait would pass it, so billing answers 504 at once.
show("request with 50 ms deadline", await request(nc, `${prefix}.billing`, "", { timeoutMs: 50 }));

await limiter.close();
await nc.close();
