// The baselines: what a user gets without the plugin, each answering the same route and reply as
// the plugin's scenario it is compared with. Logger off, nothing else registered.
//   bare         plain Fastify, GET /me -> {"id":"user-1","username":"alice"}
//   diy          the same behind a hand-written @fastify/jwt hook (`onRequest: req.jwtVerify()`)
//   express      Express 5 + jsonwebtoken, the tutorial pattern: `app.use(express.json())`, a
//                middleware that `jwt.verify`s the Bearer token, GET /me
//   diy-refresh  a hand-written Fastify POST /auth/refresh: verify the refresh JWT (fast-jwt),
//                look its id's hash up in a Map, rotate, sign an access token (@fastify/jwt),
//                set the cookie (@fastify/cookie); the same reply and cookie as the plugin's
import fastifyCookie from '@fastify/cookie'
import fastifyJwt from '@fastify/jwt'
import express from 'express'
import { createSigner, createVerifier } from 'fast-jwt'
import Fastify from 'fastify'
import jwt from 'jsonwebtoken'
import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { type Built, fastifyBuilt, httpBuilt } from './built.js'
import { ACCESS_SECRET, ACCESS_TTL, REFRESH_SECRET, SESSION_TTL, USER } from './scenarios.js'

interface Claims { sub: string, username: string }
interface Session { id: string, userId: string, username: string }

/** The access-token claims of the plugin's tokens, same size, for a like-for-like verify. */
const ACCESS_CLAIMS = { sub: USER.id, sid: 'x'.repeat(22), jti: 'y'.repeat(22), username: USER.claims.username }

export async function bare (): Promise<Built> {
  const app = Fastify({ logger: false })
  const me = { id: USER.id, username: USER.claims.username }
  app.get('/me', async () => me)
  return fastifyBuilt(app)
}

export async function diy (): Promise<Built> {
  const app = Fastify({ logger: false })
  await app.register(fastifyJwt, { secret: ACCESS_SECRET })
  app.get('/me', { onRequest: async (request) => { await request.jwtVerify() } }, async (request) => {
    const user = request.user as Claims
    return { id: user.sub, username: user.username }
  })
  await app.ready()
  return fastifyBuilt(app, { token: app.jwt.sign(ACCESS_CLAIMS, { expiresIn: ACCESS_TTL }) })
}

export async function expressJwt (): Promise<Built> {
  const app = express()
  app.use(express.json())
  app.use((req, res, next) => {
    const header = req.headers.authorization
    if (header?.startsWith('Bearer ') !== true) {
      res.status(401).json({ error: 'Unauthorized' })
      return
    }
    try {
      res.locals.user = jwt.verify(header.slice(7), ACCESS_SECRET, { algorithms: ['HS256'] })
      next()
    } catch {
      res.status(401).json({ error: 'Unauthorized' })
    }
  })
  app.get('/me', (req, res) => {
    const user = res.locals.user as Claims
    res.json({ id: user.sub, username: user.username })
  })
  const token = jwt.sign(ACCESS_CLAIMS, ACCESS_SECRET, { algorithm: 'HS256', expiresIn: ACCESS_TTL })
  return httpBuilt(createServer(app), { token })
}

export async function diyRefresh (): Promise<Built> {
  const app = Fastify({ logger: false })
  await app.register(fastifyCookie)
  await app.register(fastifyJwt, { secret: ACCESS_SECRET })
  const signRefresh = createSigner({ key: REFRESH_SECRET, algorithm: 'HS256', expiresIn: SESSION_TTL * 1000 })
  const verifyRefresh = createVerifier({ key: REFRESH_SECRET, algorithms: ['HS256'] })
  const hash = (jti: string) => createHash('sha256').update(jti).digest('base64url')
  /** Session by the hash of its current refresh token's id. */
  const sessions = new Map<string, Session>()
  const newRefreshToken = (session: Session): string => {
    const jti = randomBytes(32).toString('base64url')
    sessions.set(hash(jti), session)
    return signRefresh({ sub: session.userId, jti }) as string
  }
  const cookie = { httpOnly: true, secure: true, sameSite: 'strict', path: '/auth', maxAge: SESSION_TTL } as const

  app.post('/auth/refresh', async (request, reply) => {
    const token = request.cookies.refresh_token
    let claims: { sub: string, jti: string } | undefined
    try {
      claims = token === undefined ? undefined : verifyRefresh(token) as { sub: string, jti: string }
    } catch {}
    const key = claims === undefined ? undefined : hash(claims.jti)
    const session = key === undefined ? undefined : sessions.get(key)
    if (key === undefined || session === undefined) return await reply.code(401).send({ error: 'Unauthorized' })
    sessions.delete(key)
    reply.setCookie('refresh_token', newRefreshToken(session), cookie)
    // The plugin's access-token claims: subject, session id, token id, the user's claims.
    const accessToken = app.jwt.sign({ sub: session.userId, sid: session.id, jti: randomBytes(16).toString('base64url'), username: session.username },
      { expiresIn: ACCESS_TTL })
    return { accessToken, tokenType: 'Bearer', expiresIn: ACCESS_TTL }
  })
  await app.ready()
  let users = 0
  const issue = async (count: number) => Array.from({ length: count }, () => newRefreshToken({ id: randomBytes(16).toString('base64url'), userId: `user-${users++ % 1000}`, username: USER.claims.username }))
  return fastifyBuilt(app, { issue })
}
