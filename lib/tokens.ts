import { randomFillSync } from 'node:crypto'
import {
  InvalidRefreshTokenError, InvalidTokenError, RefreshTokenExpiredError, TokenExpiredError
} from './errors.js'
import type { AccessTokenAlgorithm } from './keys.js'
import { type BindingsRead, legacyTokenHash, RefreshTokens } from './refresh-tokens.js'

/** The media types in the JWT `typ` header: RFC 9068 for access tokens, our own for refresh. */
export const ACCESS_TOKEN_TYPE = 'at+jwt'
export const REFRESH_TOKEN_TYPE = 'rt+jwt'
/** The refresh-token algorithm; access tokens use the algorithm pinned to their key. */
export const REFRESH_TOKEN_ALGORITHM = 'HS256'
/** Longer tokens are refused before any parsing: ours are a few hundred bytes. */
export const MAX_TOKEN_LENGTH = 8192
/** Our headers are `{"alg","typ","kid"}`: a longer one is not ours and is not decoded. */
const MAX_HEADER_LENGTH = 256
// ES256 signatures are malleable: (r, n - s) verifies too. We sign with low S and refuse high S.
const P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551n
const P256_HALF_ORDER = P256_ORDER >> 1n

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
  /** When the user last authenticated, in seconds (RFC 9470 §4); absent only on tokens signed before 0.x carried it. */
  auth_time?: number
  /** The authentication context class of that authentication (RFC 9470), when `verifyCredentials` named one. */
  acr?: string
  /** Its authentication methods (RFC 8176), when named. */
  amr?: string[]
  /** The session's claims version when above 0 (docs/design.md, «Claims that change»). */
  cv?: number
  /** The DPoP key the token is bound to (RFC 9449 §6.1): its RFC 7638 thumbprint. */
  cnf?: { jkt: string }
}

/** What an access token states about its session besides the app's claims: RFC 9470 and the claims version. */
export interface SessionClaims {
  authentication?: { time: number, acr?: string, amr?: string[] }
  claimsVersion?: number
}

/**
 * Claims of a refresh token of the earlier JWT format, still read (see ./refresh-tokens.ts);
 * `jti` is 256 random bits, known only to its holder.
 */
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

/** One access-token key: its registration, its `kid` and its pinned algorithm. */
export interface AccessKeyPair extends JwtPair {
  kid: string
  algorithm: AccessTokenAlgorithm
}

export interface TokenCodecOptions {
  /** The first signs; every one verifies the tokens that name its `kid`. */
  accessKeys: AccessKeyPair[]
  /** Verifies refresh tokens of the earlier JWT format. */
  refresh: JwtPair
  /** Secret of the refresh tokens' tags and successor ids. */
  refreshSecret: string | Buffer
  accessTokenTtl: number
  /** Longest lifetime (`exp - iat`, seconds) a refresh token can have: the idle lifetime. */
  refreshTokenTtl: number
  /** Seconds of clock skew forgiven on access tokens. */
  clockTolerance: number
  /** Verified access tokens remembered, so a client reusing its token skips the HMAC; 0 = none. */
  verifyCacheSize: number
  /** Which bound refresh tokens are read (the `dpop` and `dbsc` options are on). */
  bindingsRead?: BindingsRead
  issuer?: string
  audience?: string
}

export interface SignedAccessToken {
  token: string
  /** Seconds until `exp`. */
  expiresIn: number
}

// The plugin's own claims: an app's claims never set them (docs/design.md, «Step-up authentication»).
const RESERVED_CLAIMS = ['sub', 'sid', 'jti', 'iat', 'exp', 'nbf', 'iss', 'aud', 'auth_time', 'acr', 'amr', 'cv', 'cnf']

/**
 * Access and refresh token codec. Access and refresh tokens use distinct keys and distinct
 * `typ` headers, so neither ever verifies as the other (docs/design.md, «Separate keys and explicit types»). Every failure is a coded 401.
 */
export class TokenCodec {
  readonly #signer: AccessKeyPair
  readonly #accessKeys: Map<string, AccessKeyPair>
  readonly #legacyRefresh: JwtPair & { algorithm: AccessTokenAlgorithm }
  /** The header segment (and dot) every refresh token of the JWT format starts with. */
  readonly #legacyRefreshHeader: string
  /** Refresh tokens: minted, read, and their successors derived. */
  readonly refresh: RefreshTokens
  readonly #accessTokenTtl: number
  readonly #refreshTokenTtl: number
  readonly #clockTolerance: number
  readonly #verified: VerifiedTokenCache
  readonly #issuer: string | undefined
  readonly #audience: string | undefined

  constructor (options: TokenCodecOptions) {
    this.#signer = options.accessKeys[0] as AccessKeyPair
    this.#accessKeys = new Map(options.accessKeys.map((key) => [key.kid, key]))
    this.#legacyRefresh = { ...options.refresh, algorithm: REFRESH_TOKEN_ALGORITHM }
    // Refresh tokens had one header, byte for byte: comparing the text is the whole header check.
    this.#legacyRefreshHeader = `${options.refresh.sign({ sub: '-', sid: '-', jti: '-', iat: 0, exp: 1 }).split('.')[0] as string}.`
    this.refresh = new RefreshTokens(options.refreshSecret, {
      claims: (token) => token.startsWith(this.#legacyRefreshHeader),
      read: (token) => {
        const claims = verifyWith(this.#legacyRefresh, token, InvalidRefreshTokenError, RefreshTokenExpiredError, this.#refreshTokenTtl, 0) as unknown as RefreshTokenClaims
        return { ...claims, hash: legacyTokenHash(claims.jti), legacy: true }
      }
    }, options.bindingsRead)
    this.#accessTokenTtl = options.accessTokenTtl
    this.#refreshTokenTtl = options.refreshTokenTtl
    this.#clockTolerance = options.clockTolerance
    this.#verified = new VerifiedTokenCache(options.verifyCacheSize)
    this.#issuer = options.issuer
    this.#audience = options.audience
  }

  /** `jkt`: the thumbprint of the DPoP key the token is bound to (`cnf`, RFC 9449 §6.1), when the request proved one. */
  signAccessToken (subject: string, sessionId: string, claims: Record<string, unknown>, now: number, session: SessionClaims = {}, jkt?: string): SignedAccessToken {
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
    const { authentication, claimsVersion = 0 } = session
    if (authentication !== undefined) {
      payload.auth_time = Math.floor(authentication.time / 1000)
      if (authentication.acr !== undefined) payload.acr = authentication.acr
      if (authentication.amr !== undefined) payload.amr = authentication.amr
    }
    if (claimsVersion > 0) payload.cv = claimsVersion
    if (jkt !== undefined) payload.cnf = { jkt }
    const token = this.#signer.sign(payload)
    return { token: this.#signer.algorithm === 'ES256' ? withLowS(token) : token, expiresIn: this.#accessTokenTtl }
  }

  verifyAccessToken<Claims extends AccessTokenClaims = AccessTokenClaims> (token: string): Claims {
    const now = Date.now()
    let claims = this.#verified.get(token, now)
    if (claims === undefined) {
      claims = verifyWith(this.#accessKeyOf(token), token, InvalidTokenError, TokenExpiredError, this.#accessTokenTtl, this.#clockTolerance)
      // A token meant for some audience is not for a verifier that names none (RFC 7519 §4.1.3).
      if (this.#audience === undefined && claims.aud !== undefined) throw new InvalidTokenError()
      this.#verified.set(token, claims, ((claims.exp as number) + this.#clockTolerance) * 1000)
    }
    // A copy per request: a handler that writes to `request.user` never reaches the next request.
    return { ...claims } as unknown as Claims
  }

  /**
   * The key a token names in its `kid`, if its `alg` is the one pinned to that key. The kid is
   * only ever a lookup in our own key set (RFC 8725 §3.10); `jku`, `x5u` and `jwk` are ignored.
   */
  #accessKeyOf (token: string): AccessKeyPair {
    const header = decodeHeader(token)
    const key = typeof header.kid === 'string' ? this.#accessKeys.get(header.kid) : undefined
    if (key === undefined || header.alg !== key.algorithm) throw new InvalidTokenError()
    return key
  }
}

// One CSPRNG call fills many ids: a call per id costs more than the rest of signing a token.
const randomPool = Buffer.alloc(4096)
let randomOffset = randomPool.length

/** A base64url id of `bytes` random bytes from the CSPRNG; each byte is used once. */
export function randomId (bytes: number): string {
  if (randomOffset + bytes > randomPool.length) {
    randomFillSync(randomPool)
    randomOffset = 0
  }
  const id = randomPool.toString('base64url', randomOffset, randomOffset + bytes)
  randomOffset += bytes
  return id
}

/**
 * Verified access-token claims keyed by the exact token text, until the token expires.
 * A different text (even a malleated signature of the same token) is verified in full.
 * When full, the oldest entry goes: O(1), bounded.
 */
class VerifiedTokenCache {
  readonly #entries = new Map<string, { claims: Record<string, unknown>, until: number }>()
  readonly #size: number

  constructor (size: number) {
    this.#size = size
  }

  get (token: string, now: number): Record<string, unknown> | undefined {
    const entry = this.#entries.get(token)
    if (entry === undefined) return undefined
    if (now < entry.until) return entry.claims
    this.#entries.delete(token)
    return undefined
  }

  set (token: string, claims: Record<string, unknown>, until: number): void {
    if (this.#size === 0) return
    if (this.#entries.size >= this.#size) this.#entries.delete(this.#entries.keys().next().value as string)
    this.#entries.set(token, { claims, until })
  }
}

type CodedErrorConstructor = new () => Error

function isId (value: unknown): boolean {
  return typeof value === 'string' && value !== ''
}

/**
 * An access token's JOSE header, written exactly as we write ours: a JSON object whose text is what
 * JSON.stringify gives back (so no duplicate member, where parsers disagree on which one wins),
 * and without `crit` (we understand no extension, RFC 7515 §4.1.11).
 */
function decodeHeader (token: string): { alg?: unknown, kid?: unknown } {
  const end = token.indexOf('.')
  if (end < 1 || end > MAX_HEADER_LENGTH) throw new InvalidTokenError()
  const text = Buffer.from(token.slice(0, end), 'base64url').toString()
  let header: unknown
  try {
    header = JSON.parse(text)
  } catch {
    throw new InvalidTokenError()
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header) || 'crit' in header || JSON.stringify(header) !== text) {
    throw new InvalidTokenError()
  }
  return header
}

/**
 * Whether the signature is in its one canonical form. Base64url decoders skip stray characters
 * and the unused low bits of the last one, so several texts carry the same signature; and an
 * ES256 signature verifies with S or n - S. Any text but the one we issued is refused.
 */
function hasCanonicalSignature (token: string, algorithm: AccessTokenAlgorithm): boolean {
  const encoded = token.slice(token.lastIndexOf('.') + 1)
  const signature = Buffer.from(encoded, 'base64url')
  if (signature.toString('base64url') !== encoded) return false
  return algorithm !== 'ES256' || (signature.length === 64 && BigInt(`0x${signature.toString('hex', 32)}`) <= P256_HALF_ORDER)
}

/** The token with its ES256 signature in low-S form (node:crypto signs with either). */
function withLowS (token: string): string {
  const dot = token.lastIndexOf('.')
  const signature = Buffer.from(token.slice(dot + 1), 'base64url')
  const s = BigInt(`0x${signature.toString('hex', 32)}`)
  if (s <= P256_HALF_ORDER) return token
  Buffer.from((P256_ORDER - s).toString(16).padStart(64, '0'), 'hex').copy(signature, 32)
  return `${token.slice(0, dot + 1)}${signature.toString('base64url')}`
}

function verifyWith (
  pair: JwtPair & { algorithm: AccessTokenAlgorithm }, token: string, Invalid: CodedErrorConstructor, Expired: CodedErrorConstructor, maxLifetime: number, tolerance: number
): Record<string, unknown> {
  if (token.length > MAX_TOKEN_LENGTH || !hasCanonicalSignature(token, pair.algorithm)) throw new Invalid()
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
  const { sub, sid, jti, iat, exp, nbf } = payload
  if (!isId(sub) || !isId(sid) || !isId(jti) || !Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) throw new Invalid()
  if (nbf !== undefined && (!Number.isSafeInteger(nbf) || (nbf as number) < 0)) throw new Invalid()
  if ((iat as number) > Date.now() / 1000 + tolerance || (exp as number) - (iat as number) > maxLifetime) throw new Invalid()
  return payload
}
