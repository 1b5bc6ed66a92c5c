import type { FastifyReply, FastifyRequest } from 'fastify'
import { DbscChallengeError, DeviceCookieRequiredError, DeviceRefreshSkippedError, InvalidDbscProofError } from '../errors.js'
import type { ClientKey } from '../jws.js'
import type { ResolvedOptions } from '../options.js'
import type { KeyBinding } from '../refresh-tokens.js'
import { singleHeader } from '../single-header.js'
import type { SpendOnce } from '../store-calls.js'
import { type ChallengePurpose, DbscMacs } from './macs.js'
import { DBSC_ALGORITHMS, readSessionIdentifier, sessionIdentifier, verifyRefreshProof, verifyRegistrationProof } from './proof.js'
import { parseStringItem, serializeString } from './structured-fields.js'

type DeviceOptions = Pick<ResolvedOptions, 'dbsc' | 'cookie' | 'refreshTokenSecret'>

/** Where the browser reaches DBSC's endpoints: absolute paths; without registration, no session is offered DBSC. */
export interface DbscPaths {
  registration: string | false
  refresh: string
}

/** A session as DBSC's refresh endpoint knows it: its id and the key the browser registered. */
export interface DeviceSession {
  sessionId: string
  key: ClientKey
}

/**
 * Seconds a challenge stays good beyond the device cookie's lifetime: the browser keeps the one an
 * answer carried for its next refresh, due when the cookie expires, and may be a little late.
 */
const CHALLENGE_SLACK = 300

/**
 * Device Bound Session Credentials for the plugin's routes (docs/design.md, «Device Bound Session
 * Credentials (DBSC)»): the registration offer on login and refresh answers, the proofs of the
 * registration and refresh endpoints, the device cookie and the check that a bound session's
 * refresh carries it. With `dbsc` off nothing here reads a request.
 */
export class DeviceSessions {
  readonly enabled: boolean
  readonly #paths: DbscPaths
  readonly #macs: DbscMacs
  readonly #spend: SpendOnce
  readonly #now: () => number
  readonly #cookieName: string
  readonly #cookieMaxAge: number
  readonly #cookie: { httpOnly: true, secure: boolean, sameSite: 'strict' | 'lax', path: string, domain?: string }

  constructor (options: DeviceOptions, paths: DbscPaths, spend: SpendOnce, now: () => number) {
    this.enabled = options.dbsc !== false
    const dbsc = options.dbsc === false ? { cookieName: '', cookieMaxAge: 0 } : options.dbsc
    this.#paths = paths
    this.#macs = new DbscMacs(options.refreshTokenSecret)
    this.#spend = spend
    this.#now = now
    this.#cookieName = dbsc.cookieName
    this.#cookieMaxAge = dbsc.cookieMaxAge
    const { secure, sameSite, path, domain } = options.cookie
    // The refresh cookie's attributes: the device cookie goes wherever the refresh token goes.
    this.#cookie = { httpOnly: true, secure, sameSite, path, ...(domain === undefined ? {} : { domain }) }
  }

  /**
   * Offers a browser to bind the session whose refresh cookie an answer sets (login, refresh of a
   * bearer session): `Secure-Session-Registration`, with a challenge for this session.
   */
  offer (reply: FastifyReply, sessionId: string): void {
    if (!this.enabled || this.#paths.registration === false) return
    const challenge = this.#challenge('registration', sessionId, '')
    reply.header('secure-session-registration',
      `(${DBSC_ALGORITHMS.join(' ')});path=${serializeString(this.#paths.registration)};challenge=${serializeString(challenge)}`)
  }

  /** Whether the request carries a device cookie of this bound session; true for a session bound to no DBSC key. */
  carriesDevice (request: FastifyRequest, token: KeyBinding & { sid: string }): boolean {
    if (token.dbsc === undefined) return true
    const value = request.cookies[this.#cookieName]
    return value !== undefined && this.#macs.acceptsDeviceCookie(value, token.sid, token.dbsc, this.#now())
  }

  /**
   * Refuses a DBSC-bound session's refresh token without its device cookie, before the store is
   * asked. A browser that says it could not renew the cookie (`Secure-Session-Skipped`: our refresh
   * endpoint failed, say a 503 of the store, or was unreachable) gets a 503 to retry, as any
   * outage: the session is not over.
   */
  requireDevice (request: FastifyRequest, token: KeyBinding & { sid: string }): void {
    if (this.carriesDevice(request, token)) return
    throw request.headers['secure-session-skipped'] === undefined ? new DeviceCookieRequiredError() : new DeviceRefreshSkippedError()
  }

  /** The key a registration proves for session `sessionId`, its challenge checked and spent. */
  async registrationKey (request: FastifyRequest, sessionId: string): Promise<ClientKey> {
    const proof = this.#header(request, 'secure-session-response')
    if (proof === undefined) throw new InvalidDbscProofError('Secure-Session-Response missing')
    const { key, challenge } = verifyRegistrationProof(proof)
    if (await this.#spent(challenge, 'registration', sessionId, '') !== true) {
      throw new InvalidDbscProofError('challenge not issued for this session, expired or used')
    }
    return key
  }

  /** The session a refresh request names in `Sec-Secure-Session-Id`. */
  deviceSession (request: FastifyRequest): DeviceSession {
    const identifier = this.#header(request, 'sec-secure-session-id')
    if (identifier === undefined) throw new InvalidDbscProofError('Sec-Secure-Session-Id missing')
    return readSessionIdentifier(identifier)
  }

  /**
   * Checks a refresh request's proof of the session key. Without one, or with a challenge that is
   * stale or spent, the answer is 403 with a new challenge, which the browser signs and sends again
   * (W3C DBSC, «Send request»); a proof that fails a check is a 400.
   */
  async proveRefresh (request: FastifyRequest, reply: FastifyReply, session: DeviceSession): Promise<void> {
    const proof = this.#header(request, 'secure-session-response')
    const challenge = proof === undefined ? undefined : verifyRefreshProof(proof, session.key)
    if (challenge !== undefined && await this.#spent(challenge, 'refresh', session.sessionId, session.key.jkt) === true) return
    this.#nextChallenge(reply, session)
    throw new DbscChallengeError()
  }

  /**
   * Grants a session its device cookie: sets it, hands the browser a challenge for its next
   * refresh, and returns the session instructions (W3C DBSC, «JSON Session Instruction Format»).
   */
  grant (reply: FastifyReply, session: DeviceSession): object {
    const expiresAt = this.#now() + this.#cookieMaxAge * 1000
    reply.setCookie(this.#cookieName, this.#macs.deviceCookie(session.sessionId, session.key.jkt, expiresAt), { ...this.#cookie, maxAge: this.#cookieMaxAge })
    this.#nextChallenge(reply, session)
    return {
      session_identifier: sessionIdentifier(session.sessionId, session.key),
      refresh_url: this.#paths.refresh,
      scope: { include_site: false },
      credentials: [{ type: 'cookie', name: this.#cookieName, attributes: this.#credentialAttributes() }]
    }
  }

  /** The device cookie's attributes as the browser matches them (Max-Age does not count). */
  #credentialAttributes (): string {
    const { secure, sameSite, path, domain } = this.#cookie
    return [
      `Path=${path}`, ...(domain === undefined ? [] : [`Domain=${domain}`]), ...(secure ? ['Secure'] : []), 'HttpOnly',
      `SameSite=${sameSite === 'strict' ? 'Strict' : 'Lax'}`
    ].join('; ')
  }

  #nextChallenge (reply: FastifyReply, session: DeviceSession): void {
    const challenge = this.#challenge('refresh', session.sessionId, session.key.jkt)
    reply.header('secure-session-challenge', `${serializeString(challenge)};id=${serializeString(sessionIdentifier(session.sessionId, session.key))}`)
  }

  #challenge (purpose: ChallengePurpose, sessionId: string, jkt: string): string {
    return this.#macs.challenge(purpose, sessionId, jkt, this.#now() + (this.#cookieMaxAge + CHALLENGE_SLACK) * 1000)
  }

  /** Spends a challenge of ours for these; undefined when it is not one, false when spent already. */
  async #spent (challenge: string, purpose: ChallengePurpose, sessionId: string, jkt: string): Promise<boolean | undefined> {
    const expiresAt = this.#macs.acceptsChallenge(challenge, purpose, sessionId, jkt, this.#now())
    if (expiresAt === undefined) return undefined
    // The challenge's HMAC (over its expiry and nonce) names it: 128 bits, in the store contract's
    // alphabet, and 27 characters, so never a DPoP replay key (22).
    return await this.#spend(`dbsc-${challenge.slice(challenge.lastIndexOf('.') + 1)}`, expiresAt)
  }

  /** An sf-string header sent once; undefined when absent, a 400 when repeated or malformed. */
  #header (request: FastifyRequest, name: string): string | undefined {
    const field = singleHeader(request, name)
    if (field === undefined) return undefined
    const value = field === null ? null : parseStringItem(field)
    if (value === null) throw new InvalidDbscProofError(`${name} must be sent once, as a structured-field string`)
    return value
  }
}
