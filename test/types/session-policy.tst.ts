import Fastify, { type onRequestAsyncHookHandler } from 'fastify'
import { describe, expect, test } from 'tstyche'
import tokenAuth, {
  type AuthUser, type ClaimsUpdatedEvent, type NewSessionEvent, type ReauthenticatedEvent, type RefreshDecision, type RefreshDeniedEvent,
  type RefreshHookContext, type TokenAuthErrorCode, type TokenAuthOptions, type TokenAuthUser
} from '../../lib/index.js'

// The public API of session policy: step-up, claims changes, session caps and the refresh hook.

const app = Fastify()
app.register(tokenAuth, { accessTokenSecret: 'a'.repeat(43), refreshTokenSecret: 'r'.repeat(43), routes: false })

describe('step-up', () => {
  test('requireAuth returns a hook, with or without requirements', () => {
    expect(app.tokenAuth.requireAuth()).type.toBe<onRequestAsyncHookHandler>()
    expect(app.tokenAuth.requireAuth({ maxAge: 300, acr: ['mfa'] })).type.toBe<onRequestAsyncHookHandler>()
    expect(app.tokenAuth.requireAuth).type.not.toBeCallableWith({ maxAge: '300' })
    expect(app.tokenAuth.requireAuth).type.not.toBeCallableWith({ acr: 'mfa' })
  })

  test('the access token states the authentication', () => {
    expect<TokenAuthUser['auth_time']>().type.toBe<number | undefined>()
    expect<TokenAuthUser['acr']>().type.toBe<string | undefined>()
    expect<TokenAuthUser['amr']>().type.toBe<string[] | undefined>()
    expect<TokenAuthUser['cv']>().type.toBe<number | undefined>()
  })

  test('verifyCredentials may name acr and amr', () => {
    expect<AuthUser>().type.toBeAssignableFrom({ id: 'u', acr: 'mfa', amr: ['pwd', 'otp'] })
    expect<AuthUser>().type.not.toBeAssignableFrom({ id: 'u', acr: 1 })
  })
})

describe('claims changes', () => {
  test('updateUserClaims resolves with the session ids', () => {
    expect(app.tokenAuth.updateUserClaims('user-1', {})).type.toBe<Promise<string[]>>()
    expect(app.tokenAuth.updateUserClaims).type.not.toBeCallableWith('user-1')
  })
})

describe('options', () => {
  test('the session cap', () => {
    expect<TokenAuthOptions['maxSessionsPerUser']>().type.toBe<number | undefined>()
    expect<TokenAuthOptions['sessionLimitPolicy']>().type.toBe<'end-least-recent' | 'refuse' | undefined>()
  })

  test('the refresh hook answers a decision, sync or async', () => {
    const options: Partial<TokenAuthOptions> = {
      onRefresh: async (context) => {
        expect(context).type.toBe<RefreshHookContext>()
        expect(context.session.firstUserAgent).type.toBe<string | null>()
        expect(context.session.authentication.time).type.toBe<number>()
        return context.client.ip === null ? { action: 'deny', reason: 'no address' } : { action: 'shorten', expiresIn: 60 }
      },
      onRefreshTimeout: 500
    }
    expect(options).type.not.toBe<never>()
    expect<RefreshDecision>().type.toBeAssignableFrom(undefined)
    expect<RefreshDecision>().type.toBeAssignableFrom({ action: 'allow' as const })
    expect<RefreshDecision>().type.not.toBeAssignableFrom({ action: 'deny' as const })
  })
})

describe('events and error codes', () => {
  test('the new events', () => {
    app.tokenAuth.events.on('newSession', (event) => { expect(event).type.toBe<NewSessionEvent>(); expect(event.knownUserAgent).type.toBe<boolean>() })
    app.tokenAuth.events.on('reauthenticated', (event) => { expect(event).type.toBe<ReauthenticatedEvent>() })
    app.tokenAuth.events.on('claimsUpdated', (event) => { expect(event).type.toBe<ClaimsUpdatedEvent>() })
    app.tokenAuth.events.on('refreshDenied', (event) => { expect(event.reason).type.toBe<string>(); expect(event).type.toBe<RefreshDeniedEvent>() })
  })

  test('the new codes', () => {
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom('FST_TOKEN_AUTH_INSUFFICIENT_USER_AUTHENTICATION' as const)
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom('FST_TOKEN_AUTH_CLAIMS_CHANGED' as const)
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom('FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH' as const)
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom('FST_TOKEN_AUTH_SESSION_LIMIT_REACHED' as const)
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom('FST_TOKEN_AUTH_REFRESH_DENIED' as const)
    expect<TokenAuthErrorCode>().type.toBeAssignableFrom('FST_TOKEN_AUTH_REFRESH_CHECK_UNAVAILABLE' as const)
  })
})
