/** The benches' one settings reader (loadtests/support.ts): pure logic, no stack needed. */
import { expect, test } from "bun:test";
import { z } from "zod";
import { BenchEnvError, benchFlag, benchInt, parseBenchEnv } from "../loadtests/support.ts";

const shape = {
  BENCH_EVENTS: benchInt(200_000, 1),
  BENCH_NICE: benchInt(0, -20, 19),
  BENCH_SKIP_DRAIN: benchFlag,
  BENCH_DRAIN_ONLY: z.enum(["projector-postgres", "projector-search"]).optional(),
};

test("unset or empty variables take their defaults; given ones are typed", () => {
  expect(parseBenchEnv(shape, { BENCH_EVENTS: "" })).toEqual({ BENCH_EVENTS: 200_000, BENCH_NICE: 0, BENCH_SKIP_DRAIN: false });
  expect(parseBenchEnv(shape, { BENCH_EVENTS: "5000", BENCH_NICE: "-5", BENCH_SKIP_DRAIN: "1", BENCH_DRAIN_ONLY: "projector-search" })).toEqual({
    BENCH_EVENTS: 5000,
    BENCH_NICE: -5,
    BENCH_SKIP_DRAIN: true,
    BENCH_DRAIN_ONLY: "projector-search",
  });
  expect(parseBenchEnv(shape, { BENCH_SKIP_DRAIN: "true" }).BENCH_SKIP_DRAIN).toBe(true);
  expect(parseBenchEnv(shape, { BENCH_SKIP_DRAIN: "0" }).BENCH_SKIP_DRAIN).toBe(false);
});

test("a malformed value throws, naming every bad variable with the value it was given", () => {
  let error: unknown;
  try {
    parseBenchEnv(shape, { BENCH_EVENTS: "20k", BENCH_NICE: "40", BENCH_SKIP_DRAIN: "yes", BENCH_DRAIN_ONLY: "postgres" });
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(BenchEnvError);
  const problems = (error as BenchEnvError).problems;
  expect(problems).toHaveLength(4);
  expect(problems[0]).toStartWith('BENCH_EVENTS="20k": ');
  expect(problems.find((p) => p.startsWith('BENCH_NICE="40": '))).toContain("19");
  expect(problems.some((p) => p.startsWith('BENCH_SKIP_DRAIN="yes": '))).toBe(true);
  expect(problems.some((p) => p.startsWith('BENCH_DRAIN_ONLY="postgres": '))).toBe(true);
  expect((error as Error).message).toStartWith("invalid bench settings:");
  // Zero or fractional counts are refused too (a bench of 0 events would divide by zero).
  expect(() => parseBenchEnv(shape, { BENCH_EVENTS: "0" })).toThrow(BenchEnvError);
  expect(() => parseBenchEnv(shape, { BENCH_EVENTS: "1.5" })).toThrow(BenchEnvError);
});
