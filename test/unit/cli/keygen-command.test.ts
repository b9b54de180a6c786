import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { decode } from "../../../src/protocol/decode.js";
import { encodeHeartbeat } from "../../../src/protocol/heartbeat.js";
import { createSigner, createVerifier } from "../../../src/protocol/signing.js";

/** `bin/sluice.js` of this checkout (this file runs from `dist/test/unit/cli/`). */
const BIN = fileURLToPath(new URL("../../../../bin/sluice.js", import.meta.url));

function sluice(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, "keygen", ...args], { encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The seed signs what the public key verifies. */
function assertPair(seed: string, publicKey: string): void {
  const signer = createSigner(seed);
  assert.equal(signer.publicKey, publicKey);
  const hb = { nodeId: "n", nodeEpoch: 1, seq: 1, sentAtWallMs: 1, role: 1 as const };
  const r = decode(encodeHeartbeat(hb, { signer }), { verify: createVerifier([publicKey]) });
  assert.ok(r.ok && r.signature === "verified");
}

test("keygen - prints a new seed and its public key; --json prints them as JSON", () => {
  const plain = sluice();
  assert.equal(plain.code, 0, plain.stderr);
  const seed = /^seed: +(SA[A-Z2-7]{56})$/m.exec(plain.stdout)?.[1];
  const publicKey = /^public key: +(A[A-Z2-7]{55})$/m.exec(plain.stdout)?.[1];
  assert.ok(seed && publicKey, plain.stdout);
  assertPair(seed, publicKey);

  const json = sluice("--json");
  assert.equal(json.code, 0, json.stderr);
  const pair = JSON.parse(json.stdout) as { seed: string; publicKey: string };
  assert.deepEqual(Object.keys(pair).sort(), ["publicKey", "seed"]);
  assertPair(pair.seed, pair.publicKey);
  assert.notEqual(pair.seed, seed, "a new pair each time");
});

test("keygen - --out writes the seed with mode 0600, prints only the public key, and keeps an existing file unless --force", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-keygen-"));
  try {
    const file = join(dir, "group.seed");
    const first = sluice("--out", file);
    assert.equal(first.code, 0, first.stderr);
    assert.doesNotMatch(first.stdout, /SA[A-Z2-7]{56}/, "the seed is not printed");
    const publicKey = /^public key: +(A[A-Z2-7]{55})$/m.exec(first.stdout)?.[1];
    assert.ok(publicKey, first.stdout);
    const seed = readFileSync(file, "utf8");
    assertPair(seed, publicKey);
    if (process.platform !== "win32") assert.equal(statSync(file).mode & 0o777, 0o600);

    const again = sluice("--out", file);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /--force/);
    assert.equal(readFileSync(file, "utf8"), seed, "left as it was");

    writeFileSync(file, "old", { mode: 0o644 });
    const forced = sluice("--out", file, "--force", "--json");
    assert.equal(forced.code, 0, forced.stderr);
    const out = JSON.parse(forced.stdout) as { publicKey: string; seedFile: string };
    assert.deepEqual(Object.keys(out).sort(), ["publicKey", "seedFile"]);
    assert.equal(out.seedFile, file);
    assertPair(readFileSync(file, "utf8"), out.publicKey);
    if (process.platform !== "win32") assert.equal(statSync(file).mode & 0o777, 0o600);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("keygen - --help explains it; a stray argument or --force without --out is refused", () => {
  const help = sluice("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: sluice keygen/);
  assert.match(help.stdout, /--out FILE/);
  assert.match(help.stdout, /rotate/);
  assert.equal(sluice("extra").code, 2);
  assert.equal(sluice("--force").code, 2);
  assert.equal(sluice("--bogus").code, 2);
});
