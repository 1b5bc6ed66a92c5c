import type { Authentication, SessionRecord } from '../types.js'
import { isPackable, PACKED_BYTES, packIp, stringHash, unpackClaims, unpackIp } from './codec.js'
import { NONE } from './slot-index.js'

/*
 * Every session of a MemoryStore lives in one slot of a slab: a struct of arrays, one row per
 * slot in each, so a session costs no object of its own. Freed slots are reused (a free list),
 * and the slab doubles when full, never past its maximum.
 *   flags    one byte: the bits below
 *   rows     96 bytes, the fixed-size values together (one look-up touches at most two cache lines):
 *            numbers  6 doubles: the times (rotatedAt null as NaN) and graceUses, exact whatever they are
 *            words    id, tokenHash and previousTokenHash, 16 bytes each, when packable
 *                     (see codec.ts); a value that is not is kept as a string in `#spill` instead
 *   refs     userId, userAgent, ip (an integer for IPv4, see codec.ts), claims (JSON), and the
 *            first client's userAgent and ip: the very same string or integer while the client
 *            has not moved, so one that never moves costs two references and no string
 *   order    insertion order, oldest first: a doubly-linked list through `#older`/`#newer`
 *   extras   what only some sessions have, by slot, in a Map (flag EXTRAS says whether a slot has
 *            an entry): an authentication other than `{ time: createdAt }`, a claimsVersion above
 *            0. The common session (authenticated when created, claims never updated) costs
 *            nothing for them (docs/design.md, «Session policy»). The first client is not one:
 *            a client that moves (a phone changing networks) is common, and a Map entry made on
 *            a refresh costs more than the rotation itself.
 */

/** A slot's flag bits. */
const FLAG = { LIVE: 1, ID_SPILLED: 2, TOKEN_SPILLED: 4, PREVIOUS_SPILLED: 8, HAS_PREVIOUS: 16, EXTRAS: 32 } as const

export const CREATED_AT = 0
export const LAST_USED_AT = 1
export const EXPIRES_AT = 2
export const ABSOLUTE_EXPIRES_AT = 3
const ROTATED_AT = 4
export const GRACE_USES = 5
/** A slot's row: its 6 numbers (48 bytes), then its id and hashes (48). */
const ROW_BYTES = 96
const NUMBERS = ROW_BYTES / 8

const USER_ID = 0
const USER_AGENT = 1
const IP = 2
const CLAIMS = 3
const FIRST_USER_AGENT = 4
const FIRST_IP = 5
const REFS = 6

/** Where each value starts in a slot's row, in 32-bit words (after the numbers), 4 words each. */
const ID = 12
export const TOKEN = 16
export const PREVIOUS = 20
const WORDS = ROW_BYTES / 4
export type HashField = typeof TOKEN | typeof PREVIOUS
type Field = typeof ID | HashField

/** A session's uncommon values (see the header); an absent member has its common value. */
interface Extras {
  /** When not `{ time: createdAt }`. */
  authentication?: Authentication
  claimsVersion?: number
}

/** A copy of `authentication` that holds no optional member it lacks (never `acr: undefined`). */
function copyAuthentication ({ time, acr, amr }: Authentication): Authentication {
  const copy: Authentication = { time }
  if (acr !== undefined) copy.acr = acr
  if (amr !== undefined) copy.amr = [...amr]
  return copy
}

function spilled (field: Field): number {
  return field === ID ? FLAG.ID_SPILLED : field === TOKEN ? FLAG.TOKEN_SPILLED : FLAG.PREVIOUS_SPILLED
}

export class SessionSlab {
  /** Slots the arrays hold; `top` of them have been used. */
  capacity = 0
  top = 0
  /** Live sessions. */
  size = 0
  oldest = NONE
  #newest = NONE
  /** Freed slots, linked through `#newer`. */
  #free = NONE
  readonly #maxCapacity: number
  #flags = new Uint8Array(0)
  #numbers = new Float64Array(0)
  #words = new Int32Array(0)
  #bytes = Buffer.alloc(0)
  #refs: Array<string | number | null> = []
  #older = new Int32Array(0)
  #newer = new Int32Array(0)
  /** Ids and hashes that are not packable, by `slot * WORDS + field`. */
  readonly #spill = new Map<number, string>()
  /** The uncommon values of the slots flagged EXTRAS. */
  readonly #extras = new Map<number, Extras>()
  /** The id or hash last prepared for comparison, decoded when `#scratchPacked`. */
  readonly #scratch = new Int32Array(PACKED_BYTES / 4)
  readonly #scratchBytes = Buffer.from(this.#scratch.buffer)
  #scratchPacked = false
  readonly #seed: number

  constructor (initialCapacity: number, maxCapacity: number, seed: number) {
    this.#maxCapacity = maxCapacity
    this.#seed = seed
    this.#resize(Math.min(initialCapacity, maxCapacity))
  }

  get full (): boolean {
    return this.#free === NONE && this.top === this.capacity
  }

  /** Doubles the capacity (up to the maximum): the caller rebuilds its indexes. */
  grow (): void {
    this.#resize(Math.min(this.capacity * 2, this.#maxCapacity))
  }

  #resize (capacity: number): void {
    const grown = <T extends Uint8Array | Int32Array | Float64Array>(array: T, Make: new (length: number) => T, width: number): T => {
      const next = new Make(capacity * width)
      next.set(array)
      return next
    }
    this.#flags = grown(this.#flags, Uint8Array, 1)
    // One buffer of rows, seen as doubles (`#numbers`), 32-bit words and bytes.
    this.#words = grown(this.#words, Int32Array, WORDS)
    this.#numbers = new Float64Array(this.#words.buffer)
    this.#bytes = Buffer.from(this.#words.buffer)
    this.#older = grown(this.#older, Int32Array, 1)
    this.#newer = grown(this.#newer, Int32Array, 1)
    // Sized exactly (a growing array would keep up to half its length spare), never holey.
    const refs = new Array<string | number | null>(capacity * REFS).fill(null)
    for (let i = 0; i < this.#refs.length; i++) refs[i] = this.#refs[i] as string | number | null
    this.#refs = refs
    this.capacity = capacity
  }

  /** A free slot (the slab must not be full), now the newest. */
  take (): number {
    let slot = this.#free
    if (slot === NONE) slot = this.top++
    else this.#free = this.#newer[slot] as number
    this.#older[slot] = this.#newest
    this.#newer[slot] = NONE
    if (this.#newest === NONE) this.oldest = slot
    else this.#newer[this.#newest] = slot
    this.#newest = slot
    this.#flags[slot] = FLAG.LIVE
    this.size++
    return slot
  }

  release (slot: number): void {
    const older = this.#older[slot] as number
    const newer = this.#newer[slot] as number
    if (older === NONE) this.oldest = newer
    else this.#newer[older] = newer
    if (newer === NONE) this.#newest = older
    else this.#older[newer] = older
    for (const field of [ID, TOKEN, PREVIOUS]) this.#spill.delete(slot * WORDS + field)
    this.#extras.delete(slot)
    this.#refs.fill(null, slot * REFS, slot * REFS + REFS)
    this.#flags[slot] = 0
    this.#newer[slot] = this.#free
    this.#free = slot
    this.size--
  }

  isLive (slot: number): boolean {
    return this.#has(slot, FLAG.LIVE)
  }

  /** The slot after `slot` in insertion order, or NONE. */
  newer (slot: number): number {
    return this.#newer[slot] as number
  }

  /** Fills a taken slot; `userId` and `claims` (JSON) may be strings another slot holds already. */
  write (slot: number, session: SessionRecord, userId: string, claims: string): void {
    const row = slot * NUMBERS
    this.#numbers[row + CREATED_AT] = session.createdAt
    this.#numbers[row + LAST_USED_AT] = session.lastUsedAt
    this.#numbers[row + EXPIRES_AT] = session.expiresAt
    this.#numbers[row + ABSOLUTE_EXPIRES_AT] = session.absoluteExpiresAt
    this.#numbers[row + ROTATED_AT] = session.rotatedAt ?? NaN
    this.#numbers[row + GRACE_USES] = session.graceUses
    this.#setPacked(slot, ID, session.id)
    this.setHash(slot, TOKEN, session.tokenHash)
    this.setHash(slot, PREVIOUS, session.previousTokenHash)
    const refs = slot * REFS
    const ip = packIp(session.ip)
    this.#refs[refs + USER_ID] = userId
    this.#refs[refs + USER_AGENT] = session.userAgent
    this.#refs[refs + IP] = ip
    // An equal first User-Agent is held as the same string.
    this.#refs[refs + FIRST_USER_AGENT] = session.firstUserAgent === session.userAgent ? session.userAgent : session.firstUserAgent
    this.#refs[refs + FIRST_IP] = session.firstIp === session.ip ? ip : packIp(session.firstIp)
    this.setClaims(slot, claims)
    const extras: Extras = {}
    if (!this.#isPlain(slot, session.authentication)) extras.authentication = copyAuthentication(session.authentication)
    if (session.claimsVersion !== 0) extras.claimsVersion = session.claimsVersion
    this.#setExtras(slot, extras)
  }

  /** A new record of the session in `slot`, given its id and current hash when the caller has them. */
  read (slot: number, id = this.id(slot), tokenHash = this.#unpack(slot, TOKEN)): SessionRecord {
    const row = slot * NUMBERS
    const refs = slot * REFS
    const userAgent = this.#refs[refs + USER_AGENT] as string | null
    const packedIp = this.#refs[refs + IP] as string | number | null
    const ip = unpackIp(packedIp)
    const firstIp = this.#refs[refs + FIRST_IP] as string | number | null
    const extras = this.#extrasOf(slot)
    return {
      id,
      userId: this.userId(slot),
      claims: unpackClaims(this.claims(slot)),
      createdAt: this.#numbers[row + CREATED_AT] as number,
      lastUsedAt: this.#numbers[row + LAST_USED_AT] as number,
      expiresAt: this.#numbers[row + EXPIRES_AT] as number,
      absoluteExpiresAt: this.#numbers[row + ABSOLUTE_EXPIRES_AT] as number,
      tokenHash,
      previousTokenHash: this.hash(slot, PREVIOUS),
      rotatedAt: this.rotatedAt(slot),
      graceUses: this.#numbers[row + GRACE_USES] as number,
      userAgent,
      ip,
      firstUserAgent: this.#refs[refs + FIRST_USER_AGENT] as string | null,
      firstIp: firstIp === packedIp ? ip : unpackIp(firstIp),
      authentication: extras?.authentication === undefined
        ? { time: this.#numbers[row + CREATED_AT] as number }
        : copyAuthentication(extras.authentication),
      claimsVersion: this.claimsVersion(slot)
    }
  }

  number (slot: number, field: number): number {
    return this.#numbers[slot * NUMBERS + field] as number
  }

  setNumber (slot: number, field: number, value: number): void {
    this.#numbers[slot * NUMBERS + field] = value
  }

  rotatedAt (slot: number): number | null {
    const rotatedAt = this.#numbers[slot * NUMBERS + ROTATED_AT] as number
    return Number.isNaN(rotatedAt) ? null : rotatedAt
  }

  setRotatedAt (slot: number, value: number): void {
    this.#numbers[slot * NUMBERS + ROTATED_AT] = value
  }

  id (slot: number): string {
    return this.#unpack(slot, ID)
  }

  userId (slot: number): string {
    return this.#refs[slot * REFS + USER_ID] as string
  }

  claims (slot: number): string {
    return this.#refs[slot * REFS + CLAIMS] as string
  }

  setClaims (slot: number, claims: string): void {
    this.#refs[slot * REFS + CLAIMS] = claims
  }

  /** The latest client (the first one stays as it is). */
  setClient (slot: number, userAgent: string | null, ip: string | null): void {
    const refs = slot * REFS
    // An equal User-Agent keeps the string held already (maybe the first client's too).
    if (this.#refs[refs + USER_AGENT] !== userAgent) this.#refs[refs + USER_AGENT] = userAgent
    this.#refs[refs + IP] = packIp(ip)
  }

  /** Replaces the authentication; `{ time: createdAt }` is held as no extra at all. */
  setAuthentication (slot: number, authentication: Authentication): void {
    const extras = { ...this.#extrasOf(slot) }
    if (this.#isPlain(slot, authentication)) delete extras.authentication
    else extras.authentication = copyAuthentication(authentication)
    this.#setExtras(slot, extras)
  }

  /** Whether `authentication` is the common one: at the session's creation, no acr or amr. */
  #isPlain (slot: number, { time, acr, amr }: Authentication): boolean {
    return time === this.#numbers[slot * NUMBERS + CREATED_AT] && acr === undefined && amr === undefined
  }

  claimsVersion (slot: number): number {
    return this.#extrasOf(slot)?.claimsVersion ?? 0
  }

  setClaimsVersion (slot: number, claimsVersion: number): void {
    this.#setExtras(slot, { ...this.#extrasOf(slot), claimsVersion })
  }

  #extrasOf (slot: number): Extras | undefined {
    return this.#has(slot, FLAG.EXTRAS) ? this.#extras.get(slot) : undefined
  }

  /** Holds `extras` for `slot`, or nothing when every member has its common value. */
  #setExtras (slot: number, extras: Extras): void {
    const common = extras.authentication === undefined && extras.claimsVersion === undefined
    this.#flag(slot, FLAG.EXTRAS, !common)
    if (common) this.#extras.delete(slot)
    else this.#extras.set(slot, extras)
  }

  hash (slot: number, field: HashField): string | null {
    return field === PREVIOUS && !this.#has(slot, FLAG.HAS_PREVIOUS) ? null : this.#unpack(slot, field)
  }

  setHash (slot: number, field: HashField, hash: string | null): void {
    if (field === PREVIOUS) this.#flag(slot, FLAG.HAS_PREVIOUS, hash !== null)
    if (hash !== null) this.#setPacked(slot, field, hash)
  }

  /** `previousTokenHash = tokenHash`, without decoding and encoding it again. */
  promoteToken (slot: number): void {
    if (this.#has(slot, FLAG.PREVIOUS_SPILLED)) this.#spill.delete(slot * WORDS + PREVIOUS)
    this.#flag(slot, FLAG.HAS_PREVIOUS, true)
    const spilled = this.#has(slot, FLAG.TOKEN_SPILLED)
    this.#flag(slot, FLAG.PREVIOUS_SPILLED, spilled)
    if (spilled) {
      this.#spill.set(slot * WORDS + PREVIOUS, this.#spill.get(slot * WORDS + TOKEN) as string)
    } else {
      this.#words.copyWithin(slot * WORDS + PREVIOUS, slot * WORDS + TOKEN, slot * WORDS + PREVIOUS)
    }
  }

  /** The hash of `id` in the id index, and prepares `idIs(…, id)`. */
  prepareId (id: string): number {
    this.#prepare(id)
    // Packable ids are random bytes: their first word is as good a hash as any.
    return this.#scratchPacked ? this.#scratch[0] as number : stringHash(id, this.#seed)
  }

  /** The hash `prepareId` gives the id of `slot`. */
  idHash (slot: number): number {
    return this.#has(slot, FLAG.ID_SPILLED) ? stringHash(this.id(slot), this.#seed) : this.#words[slot * WORDS + ID] as number
  }

  /** Whether `slot`'s id is `id`, just given to `prepareId`. */
  idIs (slot: number, id: string): boolean {
    return this.#equals(slot, ID, id)
  }

  /** Prepares the `hashIs(…, hash)` calls that follow. */
  prepareHash (hash: string): void {
    this.#prepare(hash)
  }

  /** Whether `slot`'s `field` is `hash`, just given to `prepareHash`. */
  hashIs (slot: number, field: HashField, hash: string): boolean {
    return (field === TOKEN || this.#has(slot, FLAG.HAS_PREVIOUS)) && this.#equals(slot, field, hash)
  }

  #prepare (text: string): void {
    this.#scratchPacked = isPackable(text)
    if (this.#scratchPacked) this.#scratchBytes.write(text, 0, PACKED_BYTES, 'base64url')
  }

  #equals (slot: number, field: Field, text: string): boolean {
    if (this.#has(slot, spilled(field))) return this.#spill.get(slot * WORDS + field) === text
    // A packed value is packable text: a text that is not cannot equal it.
    if (!this.#scratchPacked) return false
    const start = slot * WORDS + field
    for (let i = 0; i < PACKED_BYTES / 4; i++) if (this.#words[start + i] !== this.#scratch[i]) return false
    return true
  }

  #setPacked (slot: number, field: Field, text: string): void {
    const packable = isPackable(text)
    if (this.#has(slot, spilled(field))) this.#spill.delete(slot * WORDS + field)
    this.#flag(slot, spilled(field), !packable)
    if (packable) {
      this.#bytes.write(text, (slot * WORDS + field) * 4, PACKED_BYTES, 'base64url')
    } else {
      this.#spill.set(slot * WORDS + field, text)
    }
  }

  #unpack (slot: number, field: Field): string {
    if (this.#has(slot, spilled(field))) return this.#spill.get(slot * WORDS + field) as string
    const start = (slot * WORDS + field) * 4
    return this.#bytes.toString('base64url', start, start + PACKED_BYTES)
  }

  #has (slot: number, flag: number): boolean {
    return ((this.#flags[slot] as number) & flag) !== 0
  }

  #flag (slot: number, flag: number, on: boolean): void {
    this.#flags[slot] = on ? (this.#flags[slot] as number) | flag : (this.#flags[slot] as number) & ~flag
  }
}
