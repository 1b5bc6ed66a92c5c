// The refresh cookie against cookie tossing (a second cookie of the same name is refused, never
// picked), Clear-Site-Data on a successful logout only, and a Secure flag that no forwarding
// header can change.
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { MemoryStore, type TokenAuthOptions } from '../lib/index.js'
import { assertBootFails, baseOptions, build, login, me, pollOnly, refresh, refreshCookie } from './helpers.js'

const AMBIGUOUS = 'FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN'
const HOST_COOKIE = '__Host-refresh_token'
const ALL_SITE_DATA = '"cache", "cookies", "storage"'

function post (app: FastifyInstance, url: string, cookie: string | undefined, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url, headers: { ...(cookie === undefined ? {} : { cookie }), ...headers } })
}

/** 400 AMBIGUOUS: nothing issued, nothing cleared, nothing cached. */
function assertAmbiguous (t: Test, response: LightMyRequestResponse, label: string): void {
  t.equal(response.statusCode, 400, `${label}: 400`)
  t.equal(response.json().code, AMBIGUOUS, `${label}: ${AMBIGUOUS}`)
  t.equal(response.headers['set-cookie'], undefined, `${label}: no Set-Cookie (neither a new cookie nor a clearing one)`)
  t.notMatch(response.body, /eyJ/, `${label}: no token in the body`)
  t.equal(response.headers['cache-control'], 'no-store')
  t.equal(response.headers['clear-site-data'], undefined, `${label}: no Clear-Site-Data`)
}

t.test('a refresh cookie sent twice is 400 AMBIGUOUS on /refresh and /logout; nothing is rotated or revoked', async (t) => {
  // reuseGrace 0: had any of these requests rotated a token, presenting it again would be theft.
  const app = await build(t, { reuseGrace: 0, clearSiteData: true })
  const victim = await login(app)
  const planted = await login(app, 'bob')
  const token = victim.refreshToken
  const headers: Array<[label: string, cookie: string]> = [
    ['the same token twice', `refresh_token=${token}; refresh_token=${token}`],
    ['a planted cookie first', `refresh_token=${planted.refreshToken}; refresh_token=${token}`],
    ['a planted cookie last', `refresh_token=${token}; refresh_token=${planted.refreshToken}`],
    ['junk alongside, no spaces, other cookies between', `theme=dark;refresh_token=${token};lang=en;refresh_token=x`],
    ['a second one with spaces around its name', `refresh_token=${token};   refresh_token =x`],
    ['an empty second one', `refresh_token=${token}; refresh_token=`]
  ]
  for (const route of ['/auth/refresh', '/auth/logout']) {
    for (const [label, cookie] of headers) assertAmbiguous(t, await post(app, route, cookie), `${route}, ${label}`)
  }
  t.equal((await me(app, victim.accessToken)).statusCode, 200, 'the session was not revoked: its access token still works')
  const rotated = await refresh(app, token)
  t.equal(rotated.statusCode, 200, 'the victim\'s token was never rotated: it still refreshes')
  t.not(refreshCookie(rotated)?.value, token)
  t.equal((await refresh(app, planted.refreshToken)).statusCode, 200, 'nor was the planted one')
})

t.test('other cookies that merely contain the name are not duplicates', async (t) => {
  const app = await build(t)
  let token = (await login(app)).refreshToken
  for (const cookie of [
    (tok: string) => `other=refresh_token=x; refresh_token=${tok}`,
    (tok: string) => `refresh_token_old=x; old_refresh_token=y; refresh_token=${tok}`,
    (tok: string) => `flag; refresh_token=${tok}`
  ]) {
    const response = await post(app, '/auth/refresh', cookie(token))
    t.equal(response.statusCode, 200, cookie('<token>'))
    token = refreshCookie(response)!.value
  }
})

t.test('__Host- prefix: a plain-name cookie alongside (a sibling subdomain\'s) is ignored, two prefixed ones are refused', async (t) => {
  const app = await build(t, { cookie: { hostPrefix: true } })
  const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: 'alice', password: 'correct-horse-battery-staple' } })
  const cookie = refreshCookie(response, HOST_COOKIE)
  t.ok(cookie, 'login sets __Host-refresh_token')
  t.equal(cookie?.path, '/')
  const token = cookie!.value

  const plainOnly = await post(app, '/auth/refresh', `refresh_token=${token}`)
  t.equal(plainOnly.statusCode, 401, 'the plain name alone is not our cookie')
  t.equal(plainOnly.json().code, 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN')

  assertAmbiguous(t, await post(app, '/auth/refresh', `${HOST_COOKIE}=${token}; ${HOST_COOKIE}=planted`), 'two __Host- cookies')
  const alongside = await post(app, '/auth/refresh', `refresh_token=planted-by-a-subdomain; ${HOST_COOKIE}=${token}; refresh_token=again`)
  t.equal(alongside.statusCode, 200, 'plain-name cookies next to ours change nothing')
  const next = refreshCookie(alongside, HOST_COOKIE)!.value
  t.not(next, token, 'rotated')
  const logout = await post(app, '/auth/logout', `refresh_token=planted; ${HOST_COOKIE}=${next}`)
  t.equal(logout.statusCode, 204)
  t.equal(refreshCookie(logout, HOST_COOKIE)?.value, '', 'our cookie is cleared')
  t.equal((await post(app, '/auth/refresh', `${HOST_COOKIE}=${next}`)).statusCode, 401, 'and its session ended')
})

t.test('clearSiteData: the header on a successful logout, exactly', async (t) => {
  const cases: Array<[option: TokenAuthOptions['clearSiteData'], header: string | undefined]> = [
    [true, ALL_SITE_DATA],
    [['cookies'], '"cookies"'],
    [['storage', 'cache', 'executionContexts'], '"storage", "cache", "executionContexts"'],
    [['*'], '"*"'],
    [false, undefined],
    [undefined, undefined]
  ]
  for (const [option, header] of cases) {
    const app = await build(t, { clearSiteData: option })
    const session = await login(app)
    t.equal(session.response.headers['clear-site-data'], undefined, `${JSON.stringify(option)}: not on login`)
    const rotated = await refresh(app, session.refreshToken)
    t.equal(rotated.headers['clear-site-data'], undefined, `${JSON.stringify(option)}: not on refresh`)
    const logout = await post(app, '/auth/logout', `refresh_token=${refreshCookie(rotated)!.value}`)
    t.equal(logout.statusCode, 204)
    t.equal(logout.headers['clear-site-data'], header, `${JSON.stringify(option)}: ${String(header)}`)
  }
})

t.test('clearSiteData: on every 204 logout (no token, ?all=true), never on a refused or failed one', async (t) => {
  const memory = new MemoryStore()
  let storeDown = false
  const store = pollOnly(memory)
  const flaky = {
    ...store,
    revokeSession: async (...args: Parameters<typeof store.revokeSession>) => {
      if (storeDown) throw new Error('store down')
      return await store.revokeSession(...args)
    }
  }
  const app = await build(t, { clearSiteData: true, store: flaky })
  t.teardown(() => memory.close())
  const session = await login(app)
  const cookie = `refresh_token=${session.refreshToken}`

  const refused: Array<[label: string, status: number, code: string, response: Promise<LightMyRequestResponse>]> = [
    ['cross-site', 403, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST', post(app, '/auth/logout', cookie, { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' })],
    ['text/plain body', 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', post(app, '/auth/logout', cookie, { 'content-type': 'text/plain' })],
    ['?all=true without an access token', 401, 'FST_TOKEN_AUTH_MISSING_TOKEN', post(app, '/auth/logout?all=true', cookie)],
    ['?all=maybe', 400, 'FST_ERR_VALIDATION', post(app, '/auth/logout?all=maybe', cookie)],
    ['the cookie twice', 400, AMBIGUOUS, post(app, '/auth/logout', `${cookie}; ${cookie}`)]
  ]
  for (const [label, status, code, pending] of refused) {
    const response = await pending
    t.equal(response.statusCode, status, `${label}: ${status}`)
    t.equal(response.json().code, code, `${label}: ${code}`)
    t.equal(response.headers['clear-site-data'], undefined, `${label}: no Clear-Site-Data`)
  }

  storeDown = true
  const failed = await post(app, '/auth/logout', cookie)
  t.equal(failed.statusCode, 503, 'store down: 503')
  t.equal(failed.json().code, 'FST_TOKEN_AUTH_STORE_UNAVAILABLE')
  t.equal(failed.headers['retry-after'], '1')
  t.equal(failed.headers['clear-site-data'], undefined, '503: no Clear-Site-Data (the client still holds its session)')
  t.equal(failed.headers['set-cookie'], undefined, '503: the cookie is kept')
  storeDown = false

  const ended = await post(app, '/auth/logout', cookie)
  t.equal(ended.statusCode, 204)
  t.equal(ended.headers['clear-site-data'], ALL_SITE_DATA, 'the logout that ended the session')
  const noToken = await post(app, '/auth/logout', undefined)
  t.equal(noToken.statusCode, 204, 'no token: 204 (idempotent)')
  t.equal(noToken.headers['clear-site-data'], ALL_SITE_DATA, 'and the browser is told to clear')
  const other = await login(app, 'bob')
  const all = await app.inject({ method: 'POST', url: '/auth/logout?all=true', headers: { authorization: `Bearer ${other.accessToken}` } })
  t.equal(all.statusCode, 204)
  t.equal(all.headers['clear-site-data'], ALL_SITE_DATA, '?all=true')
})

t.test('clearSiteData: invalid values fail the boot', async (t) => {
  for (const value of ['yes', 1, null, {}, [], ['cookie'], ['cache', 'bogus'], [true], ['"cache"'], 'cache']) {
    await assertBootFails(t, { clearSiteData: value }, 'clearSiteData', `clearSiteData: ${JSON.stringify(value)}`)
  }
})

t.test('the Secure flag follows cookie.secure, never X-Forwarded-Proto, with or without trustProxy', async (t) => {
  for (const trustProxy of [false, true]) {
    for (const [secure, forwarded] of [[true, 'http'], [false, 'https']] as const) {
      const label = `trustProxy ${trustProxy}, cookie.secure ${secure}, X-Forwarded-Proto ${forwarded}`
      const app = Fastify({ trustProxy })
      await app.register(tokenAuth, baseOptions({ cookie: { secure } }))
      app.get('/protocol', async (request) => request.protocol)
      t.teardown(() => app.close())
      const headers = { 'x-forwarded-proto': forwarded }
      // The control: with trustProxy the app does see the forwarded scheme; the cookie must not care.
      const protocol = await app.inject({ method: 'GET', url: '/protocol', headers })
      t.equal(protocol.body, trustProxy ? forwarded : 'http', `${label}: request.protocol`)

      const loggedIn = await app.inject({ method: 'POST', url: '/auth/login', headers, payload: { username: 'alice', password: 'correct-horse-battery-staple' } })
      t.equal(loggedIn.statusCode, 200)
      t.equal(refreshCookie(loggedIn)?.secure ?? false, secure, `${label}: login cookie`)
      const rotated = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { ...headers, cookie: `refresh_token=${refreshCookie(loggedIn)!.value}` } })
      t.equal(refreshCookie(rotated)?.secure ?? false, secure, `${label}: rotated cookie`)
      const cleared = await app.inject({ method: 'POST', url: '/auth/logout', headers: { ...headers, cookie: `refresh_token=${refreshCookie(rotated)!.value}` } })
      t.equal(cleared.statusCode, 204)
      t.equal(refreshCookie(cleared)?.secure ?? false, secure, `${label}: clearing cookie`)
    }
  }
})
