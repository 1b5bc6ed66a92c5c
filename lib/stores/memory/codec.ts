/*
 * How the memory store packs a session's values: ids and hashes as the 16 bytes their base64url
 * text stands for (the plugin's session ids and refresh-token hashes are 128 bits), IPv4 addresses as one 32-bit integer, claims as their JSON text. Every
 * packing is exact: a value is packed only when unpacking gives back the very same string, and
 * any other value is kept as it came.
 */

/**
 * 22 base64url characters whose last one carries no bits beyond the 128 (its low 4 bits are 0):
 * the text `Buffer#toString('base64url')` makes of 16 bytes, and nothing else decodes to them.
 */
const CANONICAL_16_BYTES = /^[\w-]{21}[AQgw]$/

/** Bytes of a packed id or hash. */
export const PACKED_BYTES = 16

/** Whether `text` is an id or hash that packs into `PACKED_BYTES` and unpacks to itself. */
export function isPackable (text: string): boolean {
  return text.length === 22 && CANONICAL_16_BYTES.test(text)
}

/**
 * `ip` as a 32-bit integer when it is an IPv4 address written as `formatIp` writes it (four
 * decimal octets, no leading zeros), else `ip` itself. The integer is signed so V8 keeps it
 * unboxed (a small integer) in an array.
 */
export function packIp (ip: string | null): string | number | null {
  if (ip === null || ip.length < 7 || ip.length > 15) return ip
  let packed = 0
  let octet = 0
  let digits = 0
  let dots = 0
  for (let i = 0; i < ip.length; i++) {
    const code = ip.charCodeAt(i)
    if (code === 46 && digits > 0 && dots < 3) { // '.'
      packed = packed * 256 + octet
      octet = 0
      digits = 0
      dots++
    } else if (code >= 48 && code <= 57 && !(digits > 0 && octet === 0)) { // a digit, not after a leading 0
      octet = octet * 10 + code - 48
      digits++
      if (octet > 255) return ip
    } else {
      return ip
    }
  }
  return dots === 3 && digits > 0 ? (packed * 256 + octet) | 0 : ip
}

export function unpackIp (ip: string | number | null): string | null {
  return typeof ip === 'number' ? `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}` : ip
}

/** Claims `{}`, the most common, held once by every session that has them. */
const EMPTY_CLAIMS = '{}'

/** Claims as the JSON text a serialising store would hold. */
export function packClaims (claims: Record<string, unknown>): string {
  const json = JSON.stringify(claims)
  return json === EMPTY_CLAIMS ? EMPTY_CLAIMS : json
}

/** A new object every time, so no caller can change what the store holds. */
export function unpackClaims (json: string): Record<string, unknown> {
  return json === EMPTY_CLAIMS ? {} : JSON.parse(json)
}

/**
 * A 32-bit hash of `text` (FNV-1a, then murmur3's finaliser so the low bits, which pick the
 * bucket, depend on every character), keyed by `seed` so no one can choose colliding user ids.
 */
export function stringHash (text: string, seed: number): number {
  let hash = seed ^ 0x811c9dc5
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193)
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b)
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35)
  return hash ^ (hash >>> 16)
}
