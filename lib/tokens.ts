import { createHash, createHmac, randomBytes } from 'node:crypto'
import {
  InvalidRefreshTokenError, InvalidTokenError, RefreshTokenExpiredError, TokenExpiredError
} from './errors.js'

/** The media types in the JWT `typ` header: RFC 9068 for access tokens, our own for refresh. */
export const ACCESS_TOKEN_TYPE = 'at+jwt'
export const REFRESH_TOKEN_TYPE = 'rt+jwt'
/** The only algorithm accepted for both kinds of token (pinned, never read from the token). */
export const TOKEN_ALGORITHM = 'HS256'
/** Longer tokens are refused before any parsing: ours are a few hundred bytes. */
export const MAX_TOKEN_LENGTH = 8192

/** Claims the plugin puts in every access token. */
export interface AccessTokenClaims {
  /** The user id. */
  sub: string
  /** The session id (also the id in the sessions list). */
  sid: string
  jti: string
  iat: number
  exp: number
  iss?: string
  aud?: string
}

/** Claims of a refresh token; `jti` is 256 random bits, known only to its holder. */
export interface RefreshTokenClaims {
  sub: string
  sid: string
  jti: string
  iat: number
  exp: number
}

/** The sign/verify pair of one @fastify/jwt registration. */
export interface JwtPair {
  sign (payload: object): string
  verify (token: string): unknown
}

export interface TokenCodecOptions {
  access: JwtPair
  refresh: JwtPair
  /** Secret used to derive each refresh token's successor id. */
  refreshSecret: string | Buffer
  accessTokenTtl: number
  /** Longest lifetime (`exp - iat`, seconds) a refresh token can have: the idle lifetime. */
  refreshTokenTtl: number
  /** Seconds of clock skew forgiven on access tokens. */
  clockTolerance: number
  issuer?: string
  audience?: string
}

export interface SignedAccessToken {
  token: string
  /** Seconds until `exp`. */
  expiresIn: number
}

const RESERVED_CLAIMS = ['sub', 'sid', 'jti', 'iat', 'exp', 'nbf', 'iss', 'aud']

/**
 * Access and refresh token codec. Access and refresh tokens use distinct keys and distinct
 * `typ` headers, so neither ever verifies as the other (R1). Every failure is a coded 401.
 */
export class TokenCodec {
  readonly #access: JwtPair
  readonly #refresh: JwtPair
  readonly #successorKey: Buffer
  readonly #accessTokenTtl: number
  readonly #refreshTokenTtl: number
  readonly #clockTolerance: number
  readonly #issuer: string | undefined
  readonly #audience: string | undefined

  constructor (options: TokenCodecOptions) {
    this.#access = options.access
    this.#refresh = options.refresh
    // A key of its own, so successor ids never equal any other HMAC made with the secret.
    this.#successorKey = createHmac('sha256', options.refreshSecret).update('fastify-token-auth:successor').digest()
    this.#accessTokenTtl = options.accessTokenTtl
    this.#refreshTokenTtl = options.refreshTokenTtl
    this.#clockTolerance = options.clockTolerance
    this.#issuer = options.issuer
    this.#audience = options.audience
  }

  signAccessToken (subject: string, sessionId: string, claims: Record<string, unknown>, now: number): SignedAccessToken {
    const iat = Math.floor(now / 1000)
    const payload: Record<string, unknown> = {}
    for (const key of Object.keys(claims)) {
      if (!RESERVED_CLAIMS.includes(key)) payload[key] = claims[key]
    }
    payload.sub = subject
    payload.sid = sessionId
    payload.jti = randomId(16)
    payload.iat = iat
    payload.exp = iat + this.#accessTokenTtl
    if (this.#issuer !== undefined) payload.iss = this.#issuer
    if (this.#audience !== undefined) payload.aud = this.#audience
    return { token: this.#access.sign(payload), expiresIn: this.#accessTokenTtl }
  }

  verifyAccessToken<Claims extends AccessTokenClaims = AccessTokenClaims> (token: string): Claims {
    const payload = verifyWith(this.#access, token, InvalidTokenError, TokenExpiredError, this.#accessTokenTtl, this.#clockTolerance)
    return payload as unknown as Claims
  }

  signRefreshToken (claims: RefreshTokenClaims): string {
    return this.#refresh.sign({ sub: claims.sub, sid: claims.sid, jti: claims.jti, iat: claims.iat, exp: claims.exp })
  }

  verifyRefreshToken (token: string): RefreshTokenClaims {
    return verifyWith(this.#refresh, token, InvalidRefreshTokenError, RefreshTokenExpiredError, this.#refreshTokenTtl, 0) as unknown as RefreshTokenClaims
  }

  /**
   * The id of the token that replaces `jti` at rotation. Derived, not random, so a client that
   * presents the predecessor inside the grace window gets the very same successor back, and a
   * session never has two live branches.
   */
  successorId (jti: string): string {
    return createHmac('sha256', this.#successorKey).update(jti).digest('base64url')
  }
}

/** What a store keeps of a refresh token: SHA-256 of its id, never the token (R2). */
export function hashTokenId (jti: string): string {
  return createHash('sha256').update(jti).digest('base64url')
}

export function randomId (bytes: number): string {
  return randomBytes(bytes).toString('base64url')
}

type CodedErrorConstructor = new () => Error

function isId (value: unknown): boolean {
  return typeof value === 'string' && value !== ''
}

function verifyWith (
  pair: JwtPair, token: string, Invalid: CodedErrorConstructor, Expired: CodedErrorConstructor, maxLifetime: number, tolerance: number
): Record<string, unknown> {
  if (token.length > MAX_TOKEN_LENGTH) throw new Invalid()
  let payload: Record<string, unknown>
  try {
    payload = pair.verify(token) as Record<string, unknown>
  } catch (error) {
    // @fastify/jwt lets several fast-jwt rejections through as 500s: every one is a bad token.
    throw (error as { code?: string }).code === 'FAST_JWT_EXPIRED' ? new Expired() : new Invalid()
  }
  // The verifier checks that required claims exist and that `exp` has passed; their types and
  // ranges are ours to check (CVE-2025-30144): ids are non-empty strings, dates whole seconds,
  // never issued in the future, and no token lives longer than its kind can.
  const { sub, sid, jti, iat, exp } = payload
  if (!isId(sub) || !isId(sid) || !isId(jti) || !Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) throw new Invalid()
  if ((iat as number) > Date.now() / 1000 + tolerance || (exp as number) - (iat as number) > maxLifetime) throw new Invalid()
  return payload
}
