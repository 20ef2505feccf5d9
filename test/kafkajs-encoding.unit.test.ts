/**
 * patches/kafkajs@2.2.4.patch rewrites kafkajs' hottest encoders for the relay (docs/relay.md, "Where
 * the relay's CPU goes"): a record is written into one exact-size buffer, CRC-32C runs slice-by-8,
 * and Encoder buffers are not zero-filled. The bytes on the wire must not change: each record is
 * compared with kafkajs' original encoding (kept beside it by the patch), over generated records with
 * the shapes kafkajs accepts (Buffer/string/null keys and values, string/Buffer/array headers,
 * multi-byte UTF-8, negative and large deltas); the CRC with a byte-at-a-time reference and the
 * standard check value; the partitioner's murmur2 (32-bit arithmetic now) with kafkajs' original
 * (Long) over string and Buffer keys: a stock must keep its partition.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
type RecordInput = { offsetDelta?: number; timestampDelta?: number; key?: Buffer | string | null; value?: Buffer | string | null; headers?: Record<string, Buffer | string | (Buffer | string)[]> };
type Encoded = { buffer: Buffer };
const Record = require("kafkajs/src/protocol/recordBatch/record/v0") as ((r: RecordInput) => Encoded) & { originalRecord?: (r: RecordInput) => Encoded };
const crc32C = require("kafkajs/src/protocol/recordBatch/crc32C") as (b: Buffer) => number;
const murmur2 = require("kafkajs/src/producer/partitioners/default/murmur2") as ((key: Buffer | string) => number) & { originalMurmur2?: (key: Buffer | string) => number };
const Encoder = require("kafkajs/src/protocol/encoder") as new () => { writeEncoderArray(v: Encoded[]): unknown; buffer: Buffer };

/** CRC-32C one byte at a time (Castagnoli, reflected 0x82F63B78): the reference. */
function crc32cReference(buf: Uint8Array): number {
  let crc = ~0;
  for (const byte of buf) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

const text = fc.string({ unit: "grapheme", maxLength: 40 });
const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
const field = fc.oneof(text, bytes, fc.constant(null));
const headerValue = fc.oneof(text, bytes, fc.array(fc.oneof(text, bytes), { maxLength: 3 }));
const record = fc.record({
  offsetDelta: fc.integer({ min: 0, max: 100_000 }),
  timestampDelta: fc.oneof(fc.integer({ min: -1_000_000, max: 1_000_000 }), fc.constant(0), fc.integer({ min: 0, max: 2 ** 40 })),
  key: field,
  value: field,
  headers: fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }), headerValue, { maxKeys: 14 }),
});

describe("kafkajs encoding patch", () => {
  test("the original encoder is kept beside the patched one (else this file tests nothing)", () => {
    expect(typeof Record.originalRecord).toBe("function");
  });

  test("a record's bytes are the original encoding's, whatever its key, value, headers and deltas", () => {
    fc.assert(
      fc.property(record, (r) => {
        expect(Record(r).buffer.equals(Record.originalRecord!(r).buffer)).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  test("the patched records go into an Encoder like the original ones (writeEncoderArray)", () => {
    const records = [{ key: "a", value: "{}", headers: { eventType: "X" } }, { key: null, value: Buffer.from("v") }];
    const patched = new Encoder();
    patched.writeEncoderArray(records.map((r) => Record(r)));
    const original = new Encoder();
    original.writeEncoderArray(records.map((r) => Record.originalRecord!(r)));
    expect(patched.buffer.equals(original.buffer)).toBe(true);
  });

  test("CRC-32C: the check value, and the reference over every length around the 8-byte steps", () => {
    expect(crc32C(Buffer.from("123456789"))).toBe(0xe3069283);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (a) => {
        expect(crc32C(Buffer.from(a))).toBe(crc32cReference(a));
      }),
      { numRuns: 1_000 },
    );
  });

  test("murmur2 (the partitioner's hash) gives kafkajs' original values: ASCII and UTF-8 strings, Buffers, every length mod 4", () => {
    expect(typeof murmur2.originalMurmur2).toBe("function");
    for (const key of ["", "a", "ab", "abc", "abcd", "stock-123", "0190b6c4-7d5e-7a3b-9c1d-2e3f4a5b6c7d"]) expect(murmur2(key)).toBe(murmur2.originalMurmur2!(key));
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 60 }), fc.string({ unit: "grapheme", maxLength: 30 }), bytes), (key) => {
        expect(murmur2(key)).toBe(murmur2.originalMurmur2!(key));
      }),
      { numRuns: 3_000 },
    );
  });
});
