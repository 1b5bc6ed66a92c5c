// examples/resource-server.ts against the example auth server (examples/app.ts on EdDSA, ES256
// or RS256 with `jwks: true`), both over real HTTP on 127.0.0.1:0: the resource server trusts
// the auth server's access tokens through its JWKS route, and nothing else.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildApp, configFromEnv } from '../examples/app.js'
import { buildResourceServer, type ResourceServerOptions } from '../examples/resource-server.js'
import { DPOP_ALGORITHMS } from '../lib/index.js'
import { type DpopKey, dpopKey, proof } from './dpop-helpers.js'
import { CHALLENGE, INVALID_REQUEST, INVALID_TOKEN, PASSWORD, sleep } from './helpers.js'
import { ALICE_ID, BASE_ENV, BOB, BOB_ID, BOB_PASSWORD, noIncidents } from './security/harness.js'
import {
  type AsymmetricAlg, claimsOf, EXPIRED, forgeAsymmetric, forgeHmac, generateKeys, headerOf, INVALID, type KeyPair, MALFORMED, MISSING,
  nowSeconds, randomId, unsigned
} from './security/forge.js'

const JWKS_PATH = '/.well-known/jwks.json'
/** The resource server's credentials at the auth server's introspection endpoint. */
const INTROSPECTION = { clientId: 'resource-server', clientSecret: 'rS4kQ9wE2tY7uI1oP6aZ3xC8vB5nM0lKj' }
const JWKS_UNAVAILABLE = 'JWKS_UNAVAILABLE'
const INVALID_DPOP_PROOF = 'FST_TOKEN_AUTH_INVALID_DPOP_PROOF'
/** RFC 9449 §7.1: the `algs` the resource server names, the package's DPOP_ALGORITHMS, space-separated. */
const ALGS = `algs="${DPOP_ALGORITHMS.join(' ')}"`
/** The challenge to a request without credentials at a resource server that reads DPoP too. */
const BOTH_CHALLENGE = `Bearer, DPoP ${ALGS}`
const dpopChallenge = (error: string, description?: string): string =>
  `DPoP error="${error}", ${description === undefined ? '' : `error_description="${description}", `}${ALGS}`

/**
 * The auth server behind one listener of its own, so its URL (its issuer) is known before the
 * app is built and survives a restart: `deploy` swaps in a new app instance with other keys.
 * Counts the requests for its JWKS, and can go down (connections cut) or hang (never answers).
 */
class AuthServer {
  jwksHits = 0
  mode: 'up' | 'down' | 'hung' = 'up'
  readonly url: string
  readonly #server: http.Server
  #app: FastifyInstance | undefined
  #handler: http.RequestListener | undefined
  #env: Record<string, string> = {}

  private constructor (server: http.Server) {
    this.#server = server
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  /** `env` adds to the example's environment, e.g. `DPOP: 'optional'`. */
  static async start (t: Test, keys: KeyPair, env: Record<string, string> = {}): Promise<AuthServer> {
    const server = http.createServer((request, response) => { auth.#route(request, response) })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const auth = new AuthServer(server)
    auth.#env = env
    t.teardown(() => auth.close())
    await auth.deploy(keys)
    return auth
  }

  /** (Re)starts the auth server signing with `keys`; `previous` keeps verifying (and is published). */
  async deploy (keys: KeyPair, previous?: KeyPair): Promise<void> {
    const config = configFromEnv({
      ...BASE_ENV,
      LOG_LEVEL: 'silent',
      ACCESS_TOKEN_ALG: keys.alg,
      ACCESS_TOKEN_PRIVATE_KEY: keys.privatePem,
      ...(previous === undefined ? {} : { ACCESS_TOKEN_PREVIOUS_PUBLIC_KEY: previous.publicPem }),
      TOKEN_ISSUER: this.url,
      INTROSPECTION_CLIENT_ID: INTROSPECTION.clientId,
      INTROSPECTION_CLIENT_SECRET: INTROSPECTION.clientSecret,
      ...this.#env
    })
    let handler: http.RequestListener | undefined
    // The app never listens: requests reach it through this server's listener.
    const app = await buildApp(config, { serverFactory: (listener) => { handler = listener; return http.createServer() } })
    await app.ready()
    const old = this.#app
    this.#app = app
    this.#handler = handler
    await old?.close()
  }

  #route (request: http.IncomingMessage, response: http.ServerResponse): void {
    if (request.url === JWKS_PATH) this.jwksHits++
    if (this.mode === 'down') request.socket.destroy()
    else if (this.mode === 'up') this.#handler!(request, response)
  }

  /**
   * Logs a demo user in; its access token, its type and its refresh token (from the cookie).
   * With `dpop`, a proof of that key binds the session (the auth server needs `DPOP`).
   */
  async login (username = 'alice', password = username === BOB ? BOB_PASSWORD : PASSWORD, dpop?: DpopKey): Promise<{ accessToken: string, tokenType: string, refreshToken: string }> {
    const url = `${this.url}/auth/login`
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(dpop === undefined ? {} : { dpop: await proof(dpop, 'POST', url) }) },
      body: JSON.stringify({ username, password })
    })
    if (response.status !== 200) throw new Error(`login failed: ${response.status} ${await response.text()}`)
    const cookie = response.headers.getSetCookie().find((line) => line.startsWith('refresh_token='))
    const { accessToken, tokenType } = await response.json()
    return { accessToken, tokenType, refreshToken: /^refresh_token=([^;]*)/.exec(cookie ?? '')?.[1] ?? '' }
  }

  async close (): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise((resolve) => this.#server.close(resolve))
    await this.#app?.close()
  }
}

/** The resource server for `issuer`, listening on 127.0.0.1:0; returns its base URL. */
async function startResourceServer (t: Test, issuer: string, options: Partial<ResourceServerOptions> = {}): Promise<string> {
  const app = await buildResourceServer({ issuer, ...options })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

async function whoami (resourceServer: string, token: string | undefined, authorization = `Bearer ${token}`) {
  const response = await fetch(`${resourceServer}/whoami`, token === undefined ? {} : { headers: { authorization } })
  return { status: response.status, headers: response.headers, body: await response.json() }
}

async function accepted (t: Test, resourceServer: string, token: string, sub: string, name = 'accepted'): Promise<void> {
  const reply = await whoami(resourceServer, token)
  t.equal(reply.status, 200, name)
  t.same(reply.body, { sub }, `${name}: the verified sub`)
  t.equal(reply.headers.get('www-authenticate'), null)
}

/** Refused with `status` and `code` and the RFC 6750 challenge, as a JSON error (never a 500). */
async function refused (t: Test, resourceServer: string, token: string | undefined, name: string, expected: { status?: number, code?: string, challenge?: string | null, authorization?: string } = {}): Promise<void> {
  const reply = await whoami(resourceServer, token, expected.authorization)
  t.equal(reply.status, expected.status ?? 401, `${name}: status`)
  t.equal(reply.body.code, expected.code ?? INVALID, `${name}: code`)
  t.equal(reply.headers.get('www-authenticate'), expected.challenge === undefined ? INVALID_TOKEN : expected.challenge, `${name}: challenge`)
  t.match(reply.headers.get('content-type'), /^application\/json/)
}

interface Reply { status: number, headers: http.IncomingHttpHeaders, body: Record<string, unknown> }

/** A request over node:http, whose header values may be arrays: a header sent twice, which fetch cannot do. */
async function send (url: string, method: string, headers: http.OutgoingHttpHeaders): Promise<Reply> {
  return await new Promise((resolve, reject) => {
    const request = http.request(url, { method, headers }, (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => { text += chunk })
      response.on('end', () => resolve({ status: response.statusCode as number, headers: response.headers, body: JSON.parse(text) }))
    })
    request.on('error', reject)
    request.end()
  })
}

/** `Authorization: <scheme> <token>`, and `dpop` as the DPoP header(s) when given. */
async function withProof (url: string, token: string, dpop: string | string[] | undefined, { scheme = 'DPoP', method = 'GET' } = {}): Promise<Reply> {
  return await send(url, method, { authorization: `${scheme} ${token}`, ...(dpop === undefined ? {} : { dpop }) })
}

/** Refused with 401, `code` and `challenge`, as the JSON error the service answers with. */
function refusedWith (t: Test, reply: Reply, name: string, code: string, challenge: string): void {
  t.equal(reply.status, 401, `${name}: status`)
  t.equal(reply.body.code, code, `${name}: code`)
  t.equal(reply.headers['www-authenticate'], challenge, `${name}: challenge`)
  t.match(reply.headers['content-type'], /^application\/json/, `${name}: a JSON error`)
}

/** Access-token claims for `issuer`, as the example issues them for alice, valid for a minute. */
function claims (issuer: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = nowSeconds()
  return { username: 'alice', role: 'admin', sub: ALICE_ID, sid: randomId(), jti: randomId(), iat: now, exp: now + 60, iss: issuer, ...extra }
}

for (const alg of ['EdDSA', 'ES256', 'RS256'] as AsymmetricAlg[]) {
  t.test(`${alg}: the auth server's access tokens verify at the resource server, with the key fetched once from its JWKS`, async (t) => {
    const auth = await AuthServer.start(t, generateKeys(alg))
    const resourceServer = await startResourceServer(t, auth.url)
    const alice = await auth.login()
    t.match(headerOf(alice.accessToken), { alg, typ: 'at+jwt', kid: String })
    await accepted(t, resourceServer, alice.accessToken, ALICE_ID, 'alice')
    t.equal(auth.jwksHits, 1, 'the key was fetched over HTTP from the JWKS route')
    await accepted(t, resourceServer, (await auth.login(BOB)).accessToken, BOB_ID, 'bob')
    t.equal(auth.jwksHits, 1, 'and kept: the same key is not fetched again')
  })
}

t.test('refuses every token that is not a valid access token of the issuer', async (t) => {
  const keys = generateKeys('EdDSA')
  const auth = await AuthServer.start(t, keys)
  const resourceServer = await startResourceServer(t, auth.url)
  const { accessToken, refreshToken } = await auth.login()
  await accepted(t, resourceServer, accessToken, ALICE_ID)
  const header = headerOf(accessToken)
  // The control: a token signed here with the auth server's key is accepted, so each refusal
  // below is due to the one thing it changes.
  await accepted(t, resourceServer, forgeAsymmetric(header, claims(auth.url), keys.privateKey, 'EdDSA'), ALICE_ID, 'hand-signed control')

  await refused(t, resourceServer, undefined, 'no Authorization header', { code: MISSING, challenge: BOTH_CHALLENGE })
  await refused(t, resourceServer, accessToken, 'two tokens in the header', { status: 400, code: MALFORMED, challenge: INVALID_REQUEST, authorization: `Bearer ${accessToken} ${accessToken}` })
  // node:http sends each value of an array as a header line of its own.
  const twice = await send(`${resourceServer}/whoami`, 'GET', { authorization: [`Bearer ${accessToken}`, 'Bearer not-a-jwt'] as unknown as string })
  t.equal(twice.status, 400, 'Authorization sent twice: status (Node would keep the first, unseen)')
  t.equal(twice.body.code, MALFORMED, 'Authorization sent twice: code')
  t.equal(twice.headers['www-authenticate'], INVALID_REQUEST, 'Authorization sent twice: challenge')
  await refused(t, resourceServer, 'not-a-jwt', 'not a JWT')
  t.throws(() => headerOf(refreshToken), 'the refresh token is opaque: no JOSE header')
  await refused(t, resourceServer, refreshToken, 'the refresh token as a Bearer token')
  // Key confusion: the public key is public, so an HS256 "signature" made with it as the HMAC
  // secret is something anyone can produce.
  await refused(t, resourceServer, forgeHmac({ ...header, alg: 'HS256' }, claims(auth.url), keys.publicPem), 'HS256 with the public key PEM as secret')
  await refused(t, resourceServer, unsigned({ ...header, alg: 'none' }, claims(auth.url)), 'alg none')
  const [head, , signature] = accessToken.split('.')
  const tampered = Buffer.from(JSON.stringify({ ...claimsOf(accessToken), sub: BOB_ID })).toString('base64url')
  await refused(t, resourceServer, `${head}.${tampered}.${signature}`, 'payload changed (sub), signature kept')
  await refused(t, resourceServer, forgeAsymmetric({ ...header, typ: 'JWT' }, claims(auth.url), keys.privateKey, 'EdDSA'), 'signed by the issuer, typ JWT')
  await refused(t, resourceServer, forgeAsymmetric(header, claims(auth.url, { iss: undefined }), keys.privateKey, 'EdDSA'), 'signed by the issuer, no iss')
  await refused(t, resourceServer, forgeAsymmetric(header, claims(auth.url, { sid: undefined }), keys.privateKey, 'EdDSA'), 'signed by the issuer, no sid')
  const past = nowSeconds() - 120
  await refused(t, resourceServer, forgeAsymmetric(header, claims(auth.url, { iat: past, exp: past + 60 }), keys.privateKey, 'EdDSA'), 'signed by the issuer, expired', { code: EXPIRED })
  t.equal(auth.jwksHits, 1, 'none of these fetched the JWKS again')
  noIncidents(t)
})

t.test('tokens of another issuer, or naming their own key source, never make it fetch anywhere else', async (t) => {
  const auth = await AuthServer.start(t, generateKeys('EdDSA'))
  const otherKeys = generateKeys('EdDSA')
  const other = await AuthServer.start(t, otherKeys)
  const resourceServer = await startResourceServer(t, auth.url)
  const foreign = (await other.login()).accessToken
  // The control: that token is good, for a resource server that trusts the other issuer.
  await accepted(t, await startResourceServer(t, other.url), foreign, ALICE_ID, 'at its own issuer\'s resource server')
  const otherHits = other.jwksHits

  await refused(t, resourceServer, foreign, 'a token of another issuer')
  t.equal(auth.jwksHits, 0, 'its iss is not ours: no fetch at all')
  // Claims our issuer, signed with the attacker's key, and points at the attacker's JWKS.
  const jwks = `${other.url}${JWKS_PATH}`
  const pointing = forgeAsymmetric({ ...headerOf(foreign), jku: jwks, x5u: jwks }, claims(auth.url), otherKeys.privateKey, 'EdDSA')
  await refused(t, resourceServer, pointing, 'our iss, the attacker\'s key, jku/x5u to the attacker\'s JWKS')
  t.equal(other.jwksHits, otherHits, 'jku and x5u are ignored: the attacker\'s JWKS is never fetched')
  t.equal(auth.jwksHits, 1, 'the kid is looked up at the trusted issuer only, and not found')
})

t.test('unknown kids are refused, and fetch the JWKS a bounded number of times', async (t) => {
  const auth = await AuthServer.start(t, generateKeys('EdDSA'))
  const fetchCooldown = 1500
  const resourceServer = await startResourceServer(t, auth.url, { fetchCooldown, unknownKidFetches: 3 })
  const { accessToken } = await auth.login()
  await accepted(t, resourceServer, accessToken, ALICE_ID)
  t.equal(auth.jwksHits, 1, 'a first kid: fetch 1 of 3 in this window')

  const stray = generateKeys('EdDSA')
  const withKid = (kid: string) => forgeAsymmetric({ alg: 'EdDSA', typ: 'at+jwt', kid }, claims(auth.url), stray.privateKey, 'EdDSA')
  const sameKid = randomId()
  for (let i = 0; i < 5; i++) await refused(t, resourceServer, withKid(sameKid), `the same unknown kid, ${i}`)
  t.equal(auth.jwksHits, 2, 'a kid the JWKS did not list is remembered: one fetch (get-jwks alone would fetch 5 times)')
  for (let i = 0; i < 10; i++) await refused(t, resourceServer, withKid(randomId()), `a new unknown kid, ${i}`)
  await Promise.all(Array.from({ length: 10 }, (_, i) => refused(t, resourceServer, withKid(randomId()), `a new unknown kid, concurrent ${i}`)))
  t.equal(auth.jwksHits, 3, '20 invented kids: one more fetch, the window\'s 3 are spent')
  await accepted(t, resourceServer, accessToken, ALICE_ID, 'a known key still verifies meanwhile')

  await sleep(fetchCooldown + 50)
  await refused(t, resourceServer, withKid(randomId()), 'an unknown kid in the next window')
  t.equal(auth.jwksHits, 4, 'a rate, not a permanent block: a new key of the issuer is still found')
})

t.test('key rotation: old tokens keep verifying, new keys are fetched, removed keys stop verifying', async (t) => {
  const oldKeys = generateKeys('EdDSA')
  const newKeys = generateKeys('EdDSA')
  const auth = await AuthServer.start(t, oldKeys)
  const resourceServer = await startResourceServer(t, auth.url)
  const before = (await auth.login()).accessToken
  await accepted(t, resourceServer, before, ALICE_ID, 'a token of the first key')
  t.equal(auth.jwksHits, 1)

  // Restart with the new key signing and the old one kept as a verify-only, published key.
  await auth.deploy(newKeys, oldKeys)
  const after = (await auth.login(BOB)).accessToken
  t.not(headerOf(after).kid, headerOf(before).kid, 'the new generation signs with another kid')
  await accepted(t, resourceServer, after, BOB_ID, 'a token of the new key')
  t.equal(auth.jwksHits, 2, 'the new kid was fetched')
  await accepted(t, resourceServer, before, ALICE_ID, 'the token of the old key, after the restart')
  const me = await fetch(`${auth.url}/me`, { headers: { authorization: `Bearer ${before}` } })
  t.equal(me.status, 200, 'nobody is logged out: the restarted auth server accepts it too')
  const keyTtl = 300
  const shortLived = await startResourceServer(t, auth.url, { keyTtl })
  await accepted(t, shortLived, before, ALICE_ID, 'old key, at a resource server that keeps keys briefly')

  // The old key's tokens have expired: retire it.
  await auth.deploy(newKeys)
  const fresh = await startResourceServer(t, auth.url)
  await refused(t, fresh, before, 'the old key, at a fresh resource server')
  await accepted(t, fresh, after, BOB_ID, 'the new key, at a fresh resource server')
  await sleep(keyTtl + 50)
  await refused(t, shortLived, before, 'the old key, at a running resource server once its copy is older than keyTtl')
  await accepted(t, shortLived, after, BOB_ID, 'the new key there')
})

t.test('JWKS unreachable: 503 with Retry-After (never 500, never a guess), fetches bounded, recovery without restart', async (t) => {
  const auth = await AuthServer.start(t, generateKeys('EdDSA'))
  const { accessToken } = await auth.login()
  const fetchCooldown = 1000
  const unavailable = { status: 503, code: JWKS_UNAVAILABLE, challenge: null }

  auth.mode = 'down'
  const cold = await startResourceServer(t, auth.url, { fetchCooldown })
  for (let i = 0; i < 5; i++) await refused(t, cold, accessToken, `connections cut, request ${i}`, unavailable)
  const retryAfter = (await whoami(cold, accessToken)).headers.get('retry-after')
  t.equal(retryAfter, '1', 'Retry-After: the cooldown, in whole seconds')
  t.equal(auth.jwksHits, 1, 'one fetch attempt per cooldown, not one per request')
  auth.mode = 'up'
  await sleep(fetchCooldown + 50)
  await accepted(t, cold, accessToken, ALICE_ID, 'once the JWKS is back')

  // A key already fetched bridges an outage for maxStale past its keyTtl, not longer.
  const keyTtl = 200
  const maxStale = 1000
  const warm = await startResourceServer(t, auth.url, { keyTtl, maxStale, fetchCooldown: 100 })
  await accepted(t, warm, accessToken, ALICE_ID, 'warm-up')
  auth.mode = 'down'
  await sleep(keyTtl + 50)
  await accepted(t, warm, accessToken, ALICE_ID, 'past keyTtl, JWKS down: the known key still verifies')
  await sleep(maxStale)
  await refused(t, warm, accessToken, 'past keyTtl + maxStale, JWKS down', unavailable)

  auth.mode = 'hung'
  const hung = await startResourceServer(t, auth.url, { jwksTimeout: 200 })
  await refused(t, hung, accessToken, 'the JWKS never answers: the fetch times out', unavailable)
  noIncidents(t)
})

t.test('POST /transfers asks the auth server (RFC 7662): a revoked session is refused at once, and the round trip is shown', async (t) => {
  const auth = await AuthServer.start(t, generateKeys('EdDSA'))
  const resourceServer = await startResourceServer(t, auth.url, { introspection: INTROSPECTION })
  const alice = await auth.login()
  const transfer = async (token: string) => await fetch(`${resourceServer}/transfers`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })

  const allowed = await transfer(alice.accessToken)
  t.equal(allowed.status, 200, 'a live session: 200')
  t.same(await allowed.json(), { sub: ALICE_ID, accepted: true })
  const timing = /^introspection;dur=(\d+\.\d)$/.exec(allowed.headers.get('server-timing') ?? '')
  t.ok(timing, `Server-Timing shows the introspection round trip (${allowed.headers.get('server-timing')})`)

  const loggedOut = await fetch(`${auth.url}/auth/logout`, { method: 'POST', headers: { cookie: `refresh_token=${alice.refreshToken}` } })
  t.equal(loggedOut.status, 204, 'alice logs out at the auth server')
  await accepted(t, resourceServer, alice.accessToken, ALICE_ID, 'GET /whoami, verified locally, still accepts it until exp (the trade-off)')
  const refusedTransfer = await transfer(alice.accessToken)
  t.equal(refusedTransfer.status, 401, 'POST /transfers refuses it at once')
  t.equal((await refusedTransfer.json()).code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
  t.equal(refusedTransfer.headers.get('www-authenticate'), INVALID_TOKEN)

  const bob = await auth.login(BOB)
  auth.mode = 'down'
  const unreachable = await transfer(bob.accessToken)
  t.equal(unreachable.status, 503, 'the auth server unreachable: 503, never an acceptance')
  t.equal((await unreachable.json()).code, 'INTROSPECTION_UNAVAILABLE')
  t.equal(unreachable.headers.get('retry-after'), '1')
  auth.mode = 'up'
  t.equal((await transfer(bob.accessToken)).status, 200, 'back: 200')

  const wrongSecret = await startResourceServer(t, auth.url, { introspection: { ...INTROSPECTION, clientSecret: 'not-the-secret' } })
  const misconfigured = await fetch(`${wrongSecret}/transfers`, { method: 'POST', headers: { authorization: `Bearer ${bob.accessToken}` } })
  t.equal(misconfigured.status, 503, 'credentials the auth server refuses: 503, not an acceptance')
  noIncidents(t)
})

t.test('DPoP-bound tokens (RFC 9449): accepted only as DPoP, with a fresh proof of their key for this request', async (t) => {
  const auth = await AuthServer.start(t, generateKeys('EdDSA'), { DPOP: 'optional' })
  const resourceServer = await startResourceServer(t, auth.url, { introspection: INTROSPECTION })
  const key = await dpopKey()
  const bound = await auth.login('alice', PASSWORD, key)
  t.equal(bound.tokenType, 'DPoP', 'a login with a proof gets a DPoP token')
  t.same(claimsOf(bound.accessToken).cnf, { jkt: key.jkt }, 'bound to the key: cnf.jkt')
  const token = bound.accessToken
  // The proof names this server's URL: the resource server's, not the auth server's.
  const url = `${resourceServer}/whoami`
  const good = async (options: Parameters<typeof proof>[3] = {}) => await proof(key, 'GET', url, { accessToken: token, ...options })

  const first = await good()
  const ok = await withProof(url, token, first)
  t.equal(ok.status, 200, 'DPoP scheme and a proof of its key: 200')
  t.same(ok.body, { sub: ALICE_ID })
  t.equal(ok.headers['www-authenticate'], undefined)
  refusedWith(t, await withProof(url, token, first), 'the same proof again', INVALID_DPOP_PROOF,
    dpopChallenge('invalid_dpop_proof', 'this proof has been used before'))
  const lowerCase = await withProof(url, token, await good(), { scheme: 'dpop' })
  t.equal(lowerCase.status, 200, 'the scheme is case-insensitive')

  const bearer = dpopChallenge('invalid_token', 'this token is bound to a key: send it with the DPoP scheme and a proof')
  refusedWith(t, await withProof(url, token, undefined, { scheme: 'Bearer' }), 'a bound token as Bearer', INVALID, bearer)
  refusedWith(t, await withProof(url, token, await good(), { scheme: 'Bearer' }), 'a bound token as Bearer, even with a good proof', INVALID, bearer)

  const proofRefused = (reason: string) => dpopChallenge('invalid_dpop_proof', reason)
  refusedWith(t, await withProof(url, token, undefined), 'no proof', INVALID_DPOP_PROOF, proofRefused('a DPoP proof is required'))
  refusedWith(t, await withProof(url, token, await proof(await dpopKey('EdDSA'), 'GET', url, { accessToken: token })), 'a proof of another key',
    INVALID_DPOP_PROOF, proofRefused('the proof is not signed with the key this token is bound to'))
  refusedWith(t, await withProof(url, token, await proof(key, 'GET', `${auth.url}/whoami`, { accessToken: token })), 'a proof for another URL (the auth server\'s)',
    INVALID_DPOP_PROOF, proofRefused('htu does not match'))
  refusedWith(t, await withProof(url, token, await proof(key, 'GET', `${resourceServer}/transfers`, { accessToken: token })), 'a proof for another path',
    INVALID_DPOP_PROOF, proofRefused('htu does not match'))
  refusedWith(t, await withProof(url, token, await proof(key, 'POST', url, { accessToken: token })), 'a proof for another method',
    INVALID_DPOP_PROOF, proofRefused('htm does not match'))
  refusedWith(t, await withProof(url, token, await proof(key, 'GET', url)), 'a proof without ath', INVALID_DPOP_PROOF, proofRefused('ath missing'))
  const other = (await auth.login('alice', PASSWORD, key)).accessToken
  refusedWith(t, await withProof(url, token, await proof(key, 'GET', url, { accessToken: other })), 'a proof for another token of the same key',
    INVALID_DPOP_PROOF, proofRefused('ath does not match'))
  refusedWith(t, await withProof(url, token, await good({ claims: { iat: nowSeconds() - 61 } })), 'a proof older than 60 s',
    INVALID_DPOP_PROOF, proofRefused('iat too old'))
  refusedWith(t, await withProof(url, token, 'not.a-proof'), 'a DPoP header that is no JWS',
    INVALID_DPOP_PROOF, proofRefused('not a compact JWS of three base64url segments'))
  const kept = await good()
  refusedWith(t, await withProof(url, token, [kept, await good()]), 'two DPoP headers, each a good proof',
    INVALID_DPOP_PROOF, proofRefused('more than one DPoP header'))
  t.equal((await withProof(url, token, kept)).status, 200, 'a proof refused for another reason is not used up')
  refusedWith(t, await withProof(url, 'not-a-jwt', await good()), 'a bad token as DPoP', INVALID, dpopChallenge('invalid_token'))

  const transfers = `${resourceServer}/transfers`
  const transfer = await withProof(transfers, token, await proof(key, 'POST', transfers, { accessToken: token }), { method: 'POST' })
  t.equal(transfer.status, 200, 'POST /transfers: the DPoP token is introspected like a Bearer one')
  t.same(transfer.body, { sub: ALICE_ID, accepted: true })
  refusedWith(t, await withProof(transfers, token, await proof(key, 'POST', url, { accessToken: token }), { method: 'POST' }), 'POST /transfers with the proof of another route',
    INVALID_DPOP_PROOF, proofRefused('htu does not match'))
  noIncidents(t)
})

t.test('DPoP: unbound tokens keep working as Bearer and are never DPoP tokens; with dpop: false bound ones are refused', async (t) => {
  const auth = await AuthServer.start(t, generateKeys('ES256'), { DPOP: 'optional' })
  const resourceServer = await startResourceServer(t, auth.url)
  const url = `${resourceServer}/whoami`
  const key = await dpopKey()
  const unbound = await auth.login()
  t.equal(unbound.tokenType, 'Bearer', 'a login without a proof gets a Bearer token')
  t.equal(claimsOf(unbound.accessToken).cnf, undefined)
  await accepted(t, resourceServer, unbound.accessToken, ALICE_ID, 'an unbound token as Bearer')
  const stray = await withProof(url, unbound.accessToken, await proof(key, 'GET', url), { scheme: 'Bearer' })
  t.equal(stray.status, 200, 'a DPoP header beside a Bearer token is not read')
  refusedWith(t, await withProof(url, unbound.accessToken, await proof(key, 'GET', url, { accessToken: unbound.accessToken })), 'an unbound token as DPoP',
    INVALID, dpopChallenge('invalid_token', 'this token is not bound to a key: send it as Bearer'))

  const bearerOnly = await startResourceServer(t, auth.url, { dpop: false })
  const bound = (await auth.login('alice', PASSWORD, key)).accessToken
  await accepted(t, bearerOnly, unbound.accessToken, ALICE_ID, 'dpop: false, an unbound token')
  await refused(t, bearerOnly, bound, 'dpop: false, a bound token as Bearer (never without its proof)')
  await refused(t, bearerOnly, undefined, 'dpop: false, no Authorization header', { code: MISSING, challenge: CHALLENGE })
  const dpopScheme = await withProof(`${bearerOnly}/whoami`, bound, await proof(key, 'GET', `${bearerOnly}/whoami`, { accessToken: bound }))
  t.equal(dpopScheme.status, 401, 'dpop: false, the DPoP scheme is not read: status')
  t.equal(dpopScheme.body.code, MISSING, 'dpop: false, the DPoP scheme is not read: code')
  t.equal(dpopScheme.headers['www-authenticate'], CHALLENGE, 'dpop: false, the DPoP scheme is not read: challenge')
  noIncidents(t)
})
