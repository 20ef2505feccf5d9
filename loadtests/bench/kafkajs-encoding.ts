/**
 * kafkajs' record-batch encoding, original vs patched (patches/kafkajs@2.2.4.patch keeps the original
 * record encoder beside the new one): µs per record to encode a produce batch of BENCH_RECORDS
 * relay-shaped records (a ~300-byte event JSON, its key, the relay's 12 headers), CRC included.
 * Pure CPU, no servers: `bun loadtests/bench/kafkajs-encoding.ts` (rounds alternate the two).
 */
import { createRequire } from "node:module";
import { benchInt, readBenchEnv } from "../support.ts";

const { BENCH_RECORDS: N, BENCH_ROUNDS: ROUNDS } = readBenchEnv({ BENCH_RECORDS: benchInt(1_200, 1), BENCH_ROUNDS: benchInt(5, 1) });
const require = createRequire(import.meta.url);
type Encode = (r: object) => unknown;
const Record = require("kafkajs/src/protocol/recordBatch/record/v0") as Encode & { originalRecord: Encode };
const { RecordBatch } = require("kafkajs/src/protocol/recordBatch/v0") as { RecordBatch: (b: object) => Promise<unknown> };

const now = new Date().toISOString();
const value = Buffer.from(
  JSON.stringify({ eventId: crypto.randomUUID(), eventType: "StockAllocated", schemaVersion: 1, aggregateType: "Stock", aggregateId: "stock-123", version: 42, occurredAt: now, payload: { holdId: crypto.randomUUID(), userId: "user-1234", quantity: 1, expiresAt: now, available: 99, held: 1, sold: 0 } }),
);
const headers = {
  eventType: "StockAllocated",
  schemaVersion: "1",
  eventId: crypto.randomUUID(),
  relay: "host-123-abcdef",
  ce_specversion: "1.0",
  ce_id: crypto.randomUUID(),
  ce_source: "/flash-sale/stocks",
  ce_type: "com.flashsale.stock.allocated.v1",
  ce_subject: "stock-123",
  ce_time: now,
  "content-type": "application/json",
  traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
};

async function microsPerRecord(encode: Encode): Promise<number> {
  const started = performance.now();
  for (let batch = 0; batch < 20; batch++) {
    const records = Array.from({ length: N }, (_, i) => encode({ key: "stock-123", value, headers, offsetDelta: i, timestampDelta: 0 }));
    await RecordBatch({ records, firstTimestamp: Date.now(), maxTimestamp: Date.now(), producerId: 1, producerEpoch: 0, firstSequence: 0, transactional: true, lastOffsetDelta: N - 1 });
  }
  return ((performance.now() - started) * 1000) / (20 * N);
}

const load = (await Bun.file("/proc/loadavg").text()).split(" ")[0];
for (let round = 0; round < ROUNDS; round++) {
  const original = await microsPerRecord(Record.originalRecord);
  const patched = await microsPerRecord(Record);
  console.log(`[bench:kafkajs-encoding] round ${round + 1}: original ${original.toFixed(1)} µs/record, patched ${patched.toFixed(1)} µs/record (${(original / patched).toFixed(1)}×)`);
}
console.log(`[bench:kafkajs-encoding] ${N} records per batch; machine load average ${load} (2 cores, shared)`);
