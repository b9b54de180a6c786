/**
 * The doubt about first reports around a broken link, on its own: which key generations report
 * as first again, for how long, and how the resync ends it. Time is the `nowMs` passed.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { FirstReportDoubts } from "../../../src/agent/first-report-doubts.js";

test("first report doubts - with the link sound, a report is first only when the limiter says so", () => {
  const d = new FirstReportDoubts();
  d.beginFlush(0);
  assert.equal(d.isFirst("r", "k", 1, true), true);
  d.endFlush();
  d.beginFlush(25);
  assert.equal(d.isFirst("r", "k", 1, false), false);
  assert.equal(d.doubtful, 0);
  assert.equal(d.aggregatorHeard(), false, "no resync asked for");
});

test("first report doubts - a break puts in doubt the first reports of the look-back, and those sent while unsure", () => {
  const d = new FirstReportDoubts();
  d.beginFlush(0);
  d.isFirst("r", "old", 1, true); // previous look-back period
  d.beginFlush(1000);
  d.isFirst("r", "recent", 1, true);
  d.isFirst("r", "seen", 1, false); // not a first report
  d.disconnected();
  assert.equal(d.doubtful, 2);
  d.beginFlush(1025);
  assert.equal(d.isFirst("r", "old", 1, false), true, "reported as first again");
  assert.equal(d.isFirst("r", "recent", 1, false), true);
  assert.equal(d.isFirst("r", "seen", 1, false), false);
  assert.equal(d.isFirst("r", "recent", 2, false), false, "another generation of the key");
  assert.equal(d.isFirst("r", "during", 1, true), true);
  assert.equal(
    d.isFirst("r", "during", 1, false),
    true,
    "first reported while the link was unsure",
  );
});

test("first report doubts - first reports older than two look-back periods are not doubted", () => {
  const d = new FirstReportDoubts();
  d.beginFlush(0);
  d.isFirst("r", "k", 1, true);
  d.beginFlush(1000);
  d.beginFlush(2000);
  d.disconnected();
  assert.equal(d.doubtful, 0);
  assert.equal(d.isFirst("r", "k", 1, false), false);
});

test("first report doubts - the resync starts when the aggregator is next heard, and the flush carrying it ends the doubt", () => {
  const d = new FirstReportDoubts();
  d.beginFlush(0);
  d.isFirst("r", "k", 1, true);
  d.disconnected();
  d.resyncWhenHeard(); // reconnected
  d.endFlush();
  assert.equal(d.doubtful, 1, "no resync yet: still in doubt");
  assert.equal(d.aggregatorHeard(), true, "the resync starts: every key is to be re-sent");
  assert.equal(d.aggregatorHeard(), false, "once");
  d.beginFlush(100);
  assert.equal(d.isFirst("r", "k", 1, false), true, "the resync's flush still says first");
  assert.equal(d.isFirst("r", "new", 1, true), true);
  d.endFlush();
  assert.equal(d.doubtful, 0, "the link is sure: nothing first reported since is doubted");
  d.beginFlush(125);
  assert.equal(d.isFirst("r", "k", 1, false), false);
  assert.equal(d.isFirst("r", "new", 1, false), false);
});
