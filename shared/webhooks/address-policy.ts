/**
 * Where a webhook may go (SSRF, docs/webhooks.md "Security"). An admin registers a URL and the
 * notifier POSTs events to it and keeps an excerpt of the answer: without a rule, that is a way to
 * reach the inside (a loopback admin port, 169.254.169.254 cloud metadata, an internal host name).
 *
 * Refused: loopback, link-local, private, unique-local, unspecified, multicast, broadcast and the
 * other non-global IPv4 ranges, and the IPv6 forms that carry an IPv4 address (mapped ::ffff:0:0/96,
 * compatible ::/96, NAT64 64:ff9b::/96) when that address is refused. A host name is refused when
 * any address it resolves to is. The api checks at registration; the notifier checks the address it
 * is about to connect to at every attempt and connects to that very address (DNS rebinding).
 * `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` lifts the rule (local development and tests).
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";

/** IPv4 ranges no webhook may reach: [network, prefix length, why]. */
const REFUSED_V4: readonly [string, number, string][] = [
  ["0.0.0.0", 8, "unspecified"],
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "shared address space"],
  ["127.0.0.0", 8, "loopback"],
  ["169.254.0.0", 16, "link-local"],
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "IETF protocol assignments"],
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "benchmarking"],
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved or broadcast"],
];

/** IPv6 ranges refused outright: [first 16-bit groups to match, prefix length, why]. */
const REFUSED_V6: readonly [bigint, number, string][] = [
  [0xfe80n << 112n, 10, "link-local"],
  [0xfec0n << 112n, 10, "site-local"],
  [0xfc00n << 112n, 7, "unique local (private)"],
  [0xff00n << 112n, 8, "multicast"],
];

const v4ToInt = (ip: string): number => ip.split(".").reduce((n, part) => n * 256 + Number(part), 0);

function refusedV4(ip: string): string | null {
  const n = v4ToInt(ip);
  for (const [net, bits, why] of REFUSED_V4) {
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    if (((n & mask) >>> 0) === ((v4ToInt(net) & mask) >>> 0)) return why;
  }
  return null;
}

/** An IPv6 address as a 128-bit number (handles "::" and a trailing dotted IPv4; zone ids are cut). */
function v6ToBigInt(ip: string): bigint {
  let text = ip.replace(/%.*$/, "").toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const n = v4ToInt(dotted[1]!);
    text = `${text.slice(0, -dotted[1]!.length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? (text.split("::") as [string, string]) : [text, null];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === null ? left : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g || "0", 16)), 0n);
}

function refusedV6(ip: string): string | null {
  const n = v6ToBigInt(ip);
  if (n === 0n) return "unspecified";
  if (n === 1n) return "loopback";
  const embedded = (prefix: bigint) => (n >> 32n === prefix ? refusedV4(intToV4(Number(n & 0xffffffffn))) : null);
  // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64): the IPv4 inside decides.
  const inside = embedded(0xffffn) ?? embedded(0n) ?? embedded(0x64ff9bn << 64n);
  if (inside) return `${inside} (IPv4 inside IPv6)`;
  for (const [net, bits, why] of REFUSED_V6) if (n >> BigInt(128 - bits) === net >> BigInt(128 - bits)) return why;
  return null;
}

const intToV4 = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");

/** Why this literal address is refused, or null when a webhook may go there. */
function refusedAddress(ip: string): string | null {
  const bare = ip.replace(/^\[|\]$/g, "");
  const family = isIP(bare.replace(/%.*$/, ""));
  if (family === 4) return refusedV4(bare);
  if (family === 6) return refusedV6(bare);
  return "not an IP address";
}

/** Host name → its addresses (A and AAAA). Injected in tests; the system resolver otherwise. */
export type Resolver = (host: string) => Promise<string[]>;

const systemResolver: Resolver = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

export type UrlCheck =
  | { ok: true; address: string }
  | { ok: false; code: "not_allowed" | "unresolvable"; reason: string };

/**
 * Checks the host of `url`: a literal address directly, a name through `resolve` (every address it
 * returns must be allowed, so a name with one private record among public ones is refused). On
 * success, `address` is the one to connect to. With `allowPrivate`, only resolution is required.
 */
export async function checkWebhookUrl(url: string, options: { allowPrivate: boolean; resolve?: Resolver }): Promise<UrlCheck> {
  const parsed = URL.parse(url);
  if (!parsed) return { ok: false, code: "not_allowed", reason: "not a URL" };
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = await (options.resolve ?? systemResolver)(host);
    } catch (err) {
      return { ok: false, code: "unresolvable", reason: `${host} does not resolve (${(err as { code?: string }).code ?? (err as Error).message})` };
    }
    if (addresses.length === 0) return { ok: false, code: "unresolvable", reason: `${host} has no address` };
  }
  if (!options.allowPrivate) {
    for (const address of addresses) {
      const why = refusedAddress(address);
      if (why) return { ok: false, code: "not_allowed", reason: `${host === address ? address : `${host} resolves to ${address}`}: ${why}` };
    }
  }
  return { ok: true, address: addresses[0]! };
}

/** `url` with its host replaced by `address` (bracketed for IPv6), to connect to the address that was checked. */
export function pinnedUrl(url: string, address: string): string {
  const u = new URL(url);
  u.hostname = isIP(address) === 6 ? `[${address}]` : address;
  return u.toString();
}
