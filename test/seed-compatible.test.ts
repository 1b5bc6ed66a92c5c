import t, { type Test } from 'tap'
import { buildSeedCompatibleApp } from '../examples/seed-compatible.js'
import { decodePayload } from './helpers.js'

// examples/seed-compatible.ts reproduces `GET /api/refresh/refreshtoken` (refreshToken cookie
// in, `{ accessToken }` out) with options only; the tokens underneath still rotate.

const PASSWORD = 'correct-horse-battery-staple'

async function seedApp (t: Test) {
  process.env.LOG_LEVEL = 'silent'
  const app = await buildSeedCompatibleApp({
    accessTokenSecret: 'seed-compatible-access-secret-0123456789',
    refreshTokenSecret: 'seed-compatible-refresh-secret-0123456789',
    username: 'alice',
    password: PASSWORD,
    secureCookies: true
  })
  t.teardown(() => app.close())
  return app
}

function refreshTokenCookie (response: { cookies: Array<{ name: string, value: string, path?: string, maxAge?: number, httpOnly?: boolean, sameSite?: string, secure?: boolean }> }) {
  return response.cookies.find((cookie) => cookie.name === 'refreshToken')
}

t.test('the seed API: GET /api/refresh/refreshtoken with the refreshToken cookie answers { accessToken }', async (t) => {
  const app = await seedApp(t)
  const login = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD } })
  t.equal(login.statusCode, 200)
  const cookie = refreshTokenCookie(login)
  t.match(cookie, { path: '/', httpOnly: true, secure: true, sameSite: 'Strict' }, 'the old cookie\'s name and path, so it replaces it')
  t.ok(cookie!.maxAge! > 9 * 24 * 60 * 60 - 5 && cookie!.maxAge! <= 9 * 24 * 60 * 60, 'about 9 days, as the seed service')

  const refreshed = await app.inject({ method: 'GET', url: '/api/refresh/refreshtoken', headers: { cookie: `refreshToken=${cookie!.value}` } })
  t.equal(refreshed.statusCode, 200)
  t.type(refreshed.json().accessToken, 'string', 'the field seed clients read')
  t.match(decodePayload(refreshed.json().accessToken), { _id: '678123456789', verified: true }, 'the claims seed clients read')
  const rotated = refreshTokenCookie(refreshed)
  t.ok(rotated?.value, 'the cookie is re-set, as the seed service does')
  t.not(rotated!.value, cookie!.value, 'but with a rotated token')

  const me = await app.inject({ url: '/api/me', headers: { authorization: `Bearer ${refreshed.json().accessToken as string}` } })
  t.same(me.json(), { _id: '678123456789', verified: true })
})

t.test('what the seed service lacked: replaying a token whose successor was used ends the session', async (t) => {
  const app = await seedApp(t)
  const login = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD } })
  const first = refreshTokenCookie(login)!.value
  const second = refreshTokenCookie(await app.inject({ url: '/api/refresh/refreshtoken', headers: { cookie: `refreshToken=${first}` } }))!.value
  // The successor is used: `first` is two generations old, theft even inside the reuse grace (a
  // predecessor whose successor was never used would be answered: grace, then recovery).
  const third = refreshTokenCookie(await app.inject({ url: '/api/refresh/refreshtoken', headers: { cookie: `refreshToken=${second}` } }))!.value
  const replay = await app.inject({ url: '/api/refresh/refreshtoken', headers: { cookie: `refreshToken=${first}` } })
  t.equal(replay.statusCode, 401)
  t.equal(replay.json().code, 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED')
  t.type(replay.json().message, 'string', 'seed clients read `message`')
  const after = await app.inject({ url: '/api/refresh/refreshtoken', headers: { cookie: `refreshToken=${third}` } })
  t.equal(after.statusCode, 401, 'the whole session is gone')
  t.equal(after.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', 'its newest token is now unknown')
})

t.test('refusals: no cookie, POST, cross-site GET', async (t) => {
  const app = await seedApp(t)
  const none = await app.inject({ url: '/api/refresh/refreshtoken' })
  t.equal(none.statusCode, 401)
  t.equal(none.json().code, 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN')
  t.equal(none.headers['cache-control'], 'no-store')

  const post = await app.inject({ method: 'POST', url: '/api/refresh/refreshtoken', payload: {} })
  t.equal(post.statusCode, 404, 'only the seed method exists')

  const login = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD } })
  const token = refreshTokenCookie(login)!.value
  const crossSite = await app.inject({ url: '/api/refresh/refreshtoken', headers: { cookie: `refreshToken=${token}`, 'sec-fetch-site': 'cross-site' } })
  t.equal(crossSite.statusCode, 403, 'a link or <img> on another site cannot rotate the token')
  t.equal(crossSite.json().code, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST')
  t.notOk(refreshTokenCookie(crossSite))
  const evilOrigin = await app.inject({ url: '/api/refresh/refreshtoken', headers: { cookie: `refreshToken=${token}`, origin: 'https://evil.example' } })
  t.equal(evilOrigin.statusCode, 403)
  const stillValid = await app.inject({ url: '/api/refresh/refreshtoken', headers: { cookie: `refreshToken=${token}` } })
  t.equal(stillValid.statusCode, 200, 'refused requests rotated nothing')
})
