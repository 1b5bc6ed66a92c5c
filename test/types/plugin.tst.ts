import Fastify, { type onRequestAsyncHookHandler } from 'fastify'
import { describe, expect, test } from 'tstyche'
import tokenAuth, {
  type AccessTokenClaims, MemoryStore, type LoginEvent, type LogoutAllEvent, type RefreshEvent, type RevocationReason,
  type SessionInfo, type SessionRevokedEvent, type SignedAccessToken, type TokenAuthEventMap, type TokenAuthEvents,
  type TokenAuthUser, type TokenSet, type TokenStore
} from '../../lib/index.js'

// The claims an app adds, merged the way the README tells consumers to (here through the
// source path, which is what the package name resolves to).
declare module '../../lib/index.js' {
  interface TokenAuthClaims {
    tenantId: string
    scopes: string[]
  }
}

const app = Fastify()
app.register(tokenAuth, { accessTokenSecret: 'a'.repeat(43), refreshTokenSecret: 'r'.repeat(43), routes: false })

describe('app.tokenAuth helpers', () => {
  test('signAccessToken', () => {
    expect(app.tokenAuth.signAccessToken('user-1', 'session-1')).type.toBe<SignedAccessToken>()
    expect(app.tokenAuth.signAccessToken('user-1', 'session-1').token).type.toBe<string>()
    expect(app.tokenAuth.signAccessToken('user-1', 'session-1').expiresIn).type.toBe<number>()
    // Claims are the merged TokenAuthClaims, each optional.
    expect(app.tokenAuth.signAccessToken('user-1', 'session-1', { tenantId: 't-1' })).type.not.toRaiseError()
    // @ts-expect-error Type 'number' is not assignable to type 'string'
    app.tokenAuth.signAccessToken('user-1', 'session-1', { tenantId: 1 })
    expect(app.tokenAuth.signAccessToken).type.not.toBeCallableWith(1, 'session-1')
    expect(app.tokenAuth.signAccessToken).type.not.toBeCallableWith('user-1')
  })

  test('verifyAccessToken', () => {
    // Assigned first: inside expect() the call would infer its type argument from expect's.
    const verified = app.tokenAuth.verifyAccessToken('token')
    expect(verified).type.toBe<TokenAuthUser>()
    expect(verified.scopes).type.toBe<string[]>()
    expect(app.tokenAuth.verifyAccessToken<AccessTokenClaims & { role: 'admin' }>('token').role).type.toBe<'admin'>()
    expect(app.tokenAuth.verifyAccessToken).type.not.toBeCallableWith(Buffer.from('token'))
  })

  test('issueSession and rotateRefreshToken resolve with a TokenSet', () => {
    expect(app.tokenAuth.issueSession({ id: 'user-1' })).type.toBe<Promise<TokenSet>>()
    expect(app.tokenAuth.issueSession({ id: 'user-1', claims: { tenantId: 't-1', scopes: ['read'] } }, { ip: '203.0.113.7' })).type.toBe<Promise<TokenSet>>()
    // @ts-expect-error Type 'string' is not assignable to type 'string[]'
    app.tokenAuth.issueSession({ id: 'user-1', claims: { scopes: 'read' } })
    expect(app.tokenAuth.issueSession).type.not.toBeCallableWith({ id: 1 })
    expect(app.tokenAuth.issueSession).type.not.toBeCallableWith('user-1')
    expect(app.tokenAuth.rotateRefreshToken('refresh-token')).type.toBe<Promise<TokenSet>>()
    expect(app.tokenAuth.rotateRefreshToken('refresh-token', { userAgent: 'curl/8' })).type.toBe<Promise<TokenSet>>()
    expect(app.tokenAuth.rotateRefreshToken).type.not.toBeCallableWith('refresh-token', { ip: 7 })
  })

  test('the fields of a TokenSet', () => {
    expect<TokenSet>().type.toBe<{
      accessToken: string
      tokenType: 'Bearer' | 'DPoP'
      expiresIn: number
      refreshToken: string
      refreshTokenExpiresAt: number
      sessionId: string
      userId: string
    }>()
  })

  test('revocation and listing', () => {
    expect(app.tokenAuth.revokeSession('session-1')).type.toBe<Promise<boolean>>()
    expect(app.tokenAuth.revokeSession('session-1', 'user-1')).type.toBe<Promise<boolean>>()
    expect(app.tokenAuth.revokeUserSessions('user-1')).type.toBe<Promise<string[]>>()
    expect(app.tokenAuth.listSessions('user-1')).type.toBe<Promise<SessionInfo[]>>()
    expect<SessionInfo>().type.toBe<{
      id: string
      createdAt: string
      lastUsedAt: string
      expiresAt: string
      userAgent: string | null
      ip: string | null
    }>()
    expect(app.tokenAuth.revokeSession).type.not.toBeCallableWith()
    expect(app.tokenAuth.listSessions).type.not.toBeCallableWith(1)
  })

  test('store and events are read-only', () => {
    expect(app.tokenAuth.store).type.toBe<TokenStore>()
    expect(app.tokenAuth.events).type.toBe<TokenAuthEvents>()
    // @ts-expect-error read-only
    app.tokenAuth.store = new MemoryStore()
    // @ts-expect-error read-only
    app.tokenAuth.events = {} as TokenAuthEvents
  })
})

describe('request.user behind app.authenticate', () => {
  test('authenticate is an onRequest hook', () => {
    expect(app.authenticate).type.toBe<onRequestAsyncHookHandler>()
  })

  test('the verified claims, with the app claims merged in', () => {
    app.get('/me', { onRequest: app.authenticate }, async (request) => {
      expect(request.user.sub).type.toBe<string>()
      expect(request.user.sid).type.toBe<string>()
      expect(request.user.jti).type.toBe<string>()
      expect(request.user.iat).type.toBe<number>()
      expect(request.user.exp).type.toBe<number>()
      expect(request.user.iss).type.toBe<string | undefined>()
      expect(request.user.tenantId).type.toBe<string>()
      expect(request.user.scopes).type.toBe<string[]>()
      expect(request.user).type.toBe<TokenAuthUser>()
      expect(request.user).type.not.toHaveProperty('password')
      expect(request.user).type.not.toHaveProperty('roles')
      return { id: request.user.sub }
    })
    app.get('/admin', { preHandler: app.authenticate }, async (request) => {
      expect(request.user).type.toBe<TokenAuthUser>()
    })
  })
})

describe('events', () => {
  test('listeners get the payload of their event', () => {
    app.tokenAuth.events.on('login', (event) => {
      expect(event).type.toBe<LoginEvent>()
      expect(event.userId).type.toBe<string>()
      expect(event.sessionId).type.toBe<string>()
      expect(event.ip).type.toBe<string | null>()
      expect(event.userAgent).type.toBe<string | null>()
    })
    app.tokenAuth.events.on('loginFailed', (event) => {
      expect(event.username).type.toBe<string>()
      expect(event).type.not.toHaveProperty('password')
    })
    app.tokenAuth.events.on('refresh', (event) => {
      expect(event).type.toBe<RefreshEvent>()
      expect(event.grace).type.toBe<boolean>()
    })
    app.tokenAuth.events.on('logoutAll', (event) => {
      expect(event).type.toBe<LogoutAllEvent>()
      expect(event.sessionIds).type.toBe<string[]>()
    })
    app.tokenAuth.events.once('sessionRevoked', (event) => {
      expect(event).type.toBe<SessionRevokedEvent>()
      expect(event.reason).type.toBe<RevocationReason>()
    })
  })

  test('the event names', () => {
    expect<keyof TokenAuthEventMap>().type.toBe<
      'login' | 'loginFailed' | 'refresh' | 'reuseDetected' | 'logout' | 'logoutAll' | 'sessionRevoked' |
      'newSession' | 'reauthenticated' | 'claimsUpdated' | 'refreshDenied' |
      'storeUnavailable' | 'storeRecovered' | 'unavailableResponse'
    >()
    expect<RevocationReason>().type.toBe<'logout' | 'logout-all' | 'reuse' | 'revoked' | 'user-unavailable' | 'session-limit' | 'refresh-denied'>()
  })

  test('unknown event names and wrong listeners are refused', () => {
    // @ts-expect-error Argument of type '() => void' is not assignable to parameter of type 'never'
    app.tokenAuth.events.on('signIn', () => {})
    // @ts-expect-error Property 'username' is missing in type 'LoginEvent'
    app.tokenAuth.events.on('login', (event: { username: string }) => event)
    // @ts-expect-error missing the following properties from type 'LoginEvent': sessionId, ip, userAgent
    app.tokenAuth.events.emit('login', { userId: 'user-1' })
  })
})
