/** Read-your-writes, the pure parts: the token's format, RFC 7240 `Prefer: wait`, and the shared waiter (with a fake store). */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodeConsistencyToken, encodeConsistencyToken } from "../shared/domain/consistency-token.ts";
import { preferredWaitSeconds } from "../services/api/consistency/read-consistency.ts";
import { StoreProgress } from "../services/api/consistency/progress.ts";
import { parseProgressPayload, progressPayloads } from "../shared/stores/postgres/progress.ts";

describe("Consistency-Token", () => {
  test("every (stock id, version) goes round, and is opaque base64url", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (stockId, version) => {
        const token = encodeConsistencyToken({ stockId, version });
        expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(decodeConsistencyToken(token)).toEqual({ stockId, version });
      }),
    );
  });

  test("anything but a canonical token of format 1 is refused", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 120 }), (junk) => {
        const decoded = decodeConsistencyToken(junk);
        // Whatever is accepted must be exactly what we would have issued.
        if (decoded) expect(encodeConsistencyToken(decoded)).toBe(junk);
      }),
    );
    for (const text of ["0:abc:1", "1:abc:0", "1:abc:-1", "1::1", "1:abc:1.5", "1:abc:9007199254740993", "1:abc:1 ", " 1:abc:1"]) {
      expect(decodeConsistencyToken(Buffer.from(text).toString("base64url"))).toBeNull();
    }
  });
});

describe("Prefer: wait (RFC 7240)", () => {
  test.each([
    [undefined, null],
    ["", null],
    ["wait=3", 3],
    ["WAIT = 2", 2],
    ['wait="4"', 4],
    ["respond-async, wait=10", 10],
    ["wait=1;foo=bar", 1],
    ["return=minimal", null],
    ["wait=-1", null],
    ["wait=abc", null],
    ["wait=0", 0],
  ] as const)("%p → %p", (header, seconds) => {
    expect(preferredWaitSeconds(header)).toBe(seconds);
  });
});

describe("progress payloads", () => {
  test("split under 8,000 bytes and parse back to the same versions", () => {
    const versions = new Map(Array.from({ length: 500 }, (_, i) => [`stock-${"x".repeat(50)}-${i}`, i + 1] as [string, number]));
    const payloads = progressPayloads(versions);
    expect(payloads.length).toBeGreaterThan(1);
    for (const p of payloads) expect(Buffer.byteLength(p)).toBeLessThan(8_000);
    expect(new Map(payloads.flatMap(parseProgressPayload))).toEqual(versions);
    expect(parseProgressPayload("junk\nabc 0\nabc x\nok 3")).toEqual([["ok", 3]]);
  });
});

describe("StoreProgress", () => {
  const fakeStore = (versions: Map<string, number>) => {
    const calls: string[][] = [];
    const progress = new StoreProgress({
      store: "fake",
      pollMs: 20,
      async read(ids) {
        calls.push([...ids]);
        return new Map([...versions].filter(([id]) => ids.includes(id)));
      },
    });
    return { progress, calls };
  };

  test("a burst of waits costs one batched read; a pushed version wakes them without another", async () => {
    const { progress, calls } = fakeStore(new Map([["a", 1]]));
    const waits = ["a", "b", "c"].map((stockId) => progress.waitFor({ stockId, version: 2 }, 5_000));
    await Bun.sleep(5);
    expect(calls).toEqual([["a", "b", "c"]]);
    for (const id of ["a", "b", "c"]) progress.observe(id, 2);
    expect(await Promise.all(waits)).toEqual([true, true, true]);
    expect(progress.waiting).toBe(0);
    await Bun.sleep(60);
    expect(calls.length).toBe(1); // nobody waits: no poll
    expect(progress.has({ stockId: "a", version: 2 })).toBe(true);
    expect(await progress.waitFor({ stockId: "a", version: 1 }, 0)).toBe(true); // known: no read at all
    expect(calls.length).toBe(1);
  });

  test("while reads wait, one poll per period finds the store's progress; a wait that runs out answers false", async () => {
    const versions = new Map<string, number>();
    const { progress, calls } = fakeStore(versions);
    const later = progress.waitFor({ stockId: "s", version: 3 }, 2_000);
    const never = progress.waitFor({ stockId: "t", version: 1 }, 100);
    await Bun.sleep(50);
    versions.set("s", 3);
    expect(await later).toBe(true);
    expect(await never).toBe(false);
    // ~20 ms polls for ≤ 100 ms: a handful of reads, each for every waiting stock.
    expect(calls.length).toBeLessThan(12);
    progress.close();
  });
});
