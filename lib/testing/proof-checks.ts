import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { count, MINUTE } from './fixtures.js'
import type { Check } from './policy-checks.js'

/** Concurrent uses of one proof id in the race check. */
const RACERS = 20
/**
 * Lifetime (ms) of the keys the expiry check waits out, and the time it waits beyond: a store
 * whose backend expires keys itself (Redis `PX`) counts from when the call reached it, so the
 * check waits for real time to pass `expiresAt` as well as passing a later `now`.
 */
const SHORT = 100
const MARGIN = 100

/** A key as the plugin makes them: 22 characters of base64url. */
function proofKey (): string {
  return randomBytes(16).toString('base64url')
}

/**
 * The kit's checks of the DPoP replay cache (`useOnce`, docs/design.md, «Sender-constrained
 * sessions (DPoP)», check 7). The method is optional: each check passes at once on a store
 * without it (which the plugin then refuses to run with `dpop` on).
 */
export function defineProofChecks (check: Check): void {
  check('useOnce (when implemented): a key\'s first use is true, every later one false; another key is independent', async (store) => {
    if (store.useOnce === undefined) return
    const now = Date.now()
    const key = proofKey()
    assert.equal(await store.useOnce(key, now + MINUTE, now), true, 'first use')
    assert.equal(await store.useOnce(key, now + MINUTE, now), false, 'second use')
    assert.equal(await store.useOnce(key, now + 2 * MINUTE, now + 1), false, 'a later call, whatever expiry it asks for')
    const longest = 'A'.repeat(30) + '_-' + proofKey() + 'z'.repeat(10)
    assert.equal(await store.useOnce(longest, now + MINUTE, now), true, 'another key (64 characters, the longest allowed)')
    assert.equal(await store.useOnce(longest, now + MINUTE, now), false)
  })

  check(`useOnce (when implemented): ${RACERS} concurrent uses of one key: exactly one true`, async (store) => {
    if (store.useOnce === undefined) return
    const useOnce = store.useOnce.bind(store)
    const now = Date.now()
    const key = proofKey()
    const results = await Promise.all(Array.from({ length: RACERS }, async () => await useOnce(key, now + MINUTE, now)))
    const tally = count(results.map(String))
    assert.deepEqual(tally, { true: 1, false: RACERS - 1 }, `one true, the rest false; got ${JSON.stringify(tally)}`)
  })

  check('useOnce (when implemented): a key is expired at `now >= expiresAt`: live a ms before, new at it and after it', async (store) => {
    if (store.useOnce === undefined) return
    const now = Date.now()
    // A ms before: on a key that lives a minute, so no backend clock can have ended it meanwhile.
    const live = proofKey()
    assert.equal(await store.useOnce(live, now + MINUTE, now), true)
    assert.equal(await store.useOnce(live, now + 2 * MINUTE, now + MINUTE - 1), false, 'live a ms before its expiresAt')
    const atExpiry = proofKey()
    const later = proofKey()
    const expiresAt = now + SHORT
    assert.equal(await store.useOnce(atExpiry, expiresAt, now), true)
    assert.equal(await store.useOnce(later, expiresAt, now), true)
    await sleep(expiresAt + MARGIN - Date.now())
    assert.equal(await store.useOnce(atExpiry, expiresAt + MINUTE, expiresAt), true, 'expired at its expiresAt: used anew')
    assert.equal(await store.useOnce(atExpiry, expiresAt + MINUTE, expiresAt + 1), false, 'recorded again, until the new expiresAt')
    assert.equal(await store.useOnce(later, expiresAt + 2 * MINUTE, expiresAt + MINUTE), true, 'long expired: new again')
    assert.equal(await store.useOnce(later, expiresAt + 2 * MINUTE, expiresAt + MINUTE), false)
  })
}
