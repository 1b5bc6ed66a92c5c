// Micro-benchmark of the per-request work behind `authenticate` and POST /auth/refresh, in one
// process, nanoseconds per call: `node --import tsx bench/verify.ts`. Not part of `npm run bench`;
// it explains the figures that one prints. Env: VERIFY_MS (time per case, default 300).
import fastifyJwt from '@fastify/jwt'
import { createSigner, createVerifier } from 'fast-jwt'
import Fastify from 'fastify'
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import tokenAuth, { type TokenAuthOptions } from '../lib/index.js'

const ACCESS_SECRET = 'bench-access-secret-0123456789-abcdefghijklmnop'
const REFRESH_SECRET = 'bench-refresh-secret-0123456789-abcdefghijklmno'
const MS = Number(process.env.VERIFY_MS ?? 300)
const USER = { id: 'user-1', claims: { username: 'alice' } }

const options: TokenAuthOptions = {
  accessTokenSecret: ACCESS_SECRET,
  refreshTokenSecret: REFRESH_SECRET,
  routes: false
}

/** Runs `fn` for about MS milliseconds after a warm-up; nanoseconds per call. */
function time (fn: () => unknown): number {
  for (let i = 0; i < 2000; i++) fn()
  let calls = 0
  const start = performance.now()
  let elapsed = 0
  while (elapsed < MS) {
    for (let i = 0; i < 500; i++) fn()
    calls += 500
    elapsed = performance.now() - start
  }
  return (elapsed * 1e6) / calls
}

/** Like `time`, for async work that has to run one call after another. */
async function timeAsync (fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 500; i++) await fn()
  let calls = 0
  const start = performance.now()
  let elapsed = 0
  while (elapsed < MS) {
    for (let i = 0; i < 100; i++) await fn()
    calls += 100
    elapsed = performance.now() - start
  }
  return (elapsed * 1e6) / calls
}

function report (name: string, ns: number): void {
  console.log(`${name.padEnd(74)} ${(ns / 1000).toFixed(2).padStart(7)} µs/call`)
}

async function main (): Promise<void> {
  const app = Fastify()
  await app.register(tokenAuth, options)
  await app.ready()
  const uncached = Fastify()
  await uncached.register(tokenAuth, { ...options, verifyCacheSize: 0 })
  await uncached.ready()
  const diy = Fastify()
  await diy.register(fastifyJwt, { secret: ACCESS_SECRET })
  await diy.ready()

  const { accessToken, sessionId } = await app.tokenAuth.issueSession(USER)
  const uncachedToken = (await uncached.tokenAuth.issueSession(USER)).accessToken
  const diyToken = diy.jwt.sign({ sub: USER.id, sid: sessionId, jti: 'y'.repeat(22), username: 'alice' }, { expiresIn: '15m' })
  const key = ACCESS_SECRET

  console.log(`access token: ${accessToken.length} characters; node ${process.version}`)
  console.log('\n-- verifying the same access token again and again (what the protected-route benchmark does)')
  report('app.tokenAuth.verifyAccessToken (plugin defaults: verify cache 1000)', time(() => app.tokenAuth.verifyAccessToken(accessToken)))
  report('app.tokenAuth.verifyAccessToken (verifyCacheSize: 0)', time(() => uncached.tokenAuth.verifyAccessToken(uncachedToken)))
  report('@fastify/jwt app.jwt.verify (DIY, no cache)', time(() => diy.jwt.verify(diyToken)))
  const plain = createVerifier({ key, algorithms: ['HS256'] })
  report('fast-jwt createVerifier({ key }) (no cache)', time(() => plain(accessToken)))
  const cached = createVerifier({ key, algorithms: ['HS256'], cache: 1000 })
  report('fast-jwt createVerifier({ key, cache: 1000 }) (key = sha256 hex of the token)', time(() => cached(accessToken)))
  const byToken = createVerifier({ key, algorithms: ['HS256'], cache: 1000, cacheKeyBuilder: (token: string) => token })
  report('fast-jwt createVerifier({ key, cache: 1000, cacheKeyBuilder: token => token })', time(() => byToken(accessToken)))
  const memo = new Map([[accessToken, plain(accessToken)]])
  report('Map.get(token) (lower bound of a cache keyed by the token itself)', time(() => memo.get(accessToken)))
  report('sha256(token) hex via createHash (what fast-jwt hashes for its cache key)', time(() => createHash('sha256').update(accessToken).digest('hex')))

  console.log('\n-- the building blocks of one refresh (a rotation signs two tokens)')
  const refreshTokens = await Promise.all(Array.from({ length: 20_000 }, () => app.tokenAuth.issueSession(USER)))
  let next = 0
  report('app.tokenAuth.rotateRefreshToken (memory store, fresh token each call)', await timeAsync(async () => {
    const tokens = refreshTokens[next++ % refreshTokens.length] as { refreshToken: string }
    const rotated = await app.tokenAuth.rotateRefreshToken(tokens.refreshToken)
    tokens.refreshToken = rotated.refreshToken
  }))
  report('app.tokenAuth.signAccessToken', time(() => app.tokenAuth.signAccessToken(USER.id, sessionId, USER.claims)))
  const signer = createSigner({ key: REFRESH_SECRET, algorithm: 'HS256' })
  const now = Math.floor(Date.now() / 1000)
  report('fast-jwt createSigner HS256 sign (refresh-token claims)', time(() => signer({ sub: USER.id, sid: sessionId, jti: 'z'.repeat(43), iat: now, exp: now + 3600 })))
  // A JWT of refresh-token claims, signed here: the plugin's own refresh tokens are opaque to the bench.
  const refreshJwt = signer({ sub: USER.id, sid: sessionId, jti: 'z'.repeat(43), iat: now, exp: now + 3600 })
  const refreshVerifier = createVerifier({ key: REFRESH_SECRET, algorithms: ['HS256'] })
  report('fast-jwt verify HS256 (a JWT of refresh-token claims, no cache; the DIY refresh)', time(() => refreshVerifier(refreshJwt)))
  report('randomBytes(16).toString(\'base64url\') (randomId, per access token)', time(() => randomBytes(16).toString('base64url')))
  report('randomUUID() (Node keeps a pool of entropy)', time(() => randomUUID()))
  report('createHash(sha256).update(jti).digest(base64url) (what a store-side hash of the id would add; none since the stored hash comes from the tag\'s HMAC)', time(() => createHash('sha256').update('x'.repeat(43)).digest('base64url')))
  report('createHmac(sha256).update(jti).digest(base64url) (successorId, and each tag: three per refresh)', time(() => createHmac('sha256', REFRESH_SECRET).update('x'.repeat(43)).digest('base64url')))
  report('JSON.parse(JSON.stringify(claims)) (MemoryStore copyClaims, per copy)', time(() => JSON.parse(JSON.stringify(USER.claims))))
  report('setTimeout + clearTimeout (the store deadline, per store call)', time(() => clearTimeout(setTimeout(() => {}, 5000))))

  await Promise.all([app.close(), uncached.close(), diy.close()])
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
