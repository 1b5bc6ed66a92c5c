import { createHmac, timingSafeEqual } from 'node:crypto'

/*
 * Server nonces for DPoP proofs (RFC 9449 §8; docs/design.md, «Sender-constrained sessions
 * (DPoP)»), stateless: a nonce is the number of a 5-minute period and an HMAC of it, so every
 * instance that shares the secret issues and accepts the same nonces without sharing a store.
 * A nonce is 27 base64url characters: the period as 4 bytes big-endian (periods of 5 minutes
 * since 1970 fit until the year 42800) and the first 16 bytes (128 bits) of the HMAC over them.
 * It proves a proof was signed after the server said so (§8 and §11.1: a proof made in advance
 * by a device an attacker once held ages out with the period), not that it is new: that is the
 * replay check's job.
 */

export const NONCE_PERIOD_MS = 5 * 60 * 1000

const PERIOD_BYTES = 4
const MAC_BYTES = 16
/** The one spelling of a nonce: 20 bytes as 27 base64url characters, no padding. */
const NONCE = /^[A-Za-z0-9_-]{27}$/

export class DpopNonces {
  readonly #key: Buffer

  constructor (secret: string | Buffer) {
    // A key of its own, so a nonce is never an HMAC that something else made with the secret.
    this.#key = createHmac('sha256', secret).update('fastify-token-auth:dpop-nonce').digest()
  }

  /** The nonce of the period `now` (ms since epoch) falls in: what `DPoP-Nonce` carries. */
  current (now: number): string {
    return this.#nonce(periodOf(now))
  }

  /**
   * Whether `nonce` is the current period's or the previous one's, so a nonce issued just before
   * a period ends still works for one full period. Anything else, malformed input included, is
   * false, never a throw: the nonce is the client's text.
   */
  accepts (nonce: string, now: number): boolean {
    if (typeof nonce !== 'string' || !NONCE.test(nonce)) return false
    const period = Buffer.from(nonce, 'base64url').readUInt32BE(0)
    const current = periodOf(now)
    if (period !== current && period !== current - 1) return false
    // The whole text against the one we would issue: equal lengths (27 ASCII characters), so
    // timingSafeEqual cannot throw; and a second spelling of the same bytes (the last
    // character's spare bits) does not pass.
    return timingSafeEqual(Buffer.from(this.#nonce(period)), Buffer.from(nonce))
  }

  #nonce (period: number): string {
    const bytes = Buffer.alloc(PERIOD_BYTES + MAC_BYTES)
    bytes.writeUInt32BE(period, 0)
    createHmac('sha256', this.#key).update(bytes.subarray(0, PERIOD_BYTES)).digest().copy(bytes, PERIOD_BYTES, 0, MAC_BYTES)
    return bytes.toString('base64url')
  }
}

function periodOf (now: number): number {
  return Math.floor(now / NONCE_PERIOD_MS)
}
