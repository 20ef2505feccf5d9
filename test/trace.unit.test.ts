/** W3C traceparent parsing and continuation (pure logic, shared/trace.ts). */
import { expect, test } from "bun:test";
import { continueTrace, parseTraceparent, traceIdOf } from "../shared/trace.ts";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = "00f067aa0ba902b7";

test("a valid traceparent is continued: same trace id and flags, a new span id", () => {
  const header = `00-${TRACE}-${PARENT}-01`;
  expect(parseTraceparent(header)).toEqual({ traceId: TRACE, parentId: PARENT, flags: "01" });
  const next = continueTrace(header);
  expect(next.traceId).toBe(TRACE);
  expect(next.flags).toBe("01");
  expect(next.spanId).toMatch(/^[0-9a-f]{16}$/);
  expect(next.spanId).not.toBe(PARENT);
  expect(next.traceparent).toBe(`00-${TRACE}-${next.spanId}-01`);
  // Not sampled stays not sampled; surrounding spaces and upper case are tolerated.
  expect(continueTrace(`00-${TRACE}-${PARENT}-00`).flags).toBe("00");
  expect(parseTraceparent(` 00-${TRACE.toUpperCase()}-${PARENT}-01 `)?.traceId).toBe(TRACE);
});

test("a malformed one starts a new trace instead", () => {
  for (const bad of [
    undefined,
    "",
    "garbage",
    `01-${TRACE}-${PARENT}-01`, // unknown version: we only read 00
    `00-${"0".repeat(32)}-${PARENT}-01`, // all-zero trace id is invalid
    `00-${TRACE}-${"0".repeat(16)}-01`, // all-zero parent id is invalid
    `00-${TRACE.slice(1)}-${PARENT}-01`,
    `00-${TRACE}-${PARENT}-1`,
    `00-${TRACE}-${PARENT}-01-extra`,
  ]) {
    expect(parseTraceparent(bad)).toBeNull();
    const started = continueTrace(bad);
    expect(started.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(started.traceId).not.toBe(TRACE);
    expect(parseTraceparent(started.traceparent)).toEqual({ traceId: started.traceId, parentId: started.spanId, flags: "01" });
  }
  expect(continueTrace(undefined).traceId).not.toBe(continueTrace(undefined).traceId);
});

test("traceIdOf reads Kafka header values (strings or buffers)", () => {
  expect(traceIdOf(Buffer.from(`00-${TRACE}-${PARENT}-01`))).toBe(TRACE);
  expect(traceIdOf(`00-${TRACE}-${PARENT}-01`)).toBe(TRACE);
  expect(traceIdOf(undefined)).toBeUndefined();
  expect(traceIdOf("nope")).toBeUndefined();
});
