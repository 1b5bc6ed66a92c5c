/*
 * The packed record (recordFormat 'packed', the default): a binary string about 40% smaller
 * than the JSON array of record.ts, which Redis stores byte for byte (its strings are binary-safe).
 * Layout, integers big-endian:
 *   2 bytes  flags (the word below). Its first byte never is `[` (0x5B), the first byte of a JSON
 *            record: its two low bits (the ip's form) are never both set.
 *   1 byte   the policy flags (X_*, below): which of the policy fields at the end are stored
 *   6 bytes  createdAt as an unsigned integer if F_INT (an integer in [0, 2^48), as ms times
 *            are), else 8 bytes, an IEEE double (any number the contract allows round-trips)
 *   time     lastUsedAt, if LAST_USED is STORED or OFFSET (else it is rotatedAt or createdAt)
 *   time     expiresAt, if EXPIRES is STORED or OFFSET (else it is absoluteExpiresAt)
 *   time     absoluteExpiresAt (OFFSET if F_ABSOLUTE_OFFSET)
 *   time     rotatedAt, if ROTATED is not NONE
 *   count    graceUses, unless F_NO_GRACE (it is 0)
 *   hash     tokenHash: 16 raw bytes if F_TOKEN_RAW (the hash is canonical base64url of 16 bytes,
 *            as every hash the plugin makes is: 128 bits of an HMAC; so it round-trips
 *            exactly), else text (the whole SHA-256 of versions up to 0.1, say)
 *   hash     previousTokenHash, unless PREVIOUS is NONE (RAW or TEXT, as tokenHash)
 *   id       session id, unless ID is NONE: in an entry of a user's bucket (bucket.ts); a record of
 *            its own has none, its key names it. RAW: the 16 bytes that an id from `sessionIdFor`
 *            holds after the bucket's tag, as canonical base64url (keys.ts); else TEXT
 *   text     userId
 *   text     claims: their JSON text (an object's: starting with `{`) without its outer braces;
 *            never parsed in Lua
 *   -- the policy part (docs/design.md, «Session policy»); a field left out has its common value --
 *   time     authentication.time, unless AUTH_TIME is CREATED (it is createdAt)
 *   text     authentication.acr, if X_ACR
 *   text     authentication.amr as its JSON text, if X_AMR (acr and amr: the "auth extra", which
 *            the scripts keep or replace whole, never parse)
 *   count    claimsVersion, if X_VERSION (else 0)
 *   text     the first client, as a client part (below), if X_FIRST: stored only once it differs
 *            from the current one (else it is the current one)
 *   -- the client part, replaced whole by a rotation (Node encodes it: `encodeClient`) --
 *   text     userAgent, if C_AGENT
 *   ip       4 bytes if IP is V4 (canonical dotted quads only, so it round-trips), text if TEXT
 * A `time` is a 4-byte unsigned offset from createdAt if its mode says OFFSET (only with F_INT,
 * for an integer offset below 2^32 that gives the time back exactly), else an 8-byte double.
 * `count` and text lengths: one byte below 255, else 255 and 4 bytes. Text is UTF-8.
 * The flags word: bits 0-1 LAST_USED (0 STORED, 1 OFFSET, 2 ROTATED, 3 CREATED); bits 2-3
 * EXPIRES (0 STORED, 1 OFFSET, 2 ABSOLUTE); bit 4 F_ABSOLUTE_OFFSET; bit 5 F_INT; bit 6
 * F_TOKEN_RAW; bit 7 F_NO_GRACE; bits 8-10 the client flags (`encodeClient`: bits 0-1 IP, 0 NONE,
 * 1 TEXT, 2 V4; bit 2 C_AGENT); bits 11-15 ROTATED + 3 × PREVIOUS + 9 × ID (ROTATED: 0 NONE,
 * 1 OFFSET, 2 STORED; PREVIOUS and ID: 0 NONE, 1 RAW, 2 TEXT).
 * The policy flags: bits 0-1 AUTH_TIME (0 CREATED, 1 OFFSET, 2 STORED); bit 2 X_ACR; bit 3 X_AMR;
 * bit 4 X_VERSION; bit 5 X_FIRST. The common session (its first client the current one,
 * authenticated at createdAt without acr or amr, version 0) costs that one byte.
 * Node reads and writes it in packed.ts; the Lua scripts in packed-lua.ts (`LUA_PACKED`), keeping
 * what they do not change. Both take the constants below from here.
 */

export const LAST_USED_OFFSET = 1
export const LAST_USED_ROTATED = 2
export const LAST_USED_CREATED = 3
export const EXPIRES_OFFSET = 1
export const EXPIRES_ABSOLUTE = 2
export const F_ABSOLUTE_OFFSET = 16
export const F_INT = 32
export const F_TOKEN_RAW = 64
export const F_NO_GRACE = 128
export const CLIENT_SHIFT = 256
export const MIXED_SHIFT = 2048
export const IP_TEXT = 1
export const IP_V4 = 2
export const C_AGENT = 4
export const AUTH_TIME_OFFSET = 1
export const AUTH_TIME_STORED = 2
export const X_ACR = 4
export const X_AMR = 8
export const X_VERSION = 16
export const X_FIRST = 32
/** The three-state fields of bits 11-15: NONE, then OFFSET or RAW, then STORED or TEXT. */
export const NONE = 0
export const FIRST = 1
export const SECOND = 2

/** Bytes of a hash in its RAW form (refresh-tokens.ts, docs/design.md «Hashed at rest»). */
export const RAW_HASH_BYTES = 16
/** Largest count or text length the 4-byte form holds. */
export const MAX_LENGTH = 0xFFFFFFFF
/** createdAt below this is stored in 6 bytes; offsets below 2^32 in 4. */
export const MAX_INT = 2 ** 48
export const MAX_OFFSET = 2 ** 32
