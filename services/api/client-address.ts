/**
 * Client addresses as the rate limits see them (docs/design.md §12).
 *
 * One client, one key: an IPv4 address is one host, but an IPv6 host gets a whole /64 from its
 * provider (RFC 6177; SLAAC and privacy addresses pick the low 64 bits at will), so keying on the
 * full IPv6 address gives one client 2^64 fresh buckets. IPv6 is keyed on its /64; IPv4, and IPv4
 * reached over a dual-stack socket (IPv4-mapped `::ffff:a.b.c.d`), on the full address.
 */

/** IPv4 a.b.c.d → 32-bit number, or null. */
export function ipv4(ip: string): number | null {
  const parts = ip.split(".");
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    const v = Number(p);
    if (!/^\d{1,3}$/.test(p) || v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

/**
 * An IPv6 address as its eight 16-bit groups, or null when it is not one. Accepts `::` compression,
 * a trailing dotted IPv4 (`::ffff:1.2.3.4`), a zone (`fe80::1%eth0`, dropped) and brackets.
 */
export function ipv6Groups(raw: string): number[] | null {
  let ip = raw.startsWith("[") && raw.endsWith("]") ? raw.slice(1, -1) : raw;
  const zone = ip.indexOf("%");
  if (zone >= 0) ip = ip.slice(0, zone);
  if (!ip.includes(":")) return null;
  const halves = ip.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string): number[] | null => {
    if (part === "") return [];
    const groups: number[] = [];
    const fields = part.split(":");
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i]!;
      if (i === fields.length - 1 && field.includes(".")) {
        const v4 = ipv4(field);
        if (v4 === null) return null;
        groups.push(v4 >>> 16, v4 & 0xffff);
      } else if (/^[0-9a-f]{1,4}$/i.test(field)) {
        groups.push(parseInt(field, 16));
      } else {
        return null;
      }
    }
    return groups;
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return null;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:0:0/96), or null. */
function mappedIpv4(groups: number[]): string | null {
  if (groups.slice(0, 5).some((g) => g !== 0) || groups[5] !== 0xffff) return null;
  const [hi, lo] = [groups[6]!, groups[7]!];
  return `${hi >>> 8}.${hi & 0xff}.${lo >>> 8}.${lo & 0xff}`;
}

/**
 * The address with an IPv4-mapped IPv6 form turned into its IPv4 (Bun reports IPv4 peers of a
 * dual-stack socket as `::ffff:a.b.c.d`); anything else unchanged.
 */
export function plainAddress(ip: string): string {
  if (!ip.includes(":")) return ip;
  const groups = ipv6Groups(ip);
  return (groups && mappedIpv4(groups)) ?? ip;
}

/**
 * The rate-limit key of a client address: IPv4 (plain or mapped) as itself, IPv6 as its /64 in one
 * canonical spelling (`2001:db8:1:2::/64`), so every spelling of one prefix shares a bucket. A string
 * that is neither (a proxy's odd X-Forwarded-For entry) is its own key.
 */
export function rateLimitKey(ip: string): string {
  if (!ip.includes(":")) return ip;
  const groups = ipv6Groups(ip);
  if (groups === null) return ip;
  const mapped = mappedIpv4(groups);
  if (mapped !== null) return mapped;
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`;
}
