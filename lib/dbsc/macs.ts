import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/*
 * What DBSC needs the server to remember, kept by the browser instead (docs/design.md, «Device
 * Bound Session Credentials (DBSC)»): challenges and device cookies are an expiry and an HMAC
 * over what they are for, with keys derived from `refreshTokenSecret` for these uses only. Every
 * instance accepts the others' without sharing state; the store is only asked to spend a
 * challenge once (`useOnce`). A challenge also holds a random nonce under its HMAC: two issued in
 * the same second differ, so a new one is never one spent already.
 */

/** Bytes of HMAC kept: 128 bits, 22 base64url characters. */
const MAC_BYTES = 16
/** Bytes of a challenge's nonce: 96 bits, 16 base64url characters. */
const NONCE_BYTES = 12
/** A device cookie, `<expiry, seconds since the epoch>.<HMAC>`, or a challenge, `<expiry>.<nonce>.<HMAC>`. */
const STAMPED = /^(\d{1,12})\.(?:([A-Za-z0-9_-]{16})\.)?([A-Za-z0-9_-]{22})$/

/** What a challenge is for: registering a session's key, or renewing its device cookie. */
export type ChallengePurpose = 'registration' | 'refresh'

export class DbscMacs {
  readonly #challengeKey: Buffer
  readonly #cookieKey: Buffer

  constructor (secret: string | Buffer) {
    this.#challengeKey = createHmac('sha256', secret).update('fastify-token-auth:dbsc-challenge').digest()
    this.#cookieKey = createHmac('sha256', secret).update('fastify-token-auth:dbsc-device-cookie').digest()
  }

  /** A challenge for `purpose` on session `sessionId` (and its key `jkt` once registered), good until `expiresAt` (ms). */
  challenge (purpose: ChallengePurpose, sessionId: string, jkt: string, expiresAt: number): string {
    return stamp(this.#challengeKey, `${purpose}.${sessionId}.${jkt}`, expiresAt, randomBytes(NONCE_BYTES).toString('base64url'))
  }

  /** When the challenge expires (ms), if it is one of ours for these and has not expired; undefined otherwise. */
  acceptsChallenge (challenge: string, purpose: ChallengePurpose, sessionId: string, jkt: string, now: number): number | undefined {
    return check(this.#challengeKey, challenge, `${purpose}.${sessionId}.${jkt}`, now, true)
  }

  /** The device cookie's value for session `sessionId` bound to key `jkt`, good until `expiresAt` (ms). */
  deviceCookie (sessionId: string, jkt: string, expiresAt: number): string {
    return stamp(this.#cookieKey, `${sessionId}.${jkt}`, expiresAt)
  }

  /** Whether a device cookie's value is ours for this session and key, and has not expired. */
  acceptsDeviceCookie (value: string, sessionId: string, jkt: string, now: number): boolean {
    return check(this.#cookieKey, value, `${sessionId}.${jkt}`, now, false) !== undefined
  }
}

/** `subject` stamped with its expiry (and a nonce, for a challenge), under an HMAC of all three. */
function stamp (key: Buffer, subject: string, expiresAt: number, nonce?: string): string {
  const stamped = `${Math.ceil(expiresAt / 1000)}${nonce === undefined ? '' : `.${nonce}`}`
  return `${stamped}.${mac(key, `${subject}.${stamped}`)}`
}

/** The expiry (ms) of a value stamped for `subject` (with a nonce when `nonced`), unless it is not ours or has passed. */
function check (key: Buffer, value: string, subject: string, now: number, nonced: boolean): number | undefined {
  const parts = STAMPED.exec(value)
  if (parts === null || (parts[2] !== undefined) !== nonced) return undefined
  const expiresAt = Number(parts[1]) * 1000
  if (expiresAt <= now) return undefined
  const stamped = value.slice(0, value.lastIndexOf('.'))
  return timingSafeEqual(Buffer.from(mac(key, `${subject}.${stamped}`)), Buffer.from(parts[3] as string)) ? expiresAt : undefined
}

function mac (key: Buffer, text: string): string {
  return createHmac('sha256', key).update(text).digest().toString('base64url', 0, MAC_BYTES)
}
