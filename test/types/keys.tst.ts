import { generateKeyPairSync } from 'node:crypto'
import Fastify from 'fastify'
import { describe, expect, test } from 'tstyche'
import tokenAuth, {
  ACCESS_TOKEN_ALGORITHMS, type AccessTokenAlgorithm, type AccessTokenKey, type AuthUser, type ClearSiteDataType,
  createVerifyCredentials, generateAccessKey, generateSecret, hashPassword, type JwksOptions, loginThrottlePresets,
  type RateLimitOptions, type TokenAuthOptions, verifyPassword
} from '../../lib/index.js'

// Access-token keys (HS256 or asymmetric, rotation), the JWKS route, logout and login hardening.

const app = Fastify()
const refreshTokenSecret = 'r'.repeat(43)
const { privateKey, publicKey } = generateKeyPairSync('ed25519')
const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
const publicPem = publicKey.export({ type: 'spki', format: 'pem' }) as string

describe('accessTokenKeys', () => {
  test('the algorithms', () => {
    expect<AccessTokenAlgorithm>().type.toBe<'HS256' | 'EdDSA' | 'ES256' | 'RS256'>()
    expect(ACCESS_TOKEN_ALGORITHMS).type.toBe<readonly ['HS256', 'EdDSA', 'ES256', 'RS256']>()
    expect<AccessTokenKey['algorithm']>().type.toBe<AccessTokenAlgorithm>()
  })

  test('a key takes a secret, or PEM/JWK/KeyObject private and public keys', () => {
    expect<AccessTokenKey>().type.toBeAssignableFrom({ algorithm: 'HS256' as const, secret: Buffer.alloc(32, 7), kid: 'k1' })
    expect<AccessTokenKey>().type.toBeAssignableFrom({ algorithm: 'EdDSA' as const, privateKey: privatePem })
    expect<AccessTokenKey>().type.toBeAssignableFrom({ algorithm: 'EdDSA' as const, privateKey: privateKey.export({ format: 'jwk' }) })
    expect<AccessTokenKey>().type.toBeAssignableFrom({ algorithm: 'RS256' as const, publicKey: Buffer.from(publicPem) })
    expect<AccessTokenKey>().type.toBeAssignableFrom({ algorithm: 'EdDSA' as const, privateKey })
  })

  test('refused: a missing or unknown algorithm, a numeric kid', () => {
    expect<AccessTokenKey>().type.not.toBeAssignableFrom({ secret: 'x'.repeat(43) })
    expect<AccessTokenKey>().type.not.toBeAssignableFrom({ algorithm: 'HS512' as const, secret: 'x'.repeat(43) })
    expect<AccessTokenKey>().type.not.toBeAssignableFrom({ algorithm: 'none' as const })
    expect<AccessTokenKey>().type.not.toBeAssignableFrom({ algorithm: 'HS256' as const, secret: 'x'.repeat(43), kid: 1 })
  })

  test('accessTokenKeys instead of accessTokenSecret', () => {
    expect(app.register(tokenAuth, { accessTokenKeys: [{ algorithm: 'EdDSA', privateKey: privatePem }], refreshTokenSecret, routes: false })).type.not.toRaiseError()
    // Rotation: the new key signs, the retired one (public half only) still verifies.
    expect(app.register(tokenAuth, {
      accessTokenKeys: [{ algorithm: 'ES256', privateKey: privatePem, kid: '2026-06' }, { algorithm: 'EdDSA', publicKey: publicPem, kid: '2026-01' }],
      refreshTokenSecret,
      routes: false
    })).type.not.toRaiseError()
    expect(app.register(tokenAuth, { accessTokenKeys: [{ algorithm: 'HS256', secret: 'k'.repeat(43) }], refreshTokenSecret, routes: false })).type.not.toRaiseError()
    // @ts-expect-error 'algorithm' does not exist in type 'AccessTokenKey[]'
    app.register(tokenAuth, { accessTokenKeys: { algorithm: 'EdDSA', privateKey: privatePem }, refreshTokenSecret, routes: false })
    // @ts-expect-error Type '"ES384"' is not assignable to type
    app.register(tokenAuth, { accessTokenKeys: [{ algorithm: 'ES384', privateKey: privatePem }], refreshTokenSecret, routes: false })
  })

  test('key generation', () => {
    expect(generateAccessKey('RS256')).type.toBe<string>()
    expect(generateSecret()).type.toBe<string>()
    expect(generateAccessKey).type.not.toBeCallableWith('PS256')
  })
})

describe('jwks, clearSiteData and the login limits', () => {
  const keys = { accessTokenKeys: [{ algorithm: 'EdDSA' as const, privateKey: privatePem }], refreshTokenSecret }
  const accept = (options: TokenAuthOptions) => options

  test('jwks: a boolean or { path, maxAge }', () => {
    expect<JwksOptions>().type.toBe<{ path?: string, maxAge?: number }>()
    expect(accept({ ...keys, jwks: true })).type.not.toRaiseError()
    expect(accept({ ...keys, jwks: { path: '/keys.json', maxAge: 60 } })).type.not.toRaiseError()
    // @ts-expect-error Type 'string' is not assignable to type 'number'
    accept({ ...keys, jwks: { maxAge: '5m' } })
    // @ts-expect-error Type 'string' is not assignable to type 'boolean | JwksOptions | undefined'
    accept({ ...keys, jwks: 'on' })
  })

  test('clearSiteData: a boolean or a list of directives', () => {
    expect(accept({ ...keys, clearSiteData: true })).type.not.toRaiseError()
    expect(accept({ ...keys, clearSiteData: ['cookies', 'storage'] })).type.not.toRaiseError()
    expect(accept({ ...keys, clearSiteData: ['*'] })).type.not.toRaiseError()
    expect<ClearSiteDataType>().type.toBeAssignableFrom<'cache' | 'cookies' | 'storage' | 'executionContexts' | '*'>()
    // @ts-expect-error Type '"localStorage"' is not assignable to type
    accept({ ...keys, clearSiteData: ['localStorage'] })
    // @ts-expect-error Type 'string' is not assignable to type 'boolean | (
    accept({ ...keys, clearSiteData: '"cookies"' })
  })

  test('accountRateLimit and the presets', () => {
    expect(accept({ ...keys, accountRateLimit: { max: 5, timeWindow: 900_000 } })).type.not.toRaiseError()
    expect(accept({ ...keys, accountRateLimit: false })).type.not.toRaiseError()
    expect(accept({ ...keys, ...loginThrottlePresets.strict })).type.not.toRaiseError()
    // @ts-expect-error Property 'timeWindow' is missing
    accept({ ...keys, accountRateLimit: { max: 5 } })
    // @ts-expect-error Type 'true' is not assignable to type 'false | RateLimitOptions | undefined'
    accept({ ...keys, accountRateLimit: true })
    expect(loginThrottlePresets.balanced.loginRateLimit).type.toBeAssignableTo<RateLimitOptions>()
    expect(loginThrottlePresets.relaxed.accountRateLimit).type.toBeAssignableTo<RateLimitOptions>()
    expect(loginThrottlePresets).type.not.toHaveProperty('lax')
  })
})

describe('password helpers', () => {
  interface Row { id: number, email: string, passwordHash: string, disabled: boolean }

  test('hashPassword and verifyPassword', () => {
    expect(hashPassword('secret')).type.toBe<Promise<string>>()
    expect(verifyPassword('secret', 'scrypt$...')).type.toBe<Promise<boolean>>()
    expect(hashPassword).type.not.toBeCallableWith(Buffer.from('secret'))
  })

  test('createVerifyCredentials infers the user row and builds a verifyCredentials', () => {
    const verifyCredentials = createVerifyCredentials({
      findUser: async (email: string): Promise<Row | null> => null,
      passwordHash: (row) => {
        expect(row).type.toBe<Row>()
        return row.passwordHash
      },
      toAuthUser: (row) => (row.disabled ? null : { id: String(row.id), claims: { email: row.email } })
    })
    expect(verifyCredentials).type.toBeAssignableTo<NonNullable<TokenAuthOptions['verifyCredentials']>>()
    expect(verifyCredentials('alice', 'secret')).type.toBe<Promise<AuthUser | null>>()
  })

  test('refused: a numeric user id, a missing passwordHash, a custom verifyPassword of the wrong shape', () => {
    const findUser = async (): Promise<Row | undefined> => undefined
    // @ts-expect-error Type 'number' is not assignable to type 'string'
    createVerifyCredentials({ findUser, passwordHash: (row) => row.passwordHash, toAuthUser: (row) => ({ id: row.id }) })
    // @ts-expect-error 'passwordHash' is missing
    createVerifyCredentials({ findUser, toAuthUser: (row) => ({ id: row.email }) })
    createVerifyCredentials({
      findUser,
      passwordHash: (row) => row.passwordHash,
      toAuthUser: (row) => ({ id: row.email }),
      dummyHash: '$2b$12$...',
      // @ts-expect-error Type 'boolean' is not assignable to type 'Promise<boolean>'
      verifyPassword: (password: string, hash: string) => password === hash
    })
  })
})
