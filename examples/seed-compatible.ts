// Migration without client changes: the same API as a common hand-written refresh
// service (`GET /api/refresh/refreshtoken` reads a `refreshToken` cookie and answers
// `{ accessToken }`), reproduced with plugin options only.
//
// What the clients keep: the URL, the GET, the cookie name, the `accessToken` field (the body
// carries `tokenType` and `expiresIn` too, which such clients ignore), and the claims they
// read from the token (`_id`, `verified`). What changes underneath, invisibly to them: the
// refresh token is rotated on every call (the HttpOnly cookie is replaced), stored hashed,
// and replaying an old one ends the session; errors are 401 with a JSON `message` (the old
// service answered 400), so clients that treat any non-2xx as "log in again" work unchanged.
//
// Less safe than the defaults, and why:
// - GET for a state-changing call: a link, an <img>, a prefetch can trigger a refresh. Only
//   SameSite=Strict and the cross-site check (Sec-Fetch-Site / Origin) stand in the way; the
//   default POST + JSON-only body also shuts out every "simple" cross-site request.
// - The cookie is scoped to / (where the old service put it), so it travels with every request
//   to the site instead of only to the auth routes (a wider exposure in logs and proxies).
// Move clients to `POST /auth/refresh` when you can, then drop these options.
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import tokenAuth, { createVerifyCredentials, hashPassword } from '../lib/index.js'
import { serve } from './serve.js'

declare module '../lib/index.js' {
  interface TokenAuthClaims {
    /** The seed service's user id claim. */
    _id?: string
    verified?: boolean
  }
}

export interface SeedCompatibleConfig {
  accessTokenSecret: string
  refreshTokenSecret: string
  username: string
  password: string
  /** Secure cookies need HTTPS; off for a plain-http local run. */
  secureCookies: boolean
}

export async function buildSeedCompatibleApp (config: SeedCompatibleConfig): Promise<FastifyInstance> {
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info', redact: ['req.headers.authorization', 'req.headers.cookie'] } })
  const user = { id: '678123456789', username: config.username, passwordHash: await hashPassword(config.password) }
  await app.register(tokenAuth, {
    accessTokenSecret: config.accessTokenSecret,
    refreshTokenSecret: config.refreshTokenSecret,
    prefix: '/api',
    routes: {
      login: { path: '/auth/login' },
      refresh: { path: '/refresh/refreshtoken', method: 'GET' },
      logout: { path: '/auth/logout' },
      sessions: false
    },
    // The old service's cookie name, path and lifetime (about 9 days). Same name AND path as the
    // cookie browsers already hold (Express's res.cookie defaults to Path=/), so our first
    // Set-Cookie replaces it; under another path the browser would keep both and send both,
    // and every refresh would be refused as ambiguous until the old one expired.
    cookie: { name: 'refreshToken', path: '/', sameSite: 'strict', secure: config.secureCookies },
    refreshTokenTtl: 9 * 24 * 60 * 60,
    verifyCredentials: createVerifyCredentials({
      findUser: async (name) => name === user.username ? user : null,
      passwordHash: (found) => found.passwordHash,
      toAuthUser: (found) => ({ id: found.id, claims: { _id: found.id, verified: true } })
    })
  })
  app.get('/api/me', { onRequest: app.authenticate }, async (request) => ({ _id: request.user._id, verified: request.user.verified }))
  return app
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const app = await buildSeedCompatibleApp({
    accessTokenSecret: process.env.ACCESS_TOKEN_SECRET ?? randomBytes(32).toString('base64url'),
    refreshTokenSecret: process.env.REFRESH_TOKEN_SECRET ?? randomBytes(32).toString('base64url'),
    username: process.env.DEMO_USERNAME ?? 'alice',
    password: process.env.DEMO_PASSWORD ?? 'correct-horse-battery-staple',
    secureCookies: process.env.NODE_ENV === 'production'
  })
  await serve(app, 3000)
}
