/**
 * The simulation's operations as fast-check commands (fc.commands / fc.asyncModelRun): each asks the
 * model (test/sim/model.ts) what the api must answer, sends the request to the real system
 * (test/sim/system.ts), compares, applies the change to the model, and compares the stock's view.
 * A mismatch throws SimMismatch, which fast-check shrinks to a short sequence.
 */
import fc from "fast-check";
import type { ModelHold, WriteSideModel, Expected } from "./model.ts";
import type { SimSystem } from "./system.ts";

const USERS = ["ua", "ub", "uc"] as const;
const MAX_STOCKS = 5;

export class SimMismatch extends Error {
  override name = "SimMismatch";
}

/** One run of the property: the model, the system, a run id (stock ids are unique per run: shrinking re-runs). */
export interface SimRun {
  model: WriteSideModel;
  sys: SimSystem;
  runId: string;
  ops: { count: number };
  nextStock: number;
  nextKey: number;
}

type Cmd = fc.AsyncCommand<SimRun, SimSystem>;

/** SIM_PROFILE=1: milliseconds per operation kind (and per end-of-run check), printed by `bun run sim`. */
export const simProfile = new Map<string, number[]>();
export function recordTime(what: string, ms: number): void {
  if (process.env.SIM_PROFILE) (simProfile.get(what) ?? simProfile.set(what, []).get(what)!).push(ms);
}

function same(what: string, got: unknown, want: unknown): void {
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new SimMismatch(`${what}: got ${JSON.stringify(got)}, model says ${JSON.stringify(want)}`);
}

function expectAnswer(what: string, got: { status: number; body: Record<string, unknown> }, want: Expected): void {
  same(`${what} answer`, { status: got.status, code: got.status >= 400 ? got.body.code : undefined }, { status: want.status, code: want.code });
}

async function checkStock(run: SimRun, stockId: string): Promise<void> {
  const got = await run.sys.request("GET", `/api/stocks/${stockId}`);
  const { available, held, sold, total, version, status } = got.body;
  same(`stock ${stockId} view`, { available, held, sold, total, version, status }, run.model.view(run.model.stock(stockId)));
}

const pick = <T>(list: readonly T[], n: number): T => list[n % list.length]!;

/** The model's own holds: commands pick one by index (stable across shrinking of earlier steps). */
const holdAt = (run: SimRun, n: number): ModelHold | undefined => (run.model.holds.length ? pick(run.model.holds, n) : undefined);

abstract class SimCommand implements Cmd {
  abstract toString(): string;
  check(run: Readonly<SimRun>): boolean {
    return run.model.stocks.length > 0;
  }
  async run(run: SimRun): Promise<void> {
    run.ops.count++;
    const t = performance.now();
    await this.apply(run);
    recordTime(this.constructor.name, performance.now() - t);
  }
  protected abstract apply(run: SimRun): Promise<void>;
}

class CreateStock extends SimCommand {
  constructor(readonly quantity: number, readonly perUserLimit: number) {
    super();
  }
  toString = () => `createStock(q=${this.quantity}, limit=${this.perUserLimit})`;
  override check = (run: Readonly<SimRun>) => run.model.stocks.length < MAX_STOCKS;
  protected async apply(run: SimRun): Promise<void> {
    const id = `${run.runId}s${run.nextStock++}`;
    const got = await run.sys.request("POST", "/api/stocks", { admin: true, body: { id, name: `sim ${id}`, price: 100, quantity: this.quantity, perUserLimit: this.perUserLimit } });
    expectAnswer(`createStock ${id}`, got, { status: 201 });
    run.model.createStock(id, this.quantity, this.perUserLimit);
    await checkStock(run, id);
  }
}

type KeyChoice = { kind: "none" } | { kind: "new" } | { kind: "replay"; n: number; sameQuantity: boolean };

class Allocate extends SimCommand {
  constructor(readonly stock: number, readonly user: number, readonly quantity: number, readonly key: KeyChoice, readonly killConnection = false) {
    super();
  }
  toString = () => `allocate(stock#${this.stock}, ${pick(USERS, this.user)}, q=${this.quantity}, key=${JSON.stringify(this.key)}${this.killConnection ? ", CLIENT KILL" : ""})`;
  protected async apply(run: SimRun): Promise<void> {
    let stockId = pick(run.model.stocks, this.stock).id;
    let userId: string = pick(USERS, this.user);
    let quantity = this.quantity;
    let key: string | undefined;
    const records = [...run.model.idempotency.entries()];
    if (this.key.kind === "replay" && records.length > 0) {
      const [scope, record] = pick(records, this.key.n);
      [stockId, userId, key] = scope.split("\u0000") as [string, string, string];
      quantity = this.key.sameQuantity ? record.quantity : record.quantity + 1;
    } else if (this.key.kind !== "none" || this.killConnection) {
      key = `k${run.nextKey++}`;
    }
    const want = run.model.allocateOutcome(stockId, userId, quantity, key);
    const send = () =>
      run.sys.request("POST", `/api/stocks/${stockId}/allocate`, { userId, body: { quantity }, headers: key === undefined ? {} : { "Idempotency-Key": key } });
    let got = this.killConnection ? await run.sys.killApiConnectionDuring(send) : await send();
    // A client whose request died with the connection retries with the same key (503 store_unavailable):
    // whatever Redis did with the first try, the answer is then definite, and applied once.
    for (let i = 0; got.status === 503 && this.killConnection && i < 20; i++) {
      await Bun.sleep(50);
      got = await send();
    }
    const what = `allocate ${stockId} ${userId} q=${quantity} key=${key ?? "-"}`;
    if (want === undefined) {
      expectAnswer(what, got, { status: 201 });
      run.model.allocate(stockId, userId, quantity, key, String(got.body.allocationId), got.body, got.status);
    } else if ("replay" in want) {
      same(`${what} replay`, { status: got.status, body: got.body }, { status: want.replay.status, body: want.replay.answer });
    } else {
      expectAnswer(what, got, want);
    }
    await checkStock(run, stockId);
  }
}

class ChangeHold extends SimCommand {
  constructor(readonly action: "purchase" | "cancel", readonly hold: number, readonly byOwner: boolean) {
    super();
  }
  toString = () => `${this.action}(hold#${this.hold}${this.byOwner ? "" : ", by another user"})`;
  override check = (run: Readonly<SimRun>) => run.model.holds.length > 0;
  protected async apply(run: SimRun): Promise<void> {
    const h = holdAt(run, this.hold)!;
    const userId = this.byOwner ? h.userId : USERS.find((u) => u !== h.userId)!;
    const want = this.action === "purchase" ? run.model.purchaseOutcome(h, userId) : run.model.cancelOutcome(h, userId);
    const got = await run.sys.request("POST", `/api/allocations/${h.allocationId}/${this.action}`, { userId });
    expectAnswer(`${this.action} ${h.allocationId} (${h.status}${h.due ? ", due" : ""}) as ${userId}`, got, want);
    if (want.status === 200) {
      if (this.action === "purchase") run.model.purchase(h);
      else run.model.cancel(h);
      same(`${this.action} view status`, got.body.status, h.status);
    }
    await checkStock(run, h.stockId);
  }
}

/** The clock passes one held hold's deadline (see system.ts: its deadline moves, not the clock). */
class PassDeadline extends SimCommand {
  constructor(readonly hold: number) {
    super();
  }
  toString = () => `deadlinePasses(held#${this.hold})`;
  override check = (run: Readonly<SimRun>) => run.model.holds.some((h) => h.status === "held" && !h.due);
  protected async apply(run: SimRun): Promise<void> {
    const h = pick(run.model.holds.filter((x) => x.status === "held" && !x.due), this.hold);
    await run.sys.passDeadline(h.allocationId, h.stockId);
    h.due = true;
    run.model.dueOrder.push(h.allocationId);
  }
}

class RunExpirer extends SimCommand {
  toString = () => "expirer()";
  protected async apply(run: SimRun): Promise<void> {
    const due = run.model.dueHolds();
    // The sweep also releases what earlier (failed, shrunk) runs left due: its count is not ours to
    // compare, the fate of this run's holds is.
    const released = await run.sys.expire();
    run.model.expireDue(run.model.dueOrder);
    if (released < due.length) throw new SimMismatch(`the expirer released ${released} holds, this run alone had ${due.length} due`);
    for (const h of due) {
      const got = await run.sys.request("GET", `/api/allocations/${h.allocationId}`, { userId: h.userId });
      same(`hold ${h.allocationId} after the expirer`, got.body.status, h.status);
    }
    for (const stockId of new Set(due.map((h) => h.stockId))) await checkStock(run, stockId);
  }
}

class EndSale extends SimCommand {
  constructor(readonly stock: number) {
    super();
  }
  toString = () => `endSale(stock#${this.stock})`;
  protected async apply(run: SimRun): Promise<void> {
    const s = pick(run.model.stocks, this.stock);
    await run.sys.endSale(s.id);
    s.ended = true;
    await checkStock(run, s.id);
  }
}

class RestartApi extends SimCommand {
  toString = () => "restartApi()";
  override check = () => true;
  protected async apply(run: SimRun): Promise<void> {
    await run.sys.restartApi();
  }
}

class KillRelay extends SimCommand {
  toString = () => "kill -9 relay, start another";
  override check = () => true;
  protected async apply(run: SimRun): Promise<void> {
    await run.sys.killRelay();
  }
}

const keyChoice: fc.Arbitrary<KeyChoice> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ kind: "none" as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: "new" as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("replay" as const), n: fc.nat(20), sameQuantity: fc.boolean() }) },
);

/** The operations and how often each comes up (weights: allocations dominate, as in a sale). */
export const simCommands: fc.WeightedArbitrary<Cmd>[] = [
  { weight: 2, arbitrary: fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 })).map(([q, l]) => new CreateStock(q, l)) },
  {
    weight: 12,
    arbitrary: fc.tuple(fc.nat(MAX_STOCKS), fc.nat(USERS.length), fc.integer({ min: 1, max: 3 }), keyChoice).map(([s, u, q, k]) => new Allocate(s, u, q, k)),
  },
  { weight: 2, arbitrary: fc.tuple(fc.nat(MAX_STOCKS), fc.nat(USERS.length), fc.integer({ min: 1, max: 2 })).map(([s, u, q]) => new Allocate(s, u, q, { kind: "new" }, true)) },
  { weight: 6, arbitrary: fc.tuple(fc.nat(50), fc.boolean(), fc.nat(3)).map(([h, purchase, other]) => new ChangeHold(purchase ? "purchase" : "cancel", h, other !== 0)) },
  { weight: 2, arbitrary: fc.nat(20).map((h) => new PassDeadline(h)) },
  { weight: 2, arbitrary: fc.constant(new RunExpirer()) },
  { weight: 1, arbitrary: fc.nat(MAX_STOCKS).map((s) => new EndSale(s)) },
  { weight: 1, arbitrary: fc.constant(new RestartApi()) },
];

/** Rarer, each costs a process start (weighed against the whole list above in run.ts). */
export const relayKill: fc.Arbitrary<Cmd> = fc.constant(new KillRelay());
