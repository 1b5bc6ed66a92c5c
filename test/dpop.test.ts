import Fastify from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { MemoryStore, type TokenAuthOptions } from '../lib/index.js'
import { assertBootFails, baseOptions, decodePayload, refreshCookie } from './helpers.js'
import { dpopKey, dpopLogin, dpopMe, dpopRefresh, PASSWORD_BODY, proof } from './dpop-helpers.js'

// Sender-constrained sessions (docs/design.md, «Sender-constrained sessions (DPoP)»), end to end
// through the routes and `authenticate`, with proofs signed by jose.

const INVALID_PROOF = 'FST_TOKEN_AUTH_INVALID_DPOP_PROOF'

async function build (t: Test, overrides: Partial<TokenAuthOptions> = {}) {
  const app = Fastify()
  await app.register(tokenAuth, baseOptions({ dpop: 'optional', ...overrides }))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ sid: request.user.sid }))
  t.teardown(() => app.close())
  await app.ready()
  return app
}

t.test('a login with a proof binds the session: DPoP tokens, refreshes and protected requests need the key', async (t) => {
  const app = await build(t)
  const key = await dpopKey()
  const login = await dpopLogin(app, key)
  t.equal(login.statusCode, 200)
  t.equal(login.json().tokenType, 'DPoP')
  const accessToken = login.json().accessToken as string
  t.same(decodePayload(accessToken).cnf, { jkt: key.jkt }, 'the access token carries cnf.jkt (RFC 9449 §6.1)')
  const refreshToken = refreshCookie(login)?.value as string
  t.equal(refreshToken.split('.').length, 4, 'the refresh token names the key: session, user, thumbprint, id and tag')
  t.equal(refreshToken.split('.')[2], key.jkt)

  t.equal((await dpopMe(app, accessToken, key)).statusCode, 200, 'DPoP scheme and a proof with ath')
  const asBearer = await dpopMe(app, accessToken, undefined, 'Bearer')
  t.equal(asBearer.statusCode, 401, 'a bound token sent as Bearer is refused')
  t.equal(asBearer.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.match(asBearer.headers['www-authenticate'], /^DPoP error="invalid_token", error_description="[^"]+", algs="ES256 EdDSA Ed25519 RS256 PS256 ES384"$/)
  const noProof = await dpopMe(app, accessToken, undefined)
  t.equal(noProof.statusCode, 401)
  t.equal(noProof.json().code, INVALID_PROOF)
  t.match(noProof.headers['www-authenticate'], /^DPoP error="invalid_dpop_proof", error_description="a DPoP proof is required"/)
  const otherKey = await dpopKey()
  const wrongKey = await dpopMe(app, accessToken, otherKey)
  t.equal(wrongKey.statusCode, 401)
  t.equal(wrongKey.json().code, INVALID_PROOF)

  // A refresh without a proof, or with another key's, is refused before the store: nothing rotates.
  for (const [label, withKey] of [['no proof', undefined], ['another key', otherKey]] as const) {
    const refused = await dpopRefresh(app, refreshToken, withKey)
    t.equal(refused.statusCode, 400, label)
    t.equal(refused.json().code, INVALID_PROOF, label)
    t.equal(refreshCookie(refused), undefined, `${label}: the cookie is left alone`)
  }
  const refreshed = await dpopRefresh(app, refreshToken, key)
  t.equal(refreshed.statusCode, 200, 'the token was never spent: it still rotates, with the key')
  t.equal(refreshed.json().tokenType, 'DPoP')
  t.same(decodePayload(refreshed.json().accessToken).cnf, { jkt: key.jkt })
  const successor = refreshCookie(refreshed)?.value as string
  t.equal(successor.split('.')[2], key.jkt, 'the successor is bound to the same key')
  t.equal((await dpopRefresh(app, successor, key)).statusCode, 200)
})

t.test('a proof is used once; a second use is refused and spends nothing else', async (t) => {
  const app = await build(t)
  const key = await dpopKey()
  const login = await dpopLogin(app, key)
  const refreshToken = refreshCookie(login)?.value as string
  const once = await proof(key, 'POST', '/auth/refresh')
  const first = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshToken }, headers: { dpop: once } })
  t.equal(first.statusCode, 200)
  const replay = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshCookie(first)?.value as string }, headers: { dpop: once } })
  t.equal(replay.statusCode, 400)
  t.match(replay.json(), { code: INVALID_PROOF, message: 'Invalid DPoP proof: this proof has been used before' })
  t.equal((await dpopRefresh(app, refreshCookie(first)?.value as string, key)).statusCode, 200, 'the successor was not spent by the replay')
})

t.test('two DPoP headers are refused', async (t) => {
  const app = await build(t)
  const key = await dpopKey()
  const response = await app.inject({
    method: 'POST', url: '/auth/login', payload: PASSWORD_BODY, headers: { dpop: [await proof(key, 'POST', '/auth/login'), await proof(key, 'POST', '/auth/login')] }
  })
  t.equal(response.statusCode, 400)
  t.match(response.json(), { code: INVALID_PROOF, message: 'Invalid DPoP proof: more than one DPoP header' })
})

t.test('optional: a login without a proof is a bearer session to its end; a proof on its refresh binds only the access token', async (t) => {
  const app = await build(t)
  const login = await dpopLogin(app, undefined)
  t.equal(login.json().tokenType, 'Bearer')
  const accessToken = login.json().accessToken as string
  t.equal(decodePayload(accessToken).cnf, undefined)
  t.equal((await dpopMe(app, accessToken, undefined, 'Bearer')).statusCode, 200)
  const asDpop = await dpopMe(app, accessToken, await dpopKey())
  t.equal(asDpop.statusCode, 401, 'an unbound token is not accepted with the DPoP scheme')
  t.equal(asDpop.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  const key = await dpopKey()
  const refreshed = await dpopRefresh(app, refreshCookie(login)?.value as string, key)
  t.equal(refreshed.statusCode, 200)
  t.equal(refreshed.json().tokenType, 'DPoP', 'RFC 9449 §5: the access token is bound to the proof\'s key')
  t.same(decodePayload(refreshed.json().accessToken).cnf, { jkt: key.jkt })
  const successor = refreshCookie(refreshed)?.value as string
  t.equal(successor.split('.').length, 3, 'the session stays a bearer session')
  t.equal((await dpopRefresh(app, successor, undefined)).statusCode, 200)
  const missing = await app.inject({ method: 'GET', url: '/me' })
  t.equal(missing.statusCode, 401)
  t.equal(missing.headers['www-authenticate'], 'Bearer, DPoP algs="ES256 EdDSA Ed25519 RS256 PS256 ES384"', 'both schemes are offered (§7.1)')
})

t.test('required: no bearer login, refresh or access token', async (t) => {
  const app = await build(t, { dpop: 'required', dpopAlgorithms: ['ES256', 'EdDSA'] })
  const refused = await dpopLogin(app, undefined)
  t.equal(refused.statusCode, 400)
  t.equal(refused.json().code, 'FST_TOKEN_AUTH_DPOP_REQUIRED')
  const bearer = await app.tokenAuth.issueSession({ id: 'user-1' })
  const refresh = await dpopRefresh(app, bearer.refreshToken, await dpopKey())
  t.equal(refresh.statusCode, 400, 'a bearer session (issued before the switch) is not refreshed, even with a proof')
  t.equal(refresh.json().code, 'FST_TOKEN_AUTH_DPOP_REQUIRED')
  const me = await dpopMe(app, bearer.accessToken, undefined, 'Bearer')
  t.equal(me.statusCode, 401)
  t.match(me.headers['www-authenticate'], /^DPoP error="invalid_token", error_description="bearer tokens are not accepted: sign in with DPoP", algs="ES256 EdDSA"$/)
  const missing = await app.inject({ method: 'GET', url: '/me' })
  t.equal(missing.headers['www-authenticate'], 'DPoP algs="ES256 EdDSA"', 'only DPoP is offered')
  const key = await dpopKey('EdDSA')
  const login = await dpopLogin(app, key)
  t.equal(login.statusCode, 200)
  t.equal((await dpopMe(app, login.json().accessToken, key)).statusCode, 200)
  const rs256 = await dpopLogin(app, await dpopKey('RS256'))
  t.equal(rs256.statusCode, 400, 'an algorithm left out of dpopAlgorithms')
  t.equal(rs256.json().code, INVALID_PROOF)
})

t.test('nonces: a proof without the server\'s nonce gets use_dpop_nonce and the nonce; the retry passes', async (t) => {
  const app = await build(t, { dpopNonce: true })
  const key = await dpopKey()
  const first = await dpopLogin(app, key)
  t.equal(first.statusCode, 400)
  t.equal(first.json().code, 'FST_TOKEN_AUTH_USE_DPOP_NONCE')
  const nonce = first.headers['dpop-nonce'] as string
  t.match(nonce, /^[A-Za-z0-9_-]+$/)
  const login = await app.inject({ method: 'POST', url: '/auth/login', payload: PASSWORD_BODY, headers: { dpop: await proof(key, 'POST', '/auth/login', { nonce }) } })
  t.equal(login.statusCode, 200)
  t.equal(login.headers['dpop-nonce'], nonce, 'every answer to a proof carries the current nonce')
  const accessToken = login.json().accessToken as string
  const withoutNonce = await dpopMe(app, accessToken, key)
  t.equal(withoutNonce.statusCode, 401)
  t.equal(withoutNonce.json().code, 'FST_TOKEN_AUTH_USE_DPOP_NONCE')
  t.match(withoutNonce.headers['www-authenticate'], /^DPoP error="use_dpop_nonce", /)
  t.equal(withoutNonce.headers['dpop-nonce'], nonce)
  const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `DPoP ${accessToken}`, dpop: await proof(key, 'GET', '/me', { accessToken, nonce }) } })
  t.equal(me.statusCode, 200)
})

t.test('logout and revocation: a bound session ends only with a proof of its key', async (t) => {
  const app = await build(t)
  const key = await dpopKey()
  const login = await dpopLogin(app, key)
  const refreshToken = refreshCookie(login)?.value as string
  const accessToken = login.json().accessToken as string
  const noProof = await app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: refreshToken } })
  t.equal(noProof.statusCode, 204, 'logout answers as always')
  const revoked = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: accessToken } })
  t.equal(revoked.statusCode, 200)
  const byRefreshToken = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: refreshToken } })
  t.equal(byRefreshToken.statusCode, 200)
  const byBearer = await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(byBearer.statusCode, 204)
  t.equal((await dpopMe(app, accessToken, key)).statusCode, 200, 'but none of them ended the session')
  const revokedWithProof = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: accessToken }, headers: { dpop: await proof(key, 'POST', '/auth/revoke') } })
  t.equal(revokedWithProof.statusCode, 200)
  t.equal((await dpopMe(app, accessToken, key)).json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED', 'with a proof, revocation ends it')

  const second = await dpopLogin(app, key)
  const logout = await app.inject({
    method: 'POST', url: '/auth/logout', cookies: { refresh_token: refreshCookie(second)?.value as string }, headers: { dpop: await proof(key, 'POST', '/auth/logout') }
  })
  t.equal(logout.statusCode, 204)
  t.equal((await dpopMe(app, second.json().accessToken, key)).json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED', 'logout with a proof ends it')
})

t.test('reauthenticate keeps the binding and needs the key', async (t) => {
  const app = await build(t)
  const key = await dpopKey()
  const login = await dpopLogin(app, key)
  const refreshToken = refreshCookie(login)?.value as string
  const without = await app.inject({ method: 'POST', url: '/auth/reauthenticate', cookies: { refresh_token: refreshToken }, payload: PASSWORD_BODY })
  t.equal(without.statusCode, 400)
  t.equal(without.json().code, INVALID_PROOF)
  const response = await app.inject({
    method: 'POST', url: '/auth/reauthenticate', cookies: { refresh_token: refreshToken }, payload: PASSWORD_BODY, headers: { dpop: await proof(key, 'POST', '/auth/reauthenticate') }
  })
  t.equal(response.statusCode, 200)
  t.equal(response.json().tokenType, 'DPoP')
  t.equal(refreshCookie(response)?.value.split('.')[2], key.jkt)
})

t.test('off: the DPoP header is ignored, and a bound session\'s token is refused like an unknown one', async (t) => {
  const on = await build(t)
  const off = await build(t, { dpop: 'off' })
  const key = await dpopKey()
  const bound = refreshCookie(await dpopLogin(on, key))?.value as string
  const login = await dpopLogin(off, key)
  t.equal(login.statusCode, 200)
  t.equal(login.json().tokenType, 'Bearer')
  const refused = await dpopRefresh(off, bound, key)
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN')
})

t.test('the OAuth 2.0 format: token_type DPoP, and invalid_dpop_proof as a 400', async (t) => {
  const app = await build(t, { responseFormat: 'oauth2' })
  const key = await dpopKey()
  const login = await app.inject({
    method: 'POST', url: '/auth/login', payload: { grant_type: 'password', ...PASSWORD_BODY }, headers: { dpop: await proof(key, 'POST', '/auth/login') }
  })
  t.equal(login.statusCode, 200)
  t.equal(login.json().token_type, 'DPoP')
  const refused = await dpopRefresh(app, refreshCookie(login)?.value as string, undefined)
  t.equal(refused.statusCode, 400)
  t.match(refused.json(), { error: 'invalid_dpop_proof', code: INVALID_PROOF })
})

t.test('a store that cannot answer the replay check: 503, never a pass', async (t) => {
  const store = new MemoryStore()
  const app = await build(t, { store, storeTimeout: 200 })
  const key = await dpopKey()
  const login = await dpopLogin(app, key)
  store.useOnce = async () => await new Promise<boolean>(() => {})
  const me = await dpopMe(app, login.json().accessToken, key)
  t.equal(me.statusCode, 503)
  t.equal(me.json().code, 'FST_TOKEN_AUTH_STORE_UNAVAILABLE')
  const refresh = await dpopRefresh(app, refreshCookie(login)?.value as string, key)
  t.equal(refresh.statusCode, 503)
  t.equal(refreshCookie(refresh), undefined, 'the cookie is kept')
})

t.test('options', async (t) => {
  const store = new MemoryStore()
  const withoutUseOnce = Object.assign(Object.create(Object.getPrototypeOf(store)) as MemoryStore, store, { useOnce: undefined })
  await assertBootFails(t, { dpop: 'optional', store: withoutUseOnce }, 'store')
  await assertBootFails(t, { dpop: 'sometimes' }, 'dpop')
  await assertBootFails(t, { dpopAlgorithms: [] }, 'dpopAlgorithms')
  await assertBootFails(t, { dpopAlgorithms: ['HS256'] }, 'dpopAlgorithms')
  await assertBootFails(t, { dpopProofLifetime: 0 }, 'dpopProofLifetime')
  await assertBootFails(t, { dpopNonce: 'yes' }, 'dpopNonce')
  await store.close()
})

t.test('introspection of bound tokens: active, with cnf.jkt (RFC 9449 §6.2), no proof needed', async (t) => {
  const client = { id: 'orders-service', secret: 'kP3x9QzL1mW7vR2tY8uN4bC6dF0gH5jAq' }
  const app = await build(t, { introspection: { clients: [client] } })
  const key = await dpopKey()
  const login = await dpopLogin(app, key)
  const introspect = async (token: string) => await app.inject({
    method: 'POST',
    url: '/auth/introspect',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}` },
    payload: new URLSearchParams({ token }).toString()
  })
  const access = await introspect(login.json().accessToken)
  t.match(access.json(), { active: true, token_type: 'DPoP', cnf: { jkt: key.jkt } })
  const refresh = await introspect(refreshCookie(login)?.value as string)
  t.match(refresh.json(), { active: true, token_type: 'refresh_token', cnf: { jkt: key.jkt } })
  const bearer = await dpopLogin(app, undefined)
  t.equal((await introspect(bearer.json().accessToken)).json().token_type, 'Bearer')
  t.notOk('cnf' in (await introspect(refreshCookie(bearer)?.value as string)).json())
})

t.test('authenticate with DPoP on: malformed headers and a failing proof get their codes and challenges', async (t) => {
  const app = await build(t)
  const key = await dpopKey()
  const accessToken = (await dpopLogin(app, key)).json().accessToken as string
  const twice = await app.inject({ method: 'GET', url: '/me', headers: { authorization: [`DPoP ${accessToken}`, `DPoP ${accessToken}`] } as unknown as Record<string, string> })
  t.equal(twice.statusCode, 400)
  t.equal(twice.json().code, 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION')
  t.equal(twice.headers['www-authenticate'], 'DPoP error="invalid_request", algs="ES256 EdDSA Ed25519 RS256 PS256 ES384"')
  for (const authorization of ['DPoP ', `DPoP ${accessToken} x`, `DPoP  ${accessToken}`]) {
    const malformed = await app.inject({ method: 'GET', url: '/me', headers: { authorization } })
    t.equal(malformed.statusCode, 400, JSON.stringify(authorization.slice(0, 8)))
    t.equal(malformed.json().code, 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION')
  }
  const basic = await app.inject({ method: 'GET', url: '/me', headers: { authorization: 'Basic abc' } })
  t.equal(basic.statusCode, 401)
  t.equal(basic.json().code, 'FST_TOKEN_AUTH_MISSING_TOKEN')
  const wrongAth = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `DPoP ${accessToken}`, dpop: await proof(key, 'GET', '/me', { accessToken: 'another token' }) } })
  t.equal(wrongAth.statusCode, 401)
  t.equal(wrongAth.json().code, INVALID_PROOF)
  t.equal(wrongAth.headers['www-authenticate'], 'DPoP error="invalid_dpop_proof", error_description="ath does not match", algs="ES256 EdDSA Ed25519 RS256 PS256 ES384"')
  const otherUrl = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `DPoP ${accessToken}`, dpop: await proof(key, 'GET', '/elsewhere', { accessToken }) } })
  t.equal(otherUrl.statusCode, 401)
  t.match(otherUrl.headers['www-authenticate'], /error_description="htu does not match"/)
  // A character inside the signature: the last one's low bits are padding, so a change there may change nothing.
  const at = accessToken.length - 10
  const forged = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `DPoP ${accessToken.slice(0, at)}${accessToken[at] === 'x' ? 'y' : 'x'}${accessToken.slice(at + 1)}` } })
  t.equal(forged.statusCode, 401)
  t.equal(forged.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.equal(forged.headers['www-authenticate'], 'DPoP error="invalid_token", algs="ES256 EdDSA Ed25519 RS256 PS256 ES384"')
})

t.test('a bound token whose claims changed: CLAIMS_CHANGED with the DPoP challenge, so the client refreshes', async (t) => {
  const app = await build(t)
  const key = await dpopKey()
  const login = await dpopLogin(app, key)
  await app.tokenAuth.updateUserClaims('user-1', { username: 'alice', role: 'admin' })
  const stale = await dpopMe(app, login.json().accessToken, key)
  t.equal(stale.statusCode, 401)
  t.equal(stale.json().code, 'FST_TOKEN_AUTH_CLAIMS_CHANGED')
  t.equal(stale.headers['www-authenticate'], 'DPoP error="invalid_token", error_description="the claims of this token have changed; refresh it", algs="ES256 EdDSA Ed25519 RS256 PS256 ES384"')
  const refreshed = await dpopRefresh(app, refreshCookie(login)?.value as string, key)
  t.equal((await dpopMe(app, refreshed.json().accessToken, key)).statusCode, 200)
})

t.test('optional: a refused Bearer request is answered in the Bearer scheme (RFC 6750 §3), as without DPoP', async (t) => {
  const app = await build(t)
  const forged = await app.inject({ method: 'GET', url: '/me', headers: { authorization: 'Bearer not.a.token' } })
  t.equal(forged.statusCode, 401)
  t.equal(forged.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.equal(forged.headers['www-authenticate'], 'Bearer error="invalid_token"')
  const malformed = await app.inject({ method: 'GET', url: '/me', headers: { authorization: 'Bearer a b' } })
  t.equal(malformed.statusCode, 400)
  t.equal(malformed.headers['www-authenticate'], 'Bearer error="invalid_request"')
  const login = await dpopLogin(app, undefined)
  await app.tokenAuth.updateUserClaims('user-1', { username: 'alice', role: 'admin' })
  const stale = await dpopMe(app, login.json().accessToken, undefined, 'Bearer')
  t.equal(stale.json().code, 'FST_TOKEN_AUTH_CLAIMS_CHANGED')
  t.equal(stale.headers['www-authenticate'], 'Bearer error="invalid_token", error_description="the claims of this token have changed; refresh it"')
})

t.test('a token we did not mint makes no proof be spent: nobody without one can make the store record proofs', async (t) => {
  const store = new MemoryStore()
  const spent: string[] = []
  const useOnce = store.useOnce.bind(store)
  store.useOnce = async (key, expiresAt, now) => {
    spent.push(key)
    return await useOnce(key, expiresAt, now)
  }
  const app = await build(t, { store })
  const key = await dpopKey()
  const login = await dpopLogin(app, key)
  spent.length = 0
  const forged = `${(refreshCookie(login)?.value as string).slice(0, -4)}AAAA`
  const refreshProof = await proof(key, 'POST', '/auth/refresh')
  const refused = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: forged }, headers: { dpop: refreshProof } })
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN')
  const logout = await app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: forged }, headers: { dpop: await proof(key, 'POST', '/auth/logout') } })
  t.equal(logout.statusCode, 204)
  const revoke = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: 'garbage' }, headers: { dpop: await proof(key, 'POST', '/auth/revoke') } })
  t.equal(revoke.statusCode, 200)
  const bearer = await dpopLogin(app, undefined)
  spent.length = 0
  const unbound = await app.inject({ method: 'POST', url: '/auth/revoke', payload: { token: bearer.json().accessToken }, headers: { dpop: await proof(key, 'POST', '/auth/revoke') } })
  t.equal(unbound.statusCode, 200, 'an unbound token is revoked without looking at the proof')
  t.same(spent, [], 'no proof recorded for any of them')
  const honest = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshCookie(login)?.value as string }, headers: { dpop: refreshProof } })
  t.equal(honest.statusCode, 200, 'the proof sent with the forged token was not used up')
})
