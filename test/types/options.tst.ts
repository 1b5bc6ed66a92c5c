import Fastify from 'fastify'
import { describe, expect, test } from 'tstyche'
import tokenAuth, { MemoryStore, type TokenAuthOptions } from '../../lib/index.js'

// What an app may pass to `register(tokenAuth, ...)`, checked the way a consumer's editor checks it.

const secrets = { accessTokenSecret: 'a'.repeat(43), refreshTokenSecret: 'r'.repeat(43) }
const verifyCredentials = async (username: string) => (username === 'alice' ? { id: 'user-1' } : null)

describe('TokenAuthOptions', () => {
  test('the refresh secret is required, everything else optional', () => {
    expect<TokenAuthOptions>().type.toBeAssignableFrom(secrets)
    expect<TokenAuthOptions>().type.toBeAssignableFrom({ accessTokenSecret: Buffer.alloc(32, 1), refreshTokenSecret: Buffer.alloc(32, 2) })
    // The access key (accessTokenSecret or accessTokenKeys, one of them) is checked at boot only.
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ accessTokenSecret: 'a'.repeat(43) })
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({})
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, accessTokenSecret: 42 })
  })

  test('every documented option is accepted with its documented type', () => {
    // Through a parameter, as in an app: literals keep their literal types there.
    const accept = (options: TokenAuthOptions) => options
    expect(accept({
      ...secrets,
      accessTokenTtl: 900,
      refreshTokenTtl: 14 * 24 * 3600,
      sessionMaxAge: 30 * 24 * 3600,
      reuseGrace: 5,
      reuseGraceLimit: 5,
      issuer: 'https://auth.example.com',
      audience: 'api',
      clockTolerance: 0,
      verifyCredentials,
      loadUser: async (userId: string) => ({ id: userId, claims: { username: 'alice' } }),
      store: new MemoryStore(),
      prefix: '/auth',
      routes: { login: { path: '/sign-in' }, refresh: false, logout: {}, sessions: false },
      refreshTokenTransport: 'both',
      cookie: { name: 'rt', secure: true, sameSite: 'lax', path: '/', hostPrefix: true },
      allowedOrigins: ['https://app.example.com'],
      loginRateLimit: { max: 10, timeWindow: 60_000 },
      storeTimeout: 5000,
      sweepInterval: 60_000,
      revocationPollInterval: 5000,
      verifyCacheSize: 1000
    })).type.toBe<TokenAuthOptions>()
    expect(accept({ ...secrets, routes: false, loginRateLimit: false })).type.toBe<TokenAuthOptions>()
    expect(accept({ ...secrets, dbsc: true, routes: { dbscRegistration: { path: '/device/register' }, dbscRefresh: { path: '/device/refresh' } } })).type.toBe<TokenAuthOptions>()
    expect(accept({ ...secrets, dbsc: { cookieName: 'device', cookieMaxAge: 300 } })).type.toBe<TokenAuthOptions>()
  })

  test('wrong types are refused', () => {
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, accessTokenTtl: '15m' })
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, refreshTokenTransport: 'header' as const })
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, cookie: { sameSite: 'none' as const } })
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, routes: true as const })
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, routes: { login: true as const } })
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, loginRateLimit: { max: 10 } })
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, allowedOrigins: 'https://app.example.com' })
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, dbsc: 'on' as const })
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, dbsc: { cookieMaxAge: '10m' } })
    // A store that does not implement the contract.
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, store: { rotate: async () => ({ outcome: 'missing' as const }) } })
    // verifyCredentials must resolve with a user (with a string id) or null.
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, verifyCredentials: async () => ({ id: 1 }) })
    expect<TokenAuthOptions>().type.not.toBeAssignableFrom({ ...secrets, verifyCredentials: () => ({ id: 'user-1' }) })
  })
})

describe('app.register(tokenAuth, options)', () => {
  const app = Fastify()

  test('accepts valid options, including routes: { login: false } without verifyCredentials', () => {
    expect(app.register(tokenAuth, { ...secrets, verifyCredentials })).type.not.toRaiseError()
    expect(app.register(tokenAuth, { ...secrets, routes: { login: false } })).type.not.toRaiseError()
    expect(app.register(tokenAuth, { ...secrets, routes: false, prefix: '/api/auth' })).type.not.toRaiseError()
  })

  test('refuses a missing secret, a wrong type and an unknown key', () => {
    // @ts-expect-error Property 'refreshTokenSecret' is missing
    app.register(tokenAuth, { accessTokenSecret: 'a'.repeat(43) })
    // @ts-expect-error Type 'string' is not assignable to type 'number'
    app.register(tokenAuth, { ...secrets, accessTokenTtl: '15m' })
    // @ts-expect-error accesTokenTtl
    app.register(tokenAuth, { ...secrets, accesTokenTtl: 900 })
    // @ts-expect-error signup
    app.register(tokenAuth, { ...secrets, routes: { signup: false } })
    // @ts-expect-error Type '"none"' is not assignable to type '"strict" | "lax" | undefined'
    app.register(tokenAuth, { ...secrets, cookie: { sameSite: 'none' } })
  })
})
