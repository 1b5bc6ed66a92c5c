import { createHmac, hash, timingSafeEqual } from 'node:crypto'
import { InvalidRefreshTokenError } from './errors.js'

/*
 * Refresh tokens (docs/design.md, «Refresh tokens»): opaque strings that never leave this
 * service, so nothing but this file needs to read them, and no JWT is signed or verified on a
 * refresh. A token is `<session id>.<user>.<id><tag>`, or `<session id>.<user>.<key>.<id><tag>`
 * when its session is bound to a key:
 *   session id  the store's id of the session: 1 to 128 characters of [A-Za-z0-9_-];
 *   user        the user id, base64url: `loadUser` is asked before the store, as a disabled
 *               user's token is refused as such even when the store no longer has the session;
 *   key         the RFC 7638 thumbprint (43 characters) of the key the session is bound to:
 *               a DPoP key (docs/design.md, «Sender-constrained sessions (DPoP)»), or, after
 *               `dbsc-`, a browser's DBSC key («Device Bound Session Credentials (DBSC)»);
 *               covered by the tag and so by the stored hash, readable without a proof
 *               (introspection, logout), and checked before a refresh reaches the store;
 *   id          22 base64url characters (128 bits): random at login, then each successor derived
 *               from its predecessor and the time it was minted (`successorId`);
 *   tag         the first 22 base64url characters (132 bits) of HMAC-SHA256 over everything
 *               before it with a key of its own, so a token we did not mint (another
 *               session's id with a guessed id, say) is refused before the store is asked, and
 *               logout, which ends the session a token names, cannot be driven by someone who
 *               only knows a session id (session ids are in access tokens and the sessions list).
 * The store keeps the last 128 bits of that same HMAC as the token's hash («Hashed at rest»), so
 * reading a token and minting one cost one HMAC each, no separate hash of the id.
 * A JWT parses as none (its segments are not of these lengths and alphabets), and none is a
 * JWT (its first segment is not a JSON header).
 */

/** Characters of the tag: 132 bits of the HMAC, cut from its base64url text (no second encoding). */
const TAG_LENGTH = 22
const SESSION_ID = /^[A-Za-z0-9_-]{1,128}$/
/** A user id longer than this (in UTF-8 bytes) has no refresh token: cookies are small. */
const MAX_USER_ID_BYTES = 512
/** Bytes of a token's id: 128 bits, random or derived (see above). */
export const TOKEN_ID_BYTES = 16
/** Where the stored hash starts in the HMAC (its last 128 bits); see docs/design.md, «Hashed at rest». */
const HASH_OFFSET = 16
/** The whole token, in the one spelling we mint: session id, user, the bound key's thumbprint if any (43, after `dbsc-` for DBSC), id (22), tag (22). */
const OPAQUE_TOKEN = /^([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{2,683})\.(?:(dbsc-)?([A-Za-z0-9_-]{43})\.)?([A-Za-z0-9_-]{22})([A-Za-z0-9_-]{22})$/
/** What marks a DBSC key in a token. */
const DBSC_MARK = 'dbsc-'
/** An RFC 7638 thumbprint: base64url SHA-256. */
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/

/** What a refresh token names: its user, its session and its id, and the hash its session holds while it is current. */
export interface PresentedRefreshToken {
  sub: string
  sid: string
  jti: string
  /** What the store compares: the last 128 bits of the tag's HMAC, or for a `legacy` token the whole SHA-256 of its id. */
  hash: string
  /** The thumbprint of the DPoP key the session is bound to; absent otherwise. */
  jkt?: string
  /** The thumbprint of the browser's DBSC key the session is bound to; absent otherwise. */
  dbsc?: string
  /** A JWT refresh token of versions up to 0.1 (`LegacyFormat`). */
  legacy?: true
}

/** The key a session is bound to, if any: a DPoP key (`jkt`) or a DBSC key (`dbsc`), never both. */
export type KeyBinding = Pick<PresentedRefreshToken, 'jkt' | 'dbsc'>

/** Which bound tokens are read: those of a binding whose option is off could not be checked. */
export interface BindingsRead {
  dpop: boolean
  dbsc: boolean
}

/** A token as minted, and the hash its session stores for it. */
export interface MintedRefreshToken {
  token: string
  hash: string
}

/** Refresh tokens of an earlier format: which tokens are of it, and how to read one. */
export interface LegacyFormat {
  claims (token: string): boolean
  read (token: string): PresentedRefreshToken
}

export class RefreshTokens {
  readonly #tagKey: Buffer
  readonly #successorKey: Buffer
  readonly #legacy: LegacyFormat | undefined
  readonly #reads: BindingsRead

  /**
   * `legacy` reads refresh tokens of an earlier format (the JWTs of versions up to 0.1), so
   * sessions started before an upgrade go on; their next refresh answers in this format.
   * `reads`: which bound tokens are read (the `dpop` and `dbsc` options are on); the others'
   * binding could not be checked, and they are refused like any unknown token.
   */
  constructor (secret: string | Buffer, legacy?: LegacyFormat, reads: BindingsRead = { dpop: false, dbsc: false }) {
    // Keys of their own, so neither HMAC ever equals another made with the secret.
    this.#tagKey = createHmac('sha256', secret).update('fastify-token-auth:refresh-token-tag').digest()
    this.#successorKey = createHmac('sha256', secret).update('fastify-token-auth:successor').digest()
    this.#legacy = legacy
    this.#reads = reads
  }

  /**
   * The token with id `jti` (from `randomId(TOKEN_ID_BYTES)` or `successorId`) of a user's
   * session, bound to the key `binding` names, if any, and its hash.
   */
  mint (userId: string, sessionId: string, jti: string, binding: KeyBinding = {}): MintedRefreshToken {
    // A store's `sessionIdFor` or the app's user ids broke the contract: fail loudly rather than
    // mint a token that cannot be read back.
    if (!SESSION_ID.test(sessionId)) throw new TypeError('fastify-token-auth: session ids must be 1 to 128 characters of [A-Za-z0-9_-]')
    if (Buffer.byteLength(userId) > MAX_USER_ID_BYTES) throw new TypeError(`fastify-token-auth: user ids must be at most ${MAX_USER_ID_BYTES} bytes`)
    const signed = `${sessionId}.${Buffer.from(userId).toString('base64url')}.${keyPart(binding)}${jti}`
    const mac = this.#mac(signed)
    return { token: `${signed}${tagOf(mac)}`, hash: hashOf(mac) }
  }

  /** The session and id a token names, if we minted it; a coded 401 otherwise. */
  read (token: string): PresentedRefreshToken {
    if (this.#legacy?.claims(token) === true) return this.#legacy.read(token)
    const parts = refreshTokenParts(token)
    if (parts === null || (parts.jkt !== undefined && !this.#reads.dpop) || (parts.dbsc !== undefined && !this.#reads.dbsc)) throw new InvalidRefreshTokenError()
    const mac = this.#mac(parts.signed)
    if (!timingSafeEqual(Buffer.from(tagOf(mac)), Buffer.from(parts.tag))) throw new InvalidRefreshTokenError()
    const presented: PresentedRefreshToken = { sub: parts.sub, sid: parts.sid, jti: parts.jti, hash: hashOf(mac) }
    if (parts.jkt !== undefined) presented.jkt = parts.jkt
    if (parts.dbsc !== undefined) presented.dbsc = parts.dbsc
    return presented
  }

  /** What a token names if we minted it (its tag verifies), else `null`. */
  tryRead (token: string): PresentedRefreshToken | null {
    try {
      return this.read(token)
    } catch {
      return null
    }
  }

  /**
   * The successor of `presented` minted at `mintedAt`, bound to `binding`'s key (by default the
   * presented token's): everything in it is the presented token's or derived from it, so answering
   * the same predecessor twice yields byte-identical successors.
   */
  successor (presented: PresentedRefreshToken, mintedAt: number, binding: KeyBinding = presented): MintedRefreshToken {
    return this.mint(presented.sub, presented.sid, this.successorId(presented.jti, mintedAt), binding)
  }

  /**
   * The id of the token that replaces `jti` when it is minted at `mintedAt` (ms). Derived, not
   * random: a client that presents the predecessor inside the grace window gets the very same
   * successor back (the store keeps when it was minted), so a session never has two live
   * branches; and a recovery, minted later, gets a different one (docs/design.md, «A 503 is the
   * truth»).
   */
  successorId (jti: string, mintedAt: number): string {
    return createHmac('sha256', this.#successorKey).update(`${jti}.${mintedAt}`).digest().toString('base64url', 0, TOKEN_ID_BYTES)
  }

  #mac (signed: string): Buffer {
    return createHmac('sha256', this.#tagKey).update(signed).digest()
  }
}

/** The key part of a token and its dot, empty for a bearer session. */
function keyPart ({ jkt, dbsc }: KeyBinding): string {
  const key = jkt ?? dbsc
  if (key === undefined) return ''
  if (!THUMBPRINT.test(key) || (jkt !== undefined && dbsc !== undefined)) {
    throw new TypeError('fastify-token-auth: a session is bound to one key, named by its thumbprint (43 base64url characters)')
  }
  return jkt === undefined ? `${DBSC_MARK}${key}.` : `${key}.`
}

/** The tag: the HMAC's first 132 bits, as the first 22 characters of its base64url text. */
function tagOf (mac: Buffer): string {
  return mac.toString('base64url', 0, 17).slice(0, TAG_LENGTH)
}

/** The stored hash: the HMAC's last 128 bits. */
function hashOf (mac: Buffer): string {
  return mac.toString('base64url', HASH_OFFSET)
}

/** The hash a session started by versions up to 0.1 holds for its JWT refresh token: the whole SHA-256 of its id. */
export function legacyTokenHash (jti: string): string {
  return hash('sha256', jti, 'base64url')
}

/** The parts of a token in this format, unauthenticated (`RefreshTokens.read` checks the tag); null for any other text. */
export function refreshTokenParts (token: string): (Omit<PresentedRefreshToken, 'hash'> & { signed: string, tag: string }) | null {
  const parts = OPAQUE_TOKEN.exec(token)
  if (parts === null) return null
  const [, sid, user, dbscMark, key, jti, tag] = parts as unknown as [string, string, string, string | undefined, string | undefined, string, string]
  // The pattern spans the whole token, so what the tag covers is the token without it.
  const read = { sub: Buffer.from(user, 'base64url').toString(), sid, jti, signed: token.slice(0, -TAG_LENGTH), tag }
  if (key === undefined) return read
  return dbscMark === undefined ? { ...read, jkt: key } : { ...read, dbsc: key }
}
