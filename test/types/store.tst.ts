import { Cluster, Redis } from 'ioredis'
import pg from 'pg'
import { createClient, createCluster } from 'redis'
import { describe, expect, test } from 'tstyche'
import {
  type CreateResult, errors, MemoryStore, type RevocationRecord, type RotateRequest, type RotateResult, type SessionRecord, type TokenAuthErrorCode, type TokenStore
} from '../../lib/index.js'
import { migrate, postgresMigrationSql, PostgresStore, type PostgresStoreOptions } from '../../lib/stores/postgres/index.js'
import { RedisStore, type RedisStoreOptions } from '../../lib/stores/redis/index.js'
import { defineStoreConformance, rotationRequest, sessionRecord } from '../../lib/testing.js'

/** A third-party store, written against the exported contract only. */
class ArrayStore implements TokenStore {
  readonly sessions: SessionRecord[] = []
  async createSession (session: SessionRecord): Promise<CreateResult> { this.sessions.push(session); return { outcome: 'created', ended: [] } }
  async getSession (sessionId: string): Promise<SessionRecord | null> { return this.sessions.find((s) => s.id === sessionId) ?? null }
  async rotate (request: RotateRequest): Promise<RotateResult> {
    const session = this.sessions.find((s) => s.id === request.sessionId)
    return session === undefined ? { outcome: 'missing' } : { outcome: 'rotated', session }
  }

  async revokeSession (): Promise<SessionRecord | null> { return null }
  async revokeUserSessions (): Promise<string[]> { return [] }
  async listUserSessions (): Promise<SessionRecord[]> { return this.sessions }
  async updateUserClaims (): Promise<RevocationRecord[]> { return [] }
  async revokedSince (): Promise<Array<{ sessionId: string, revokedAt: number }>> { return [] }
  async sweep (): Promise<number> { return 0 }
  async close (): Promise<void> {}
}

describe('TokenStore', () => {
  test('the bundled stores and a store built on the contract implement it', () => {
    expect<TokenStore>().type.toBeAssignableFrom(new MemoryStore({ maxSessions: 10 }))
    expect<TokenStore>().type.toBeAssignableFrom(new ArrayStore())
    expect<TokenStore>().type.toBeAssignableFrom<RedisStore>()
    expect<TokenStore>().type.toBeAssignableFrom<PostgresStore>()
  })

  test('a store missing a method, or with a wrong signature, does not', () => {
    expect<TokenStore>().type.not.toBeAssignableFrom<Omit<ArrayStore, 'sweep'>>()
    expect<TokenStore>().type.not.toBeAssignableFrom<Omit<ArrayStore, 'rotate'> & { rotate (request: RotateRequest): Promise<{ outcome: 'ok' }> }>()
    expect<TokenStore>().type.not.toBeAssignableFrom<Omit<ArrayStore, 'createSession'> & { createSession (session: SessionRecord): void }>()
  })

  test('the optional methods', () => {
    expect<TokenStore['sessionIdFor']>().type.toBe<((userId: string) => string) | undefined>()
    expect<ReturnType<NonNullable<TokenStore['subscribeRevocations']>>>().type.toBe<Promise<() => Promise<void>>>()
    expect<TokenStore['useOnce']>().type.toBe<((key: string, expiresAt: number, now: number) => Promise<boolean>) | undefined>()
  })

  test('RotateResult narrows on its outcome', () => {
    const result = {} as RotateResult
    if (result.outcome === 'missing') {
      expect(result).type.not.toHaveProperty('session')
    } else {
      expect(result.session).type.toBe<SessionRecord>()
    }
    expect<RotateResult['outcome']>().type.toBe<'rotated' | 'recovered' | 'grace' | 'reused' | 'expired' | 'superseded' | 'missing'>()
  })

  test('SessionRecord holds plain JSON values', () => {
    expect<SessionRecord['claims']>().type.toBe<Record<string, unknown>>()
    expect<SessionRecord['previousTokenHash']>().type.toBe<string | null>()
    expect<SessionRecord['expiresAt']>().type.toBe<number>()
  })
})

// Statements calling the constructors, for the lines that must not compile.
const redisStore = (options: RedisStoreOptions) => new RedisStore(options)
const postgresStore = (options: PostgresStoreOptions) => new PostgresStore(options)

describe('fastify-token-auth/redis', () => {
  test('takes node-redis and ioredis clients and clusters, or a URL', () => {
    expect(new RedisStore({ client: createClient() })).type.not.toRaiseError()
    expect(new RedisStore({ client: createCluster({ rootNodes: [] }) })).type.not.toRaiseError()
    expect(new RedisStore({ client: new Redis(), prefix: 'app:' })).type.not.toRaiseError()
    expect(new RedisStore({ client: new Cluster([]) })).type.not.toRaiseError()
    expect(new RedisStore({ url: 'redis://127.0.0.1:6379', sweepBatchSize: 100 })).type.not.toRaiseError()
  })

  test('refuses other clients and wrong option types', () => {
    // @ts-expect-error Type 'Pool' is not assignable to type 'RedisClientLike | undefined'
    redisStore({ client: new pg.Pool() })
    // @ts-expect-error Type 'URL' is not assignable to type 'string'
    redisStore({ url: new URL('redis://127.0.0.1') })
    // @ts-expect-error Type 'string' is not assignable to type 'boolean | undefined'
    redisStore({ url: 'redis://127.0.0.1', closeClient: 'yes' })
  })
})

describe('fastify-token-auth/postgres', () => {
  test('takes a pg Pool', () => {
    const pool = new pg.Pool()
    expect(new PostgresStore({ pool, schema: 'auth', tablePrefix: 'fta_', preparedStatements: false })).type.not.toRaiseError()
    expect(migrate(pool, { schema: 'auth' })).type.toBe<Promise<void>>()
    expect(postgresMigrationSql()).type.toBe<string>()
  })

  test('refuses a missing pool or a client in its place', () => {
    // @ts-expect-error Property 'pool' is missing
    postgresStore({ schema: 'auth' })
    // @ts-expect-error Type 'Redis<"legacy">' is missing the following properties from type 'Pool'
    postgresStore({ pool: new Redis() })
  })
})

describe('fastify-token-auth/testing', () => {
  test('defineStoreConformance takes any runner registrar', () => {
    expect(defineStoreConformance({ test: (name: string, fn: () => Promise<void>) => fn(), createStore: () => new ArrayStore() })).type.toBe<void>()
    expect(defineStoreConformance({ test: () => {}, createStore: async () => new MemoryStore(), concurrency: 10 })).type.toBe<void>()
    // @ts-expect-error Type '{}' is not assignable to type 'TokenStore | Promise<TokenStore>'
    defineStoreConformance({ test: () => {}, createStore: () => ({}) })
  })

  test('the record builders', () => {
    const record = sessionRecord({ userId: 'user-1' })
    expect(record).type.toBe<SessionRecord>()
    expect(rotationRequest(record, 'presented', 'next', Date.now())).type.toBe<RotateRequest>()
    // @ts-expect-error Type 'number' is not assignable to type 'string'
    sessionRecord({ userId: 1 })
  })
})

describe('errors', () => {
  test('TokenAuthErrorCode lists the codes a client can receive', () => {
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom<'FST_TOKEN_AUTH_INVALID_TOKEN'>()
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom<'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED'>()
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom<'FST_TOKEN_AUTH_LOGIN_THROTTLED'>()
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom<'FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN'>()
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom<'FST_TOKEN_AUTH_STORE_UNAVAILABLE'>()
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom<'FST_TOKEN_AUTH_INTERNAL'>()
    // A boot-time configuration error never reaches a client.
    expect<TokenAuthErrorCode>().type.not.toBeAssignableFrom<'FST_TOKEN_AUTH_INVALID_OPTION'>()
    expect<TokenAuthErrorCode>().type.not.toBeAssignableFrom<string>()
    expect<TokenAuthErrorCode>().type.not.toBeAssignableFrom<'FST_JWT_NO_AUTHORIZATION_IN_HEADER'>()
  })

  test('an exhaustive switch over the codes compiles', () => {
    const describeCode = (code: TokenAuthErrorCode): string => {
      switch (code) {
        case 'FST_TOKEN_AUTH_MISSING_TOKEN':
        case 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION':
        case 'FST_TOKEN_AUTH_INVALID_TOKEN':
        case 'FST_TOKEN_AUTH_TOKEN_EXPIRED':
        case 'FST_TOKEN_AUTH_SESSION_REVOKED':
          return 'access'
        case 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN':
        case 'FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN':
        case 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN':
        case 'FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED':
        case 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED':
        case 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED':
          return 'refresh'
        default:
          return code
      }
    }
    expect(describeCode).type.toBeCallableWith('FST_TOKEN_AUTH_SESSION_NOT_FOUND')
    expect(describeCode).type.not.toBeCallableWith('FST_TOKEN_AUTH_NOPE')
  })

  test('the error classes carry their literal code and status', () => {
    const error = new errors.InvalidTokenError()
    expect(error).type.toBeAssignableTo<Error>()
    expect(error.code).type.toBe<'FST_TOKEN_AUTH_INVALID_TOKEN'>()
    expect(error.statusCode).type.toBe<401>()
    expect(new errors.InvalidOptionError('accessTokenTtl', 'must be a number')).type.toBeAssignableTo<Error>()
    expect(errors.InvalidOptionError).type.not.toBeConstructableWith('accessTokenTtl')
    expect(errors).type.not.toHaveProperty('NoSuchError')
  })

  test('TokenAuthErrorCode is exactly the codes of the errors with a status', () => {
    // The union is maintained by hand; this keeps it equal to the error classes in both directions.
    type ErrorInstance = { [Name in keyof typeof errors]: InstanceType<(typeof errors)[Name]> }[keyof typeof errors]
    // FST_TOKEN_AUTH_INTERNAL is no class's: the OAuth 2.0 format gives it to a 500 without a code.
    expect<Extract<ErrorInstance, { statusCode: number }>['code']>().type.toBe<Exclude<TokenAuthErrorCode, 'FST_TOKEN_AUTH_INTERNAL'>>()
  })
})
