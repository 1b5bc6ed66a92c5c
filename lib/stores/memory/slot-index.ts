/** "No slot": the end of a chain, an empty bucket. */
export const NONE = -1

/**
 * A hash index over slab slots, for keys the slab holds (the index stores no keys, only slot
 * numbers: 12 bytes or less per slot): a power-of-two table of buckets, each the first slot of a
 * doubly-linked chain of the slots whose key hash falls in it, so adding and removing are O(1)
 * and a look-up walks one short chain. The caller hashes keys and compares them.
 */
export class SlotIndex {
  #buckets = new Int32Array(0)
  #next = new Int32Array(0)
  #previous = new Int32Array(0)
  #mask = 0

  constructor (capacity: number) {
    this.resize(capacity)
  }

  /** Empties the index and makes room for slots below `capacity`, with at least as many buckets. */
  resize (capacity: number): void {
    let buckets = 1
    while (buckets < capacity) buckets *= 2
    this.#buckets = new Int32Array(buckets).fill(NONE)
    this.#next = new Int32Array(capacity)
    this.#previous = new Int32Array(capacity)
    this.#mask = buckets - 1
  }

  /** Adds `slot` first in its bucket's chain: a chain lists its slots newest first. */
  add (slot: number, hash: number): void {
    const bucket = hash & this.#mask
    const head = this.#buckets[bucket] as number
    this.#next[slot] = head
    this.#previous[slot] = NONE
    if (head !== NONE) this.#previous[head] = slot
    this.#buckets[bucket] = slot
  }

  /** Removes `slot`, added with `hash`. */
  remove (slot: number, hash: number): void {
    const previous = this.#previous[slot] as number
    const next = this.#next[slot] as number
    if (previous === NONE) this.#buckets[hash & this.#mask] = next
    else this.#next[previous] = next
    if (next !== NONE) this.#previous[next] = previous
  }

  /** The first slot of the chain `hash` falls in, or NONE. */
  first (hash: number): number {
    return this.#buckets[hash & this.#mask] as number
  }

  /** The slot after `slot` in its chain, or NONE. */
  next (slot: number): number {
    return this.#next[slot] as number
  }
}
