import fastifyJwt, { type FastifyJWTOptions } from '@fastify/jwt'
import Fastify from 'fastify'
import type { ResolvedOptions } from './options.js'
import {
  ACCESS_TOKEN_TYPE, type AccessKeyPair, type JwtPair, REFRESH_TOKEN_ALGORITHM, REFRESH_TOKEN_TYPE, TokenCodec
} from './tokens.js'

type CodecOptions = Pick<ResolvedOptions,
  'accessKeys' | 'refreshTokenSecret' | 'accessTokenTtl' | 'refreshTokenTtl' | 'clockTolerance' | 'verifyCacheSize' | 'issuer' | 'audience' | 'dpop' | 'dbsc'>

const REQUIRED_CLAIMS = ['sub', 'sid', 'jti', 'iat', 'exp']

/**
 * The token codec: one @fastify/jwt registration per access-token key and one for refresh
 * tokens. Algorithms (one per key), `kid`, `typ` and required claims are pinned here
 * (docs/design.md, «Separate keys and explicit types»).
 */
export async function createCodec (options: CodecOptions): Promise<TokenCodec> {
  const accessVerify = {
    requiredClaims: [...REQUIRED_CLAIMS, ...(options.issuer === undefined ? [] : ['iss']), ...(options.audience === undefined ? [] : ['aud'])],
    clockTolerance: options.clockTolerance * 1000,
    ...(options.issuer === undefined ? {} : { allowedIss: options.issuer }),
    ...(options.audience === undefined ? {} : { allowedAud: options.audience })
  }
  const accessKeys: AccessKeyPair[] = []
  for (const key of options.accessKeys) {
    const secret = key.algorithm === 'HS256' ? key.verificationKey : { private: key.signingKey, public: key.verificationKey }
    const pair = await jwtPair(jwtOptions(secret, key.algorithm, ACCESS_TOKEN_TYPE, accessVerify, key.kid))
    accessKeys.push({ kid: key.kid, algorithm: key.algorithm, ...pair })
  }
  return new TokenCodec({
    accessKeys,
    refresh: await jwtPair(jwtOptions(options.refreshTokenSecret, REFRESH_TOKEN_ALGORITHM, REFRESH_TOKEN_TYPE, { requiredClaims: REQUIRED_CLAIMS })),
    refreshSecret: options.refreshTokenSecret,
    accessTokenTtl: options.accessTokenTtl,
    refreshTokenTtl: options.refreshTokenTtl,
    clockTolerance: options.clockTolerance,
    verifyCacheSize: options.verifyCacheSize,
    bindingsRead: { dpop: options.dpop !== 'off', dbsc: options.dbsc !== false },
    issuer: options.issuer,
    audience: options.audience
  })
}

/**
 * One @fastify/jwt registration on a private Fastify instance of its own: none of its
 * decorators reaches the app, whose own @fastify/jwt may come before or after us. One instance
 * each, rather than namespaces on a shared one, because @fastify/jwt types `fastify.jwt` as a
 * namespace map only when `FastifyJWT.namespaces` is declared, and that declaration would
 * retype the app's `fastify.jwt` too; without a namespace `jwt` is typed as what it is.
 */
async function jwtPair (options: FastifyJWTOptions): Promise<JwtPair> {
  const instance = Fastify()
  await instance.register(fastifyJwt, options)
  const { jwt } = instance
  return { sign: (payload) => jwt.sign(payload), verify: (token) => jwt.verify(token) }
}

function jwtOptions (
  secret: FastifyJWTOptions['secret'], algorithm: string, typ: string, verify: Record<string, unknown>, kid?: string
): FastifyJWTOptions {
  return {
    secret,
    sign: { algorithm, typ, ...(kid === undefined ? {} : { kid }) } as FastifyJWTOptions['sign'],
    // No fast-jwt cache: it hashes every token; the codec caches by the exact token text instead.
    verify: { algorithms: [algorithm], checkTyp: typ, cache: false, errorCacheTTL: -1, ...verify } as FastifyJWTOptions['verify']
  }
}
