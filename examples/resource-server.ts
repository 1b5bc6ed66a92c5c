import { createPublicKey, type JsonWebKey } from 'node:crypto'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import createError from '@fastify/error'
import fastifyJwt from '@fastify/jwt'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import buildGetJwks from 'get-jwks'
import { errors } from '../lib/index.js'
import { createDpopCheck, DPOP_CHALLENGE, dpopChallenge, type Scheme, sentTwice } from './resource-server-dpop.js'
import { serve } from './serve.js'

/**
 * A second service that trusts the access tokens of a fastify-token-auth server without sharing
 * a secret: it fetches the issuer's public keys from its JWKS route (`jwks: true` with an EdDSA,
 * ES256 or RS256 `accessTokenKeys`) through get-jwks, and verifies with @fastify/jwt.
 *
 * The trade-off: this service cannot see revocations. Logout, "log out everywhere", theft
 * detection and admin revokes end a session at the auth server at once, but an access token
 * already issued stays valid here until its `exp`. Keep accessTokenTtl short (the default is 15
 * minutes); a route that must honour a revocation at once has to ask the auth server instead.
 *
 * Tokens the auth server bound to a client's key (DPoP, RFC 9449: `cnf.jkt` in the payload) are
 * accepted only with a proof of that key for each request: ./resource-server-dpop.ts.
 */

/** Signing algorithms only: an HS* token names a shared secret we must never have (key confusion). */
const ALGORITHMS: Array<'EdDSA' | 'ES256' | 'RS256'> = ['EdDSA', 'ES256', 'RS256']
/** RFC 9068: the `typ` of an access token. Refresh tokens carry `rt+jwt` (and are HS256). */
const ACCESS_TOKEN_TYPE = 'at+jwt'
/** The plugin's kids: RFC 7638 thumbprints or ids of its own format. */
const KID_FORMAT = /^[\w.-]{1,64}$/
const CHALLENGE = 'Bearer'
const INVALID_TOKEN = 'Bearer error="invalid_token"'

// 503, not 401: the token may well be good. A 401 INVALID_TOKEN would send clients (the client
// helper among them) to refresh and retry in a loop, against an auth server that may be down too.
const JwksUnavailableError = createError('JWKS_UNAVAILABLE', 'The keys of the token issuer cannot be fetched, retry later', 503)

export interface ResourceServerOptions {
  /**
   * The auth server's base URL, exactly as it puts it in `iss` (its `issuer` option): the only
   * place keys are fetched from, `<issuer>/.well-known/jwks.json`. HTTPS, or http on loopback.
   */
  issuer: string
  /** When set, tokens must carry this `aud` (the auth server's `audience` option). */
  audience?: string
  /** Milliseconds a fetched key is used before the JWKS is asked again; also how long a key the issuer removed still verifies here. Default 5 minutes. */
  keyTtl?: number
  /** Milliseconds a key may be used past keyTtl while the JWKS cannot be fetched (an outage, not a removal). Default 10 minutes. */
  maxStale?: number
  /**
   * Milliseconds without a JWKS fetch after one failed (an outage), and without a fetch for a kid
   * the JWKS did not list; also the window of `unknownKidFetches`. Default 10 seconds.
   */
  fetchCooldown?: number
  /** JWKS fetches for kids never seen, at most, per `fetchCooldown`. Default 3. */
  unknownKidFetches?: number
  /** Milliseconds a JWKS fetch may take. Default 5 seconds. */
  jwksTimeout?: number
  /** Keys remembered at most. Default 20. */
  maxKeys?: number
  /**
   * This service's credentials at the auth server's introspection endpoint (its `introspection`
   * option): with them, `POST /transfers` asks the auth server about every token (RFC 7662), so
   * a revocation there refuses the token here at once, for the cost of a round trip.
   */
  introspection?: { clientId: string, clientSecret: string, timeout?: number }
  /**
   * Accept DPoP-bound tokens (RFC 9449): `Authorization: DPoP <token>` with a `DPoP` proof of
   * the key the token names. Default true. With false, only `Bearer` is read and a bound token
   * is refused (401 invalid_token), never accepted without its proof: that would hand a thief of
   * the token exactly what the binding exists to deny. So the only reason to turn it off is a
   * service that wants no DPoP clients at all; the default serves an auth server with `dpop` on
   * as well as one with it off (whose tokens are never bound).
   */
  dpop?: boolean
}

/**
 * A protected `GET /whoami` that answers the `sub` of a valid access token of `issuer`; with
 * `introspection`, also `POST /transfers`, a sensitive action that honours revocations at once.
 */
export async function buildResourceServer (options: ResourceServerOptions, serverOptions: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const issuer = checkIssuer(options.issuer)
  const { audience } = options
  const fetchCooldown = options.fetchCooldown ?? 10_000
  const publicKey = createKeySource({
    issuer,
    keyTtl: options.keyTtl ?? 5 * 60_000,
    maxStale: options.maxStale ?? 10 * 60_000,
    fetchCooldown,
    unknownKidFetches: options.unknownKidFetches ?? 3,
    jwksTimeout: options.jwksTimeout ?? 5000,
    maxKeys: options.maxKeys ?? 20
  })
  const checkBinding = options.dpop === false ? undefined : createDpopCheck()
  const app = Fastify(serverOptions)

  await app.register(fastifyJwt, {
    // The secret function gets the whole decoded token: its header names the key.
    decode: { complete: true },
    secret: async (_request: FastifyRequest, token: unknown) => {
      const { header, payload } = token as { header: Record<string, unknown>, payload: Record<string, unknown> }
      // Cheap checks first (the verifier repeats them), so a token that cannot pass never costs a
      // JWKS fetch. Only `kid` and `alg` are read, and the kid is only looked up at our issuer:
      // `jku`, `x5u`, `jwk` and `x5c` would let the token pick its own key.
      if (header.typ !== ACCESS_TOKEN_TYPE || !ALGORITHMS.some((alg) => alg === header.alg) ||
        typeof header.kid !== 'string' || !KID_FORMAT.test(header.kid) || payload.iss !== issuer) {
        throw new errors.InvalidTokenError()
      }
      return await publicKey(header.kid, header.alg as string)
    },
    verify: {
      // No HS*: with HS256 allowed, a token "signed" with our public key (it is public) as an
      // HMAC secret would pass. get-jwks only picks a key published with the header's `alg`.
      algorithms: ALGORITHMS,
      // Refresh tokens (rt+jwt) and any other JWT of the issuer are not access tokens.
      checkTyp: ACCESS_TOKEN_TYPE,
      // Tokens of another issuer, even one whose keys we could fetch, are not for us.
      allowedIss: issuer,
      ...(audience === undefined ? {} : { allowedAud: audience }),
      // fast-jwt checks `iss` and `aud` only when present: requiring them makes the pins hold.
      requiredClaims: ['sub', 'sid', 'jti', 'iat', 'exp', 'iss', ...(audience === undefined ? [] : ['aud'])],
      cache: false,
      // @fastify/jwt reads `Bearer` only. `credentials` checked the header before jwtVerify runs.
      extractToken: (request: FastifyRequest) => tokenOf(request.headers.authorization as string)
    }
  })

  /** The challenge of a refusal in the scheme the request used (RFC 6750 §3, RFC 9449 §7.1). */
  const challenge = (scheme: Scheme | undefined, error?: string): string => {
    if (error === undefined) return checkBinding === undefined ? CHALLENGE : DPOP_CHALLENGE
    return scheme === 'DPoP' ? dpopChallenge(error) : `Bearer error="${error}"`
  }

  /**
   * The scheme and token of the one `Authorization` header: `Bearer`, and `DPoP` unless `dpop`
   * is false (schemes case-insensitive). No header or another scheme 401 MISSING_TOKEN; a token
   * that is empty or contains a space, or the header sent twice (Node would keep the first and
   * drop the other unseen), 400 MALFORMED_AUTHORIZATION.
   */
  function credentials (request: FastifyRequest, reply: FastifyReply): { scheme: Scheme, token: string } {
    const header = request.headers.authorization
    if (header !== undefined && sentTwice(request, 'authorization')) {
      reply.header('www-authenticate', challenge(undefined, 'invalid_request'))
      throw new errors.MalformedAuthorizationError()
    }
    const space = header?.indexOf(' ') ?? -1
    const name = space > 0 ? (header as string).slice(0, space).toLowerCase() : ''
    const scheme = name === 'bearer' ? 'Bearer' : name === 'dpop' && checkBinding !== undefined ? 'DPoP' : undefined
    if (scheme === undefined) {
      reply.header('www-authenticate', challenge(undefined))
      throw new errors.MissingTokenError()
    }
    const token = tokenOf(header as string)
    if (token === '' || token.includes(' ')) {
      reply.header('www-authenticate', challenge(scheme, 'invalid_request'))
      throw new errors.MalformedAuthorizationError()
    }
    return { scheme, token }
  }

  /**
   * `credentials`, then `request.jwtVerify()`, every refusal mapped to the auth server's own
   * codes and challenges (lib/guard.ts, lib/dpop/resource.ts), so a client handles both services
   * alike: no token 401 `Bearer` (RFC 6750 §3.1), a malformed header 400 `invalid_request`, any bad
   * token 401 `invalid_token`. Never a 500. With `dpop`, then the token's binding
   * (./resource-server-dpop.ts); a `DPoP` request is refused in that scheme, and one without
   * credentials is offered both (`Bearer, DPoP algs="…"`).
   */
  async function authenticate (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const { scheme, token } = credentials(request, reply)
    try {
      await request.jwtVerify()
    } catch (error) {
      const code = (error as { code?: string }).code
      if (error instanceof JwksUnavailableError) {
        reply.header('retry-after', Math.ceil(fetchCooldown / 1000))
        throw error
      }
      reply.header('www-authenticate', challenge(scheme, 'invalid_token'))
      // Wrong key, signature, type, claims, unknown kid, malformed token: fast-jwt and get-jwks
      // raise many kinds of errors, some without a status (a 500 if let through).
      throw code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED' ? new errors.TokenExpiredError() : new errors.InvalidTokenError()
    }
    if (checkBinding !== undefined) {
      await checkBinding(request, reply, scheme, token)
    } else if ((request.user as { cnf?: unknown }).cnf !== undefined) {
      // Bound to a key whose proofs this service does not check: never accepted without one.
      reply.header('www-authenticate', INVALID_TOKEN)
      throw new errors.InvalidTokenError()
    }
  }

  app.get('/whoami', { onRequest: authenticate }, async (request) => ({ sub: request.user.sub }))
  if (options.introspection !== undefined) {
    const stillActive = introspector(`${issuer}/auth/introspect`, options.introspection)
    // The local check first (a bad token costs no round trip), then the auth server's word.
    app.post('/transfers', { onRequest: [authenticate, stillActive] }, async (request) => ({ sub: request.user.sub, accepted: true }))
  }
  return app
}

const IntrospectionUnavailableError = createError('INTROSPECTION_UNAVAILABLE', 'The token issuer cannot be asked, retry later', 503)

/**
 * An onRequest hook asking the auth server whether the (locally verified) token is still live.
 * `Server-Timing: introspection;dur=<ms>` shows what the round trip cost. An auth server that
 * cannot answer makes it a 503, never an acceptance: this route is the one that must not run on
 * a revoked token.
 */
function introspector (endpoint: string, credentials: NonNullable<ResourceServerOptions['introspection']>) {
  const encode = (text: string): string => encodeURIComponent(text).replaceAll('%20', '+')
  const authorization = `Basic ${Buffer.from(`${encode(credentials.clientId)}:${encode(credentials.clientSecret)}`).toString('base64')}`
  return async function stillActive (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    // `Bearer` or `DPoP`: authenticate ran first, so there is one well-formed header.
    const token = tokenOf(request.headers.authorization as string)
    const started = performance.now()
    let active: unknown
    try {
      const response = await fetch(endpoint, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
        signal: AbortSignal.timeout(credentials.timeout ?? 2000)
      })
      if (response.status !== 200) throw new Error(`introspection answered ${response.status}`)
      active = ((await response.json()) as { active?: unknown }).active
    } catch (cause) {
      request.log.warn({ err: cause }, 'token introspection failed')
      reply.header('retry-after', 1)
      throw new IntrospectionUnavailableError()
    } finally {
      reply.header('server-timing', `introspection;dur=${(performance.now() - started).toFixed(1)}`)
    }
    if (active !== true) {
      reply.header('www-authenticate', /^dpop /i.test(request.headers.authorization as string) ? dpopChallenge('invalid_token') : INVALID_TOKEN)
      throw new errors.SessionRevokedError()
    }
  }
}

/** The token of an `Authorization` header: what follows the scheme and its space. */
function tokenOf (header: string): string {
  return header.slice(header.indexOf(' ') + 1)
}

/** The issuer URL, refused unless keys fetched from it cannot be swapped on the way (HTTPS). */
function checkIssuer (issuer: string): string {
  let url: URL
  try {
    url = new URL(issuer)
  } catch {
    throw new Error(`issuer must be the auth server's base URL, got "${issuer}"`)
  }
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname)
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new Error(`issuer must be an https URL (http only on loopback), got "${issuer}"`)
  }
  return issuer
}

interface KeySourceOptions {
  issuer: string
  keyTtl: number
  maxStale: number
  fetchCooldown: number
  unknownKidFetches: number
  jwksTimeout: number
  maxKeys: number
}

type FetchResult = 'found' | 'missing' | 'unavailable'

/**
 * The issuer's public key for a `kid`, as PEM. get-jwks fetches the JWKS from the issuer (and
 * only there: the domain is ours, never read from the token) and picks the key; around it, what
 * get-jwks leaves out:
 * - it caches no miss, so every request with an unknown kid would fetch the JWKS: a kid the JWKS
 *   did not list is refused without a fetch for `fetchCooldown`, and kids never seen may cause
 *   `unknownKidFetches` fetches per `fetchCooldown`, no more (a new key of the issuer is still
 *   found, at the rate a flood of invented kids leaves);
 * - after a failed fetch (an outage) none follows for `fetchCooldown`; one fetch at a time, with
 *   a timeout (get-jwks's `timeout` option never reaches fetch);
 * - it answers a failed fetch with its stale copy, and keeps that copy alive for as long as
 *   requests keep coming: a key the issuer removed would verify forever. We drop it before each
 *   fetch and keep our own, used only while the JWKS cannot be fetched, for `maxStale` at most;
 * - getPublicKey's converter knows no Ed25519: node:crypto turns the JWK into PEM.
 */
function createKeySource (options: KeySourceOptions): (kid: string, alg: string) => Promise<string> {
  const { issuer, keyTtl, maxStale, fetchCooldown, unknownKidFetches, jwksTimeout, maxKeys } = options
  const getJwks = buildGetJwks({ max: maxKeys, ttl: keyTtl, issuersWhitelist: [issuer] })
  const known = new Map<string, { pem: string, freshUntil: number }>()
  const missing = new Map<string, number>()
  let fetching: Promise<FetchResult> | undefined
  let outageUntil = 0
  let window = { start: 0, fetches: 0 }

  async function fetchKey (kid: string, alg: string, id: string): Promise<FetchResult> {
    const cacheKey = getJwks.generateCacheKey(alg, kid, `${issuer}/`)
    // In this order: deleting an expired entry is what moves it to the stale cache.
    getJwks.cache.delete(cacheKey)
    getJwks.staleCache.delete(cacheKey)
    let timer: NodeJS.Timeout | undefined
    try {
      const jwk = await Promise.race([
        getJwks.getJwk({ domain: issuer, kid, alg }),
        new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('JWKS fetch timed out')), jwksTimeout) })
      ])
      const pem = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string
      remember(known, id, { pem, freshUntil: Date.now() + keyTtl })
      missing.delete(id)
      outageUntil = 0
      return 'found'
    } catch (error) {
      // The JWKS answered without this key: it is not (or no longer) the issuer's.
      if (['JWK_NOT_FOUND', 'NO_JWKS'].includes((error as { code?: string }).code as string)) {
        known.delete(id)
        remember(missing, id, Date.now() + fetchCooldown)
        return 'missing'
      }
      outageUntil = Date.now() + fetchCooldown
      return 'unavailable'
    } finally {
      clearTimeout(timer)
    }
  }

  /** Whether a kid never seen may cost a fetch now. */
  function mayFetchUnknown (now: number): boolean {
    if (now - window.start >= fetchCooldown) window = { start: now, fetches: 0 }
    return window.fetches++ < unknownKidFetches
  }

  /** A bounded map: the oldest entry goes first. */
  function remember<V> (map: Map<string, V>, id: string, value: V): void {
    map.delete(id)
    if (map.size >= maxKeys) map.delete(map.keys().next().value as string)
    map.set(id, value)
  }

  return async function publicKey (kid, alg) {
    const id = `${alg}:${kid}`
    const isFresh = () => Date.now() < (known.get(id)?.freshUntil ?? 0)
    // One fetch at a time: the one under way may bring this key.
    for (let pending = fetching; pending !== undefined && !isFresh(); pending = fetching) await pending
    const copy = known.get(id)
    if (copy !== undefined && isFresh()) return copy.pem
    const now = Date.now()
    let result: FetchResult
    if (now < outageUntil) {
      result = 'unavailable'
    } else if (copy === undefined && ((missing.get(id) ?? 0) > now || !mayFetchUnknown(now))) {
      result = 'missing'
    } else {
      fetching = fetchKey(kid, alg, id).finally(() => { fetching = undefined })
      result = await fetching
    }
    if (result === 'found') return known.get(id)!.pem
    // An outage, not a removal: the key we had bridges it, for maxStale.
    if (result === 'unavailable' && copy !== undefined && Date.now() < copy.freshUntil + maxStale) return copy.pem
    throw result === 'unavailable' ? new JwksUnavailableError() : new errors.InvalidTokenError()
  }
}

// `node --import tsx examples/resource-server.ts`: AUTH_ISSUER is the auth server's TOKEN_ISSUER;
// INTROSPECTION_CLIENT_ID and INTROSPECTION_CLIENT_SECRET, the same as the auth server's, add POST /transfers.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { AUTH_ISSUER: issuer, AUTH_AUDIENCE: audience, INTROSPECTION_CLIENT_ID: clientId, INTROSPECTION_CLIENT_SECRET: clientSecret } = process.env
  if (issuer === undefined || issuer === '') throw new Error('AUTH_ISSUER must be the auth server\'s base URL, e.g. http://127.0.0.1:3000')
  const app = await buildResourceServer(
    {
      issuer,
      ...(audience === undefined ? {} : { audience }),
      ...(clientId === undefined || clientSecret === undefined ? {} : { introspection: { clientId, clientSecret } })
    },
    { logger: { level: process.env.LOG_LEVEL ?? 'info', redact: ['req.headers.authorization'] } }
  )
  await serve(app, 3001)
}
