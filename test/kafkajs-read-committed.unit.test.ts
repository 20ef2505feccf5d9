/**
 * kafkajs' read_committed filter (patches/kafkajs@2.2.4.patch): which fetched messages belong to an
 * aborted transaction. Pure logic, so the fetch response is written by hand here; the broker-failure
 * test (test/kafka-broker-failure.test.ts) is where it showed: after a broker kill the relays' shard
 * producers abort transactions that overlap on a partition, the broker lists them in the order of
 * their abort markers, and unpatched kafkajs, which only looked at the head of that list, let records
 * of an aborted transaction through (read_committed readers saw 1,204 copies of re-sent events).
 */
import { expect, test } from "bun:test";
// @ts-expect-error kafkajs ships no types for its internals
import filterAbortedMessages from "kafkajs/src/consumer/filterAbortedMessages.js";

interface FetchedMessage {
  offset: string;
  key: Buffer | null;
  isControlRecord: boolean;
  batchContext: { producerId: string; inTransaction: boolean };
}

const ABORT = Buffer.from([0, 0, 0, 0]);
const COMMIT = Buffer.from([0, 0, 0, 1]);
const record = (offset: number, producerId: string): FetchedMessage => ({
  offset: String(offset),
  key: Buffer.from("stock"),
  isControlRecord: false,
  batchContext: { producerId, inTransaction: true },
});
const marker = (offset: number, producerId: string, key: Buffer): FetchedMessage => ({
  offset: String(offset),
  key,
  isControlRecord: true,
  batchContext: { producerId, inTransaction: true },
});
const kept = (messages: FetchedMessage[], aborted: { producerId: string; firstOffset: string }[]): string[] =>
  (filterAbortedMessages({ messages, abortedTransactions: aborted }) as FetchedMessage[]).filter((m) => !m.isControlRecord).map((m) => m.offset);

test("two producers' aborted transactions, listed in marker order (not first-offset order): only the aborted records are dropped", () => {
  // Producer 7 opens a transaction at 0; producer 8 one at 1 and aborts it first (marker 3);
  // producer 7 aborts at 4. Then both commit a re-send of their batch.
  const messages = [
    record(0, "7"),
    record(1, "8"),
    record(2, "8"),
    marker(3, "8", ABORT),
    marker(4, "7", ABORT),
    record(5, "8"),
    marker(6, "8", COMMIT),
    record(7, "7"),
    marker(8, "7", COMMIT),
  ];
  // The broker's list comes from its abort index, in the order the markers were written.
  const aborted = [
    { producerId: "8", firstOffset: "1" },
    { producerId: "7", firstOffset: "0" },
  ];
  expect(kept(messages, aborted)).toEqual(["5", "7"]);
});

test("aborted transactions whose first offsets are reached at the same message are all taken", () => {
  const messages = [record(10, "1"), record(11, "2"), marker(12, "1", ABORT), marker(13, "2", ABORT), record(14, "1"), marker(15, "1", COMMIT)];
  // A fetch that starts at 11: both aborted transactions began at or before its first message.
  expect(kept(messages.slice(1), [{ producerId: "1", firstOffset: "10" }, { producerId: "2", firstOffset: "11" }])).toEqual(["14"]);
  expect(kept(messages, [{ producerId: "1", firstOffset: "10" }, { producerId: "2", firstOffset: "11" }])).toEqual(["14"]);
});

test("no aborted transactions: every record is kept", () => {
  const messages = [record(0, "1"), marker(1, "1", COMMIT), record(2, "2")];
  expect(kept(messages, [])).toEqual(["0", "2"]);
});
