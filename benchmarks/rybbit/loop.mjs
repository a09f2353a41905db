// Rybbit's per-hit excluded-IP check, in Node, for benchmarks/bench_lookup.py.
//
// Written from the behaviour ../shared/RYBBIT.md describes ("How Rybbit itself applies the
// rules"): for every hit, a linear scan over the site's patterns; an entry without "/" or "-"
// is compared with the hit's address as a raw string; a CIDR is checked with the ip-address
// package's subnet test, as IPv4 and, failing that, as IPv6 (parsing the hit and the pattern
// again for each pattern); an IPv4 range "a-b" compares the addresses as integers.
//
// Usage: node loop.mjs INPUT.json, where INPUT holds {"sizes": {"10": [entries]}, "ips":
// [addresses], "rounds": {"10": 3}}; prints {"10": {"ns": per-hit nanoseconds, "hits": count
// excluded, "timed": hits timed}, ...} as JSON.
import { readFileSync } from "node:fs";
import { Address4, Address6 } from "ip-address";

function inSubnet(ip, cidr) {
  try {
    return new Address4(ip).isInSubnet(new Address4(cidr));
  } catch {
    try {
      return new Address6(ip).isInSubnet(new Address6(cidr));
    } catch {
      return false;
    }
  }
}

function v4Integer(text) {
  return new Address4(text).toArray().reduce((value, octet) => value * 256 + octet, 0);
}

function inRange(ip, range) {
  const [first, last] = range.split("-").map((part) => part.trim());
  try {
    const value = v4Integer(ip);
    return value >= v4Integer(first) && value <= v4Integer(last);
  } catch {
    return false;
  }
}

function excluded(ip, patterns) {
  for (const raw of patterns) {
    const pattern = raw.trim();
    if (pattern.includes("/")) {
      if (inSubnet(ip, pattern)) return true;
    } else if (pattern.includes("-")) {
      if (inRange(ip, pattern)) return true;
    } else if (ip === pattern) {
      return true;
    }
  }
  return false;
}

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const answers = {};
for (const [size, patterns] of Object.entries(input.sizes)) {
  // As many hits as keep one round near a tenth of a second at this size.
  const count = Math.max(3, Math.min(input.ips.length, Math.floor(200000 / patterns.length)));
  const ips = input.ips.slice(0, count);
  let best = Infinity;
  let hits = 0;
  for (let round = 0; round < input.rounds[size]; round++) {
    hits = 0;
    const start = process.hrtime.bigint();
    for (const ip of ips) if (excluded(ip, patterns)) hits++;
    best = Math.min(best, Number(process.hrtime.bigint() - start) / ips.length);
  }
  answers[size] = { ns: best, hits, timed: ips.length };
}
console.log(JSON.stringify(answers));
