import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'
import { createHash, randomUUID } from 'node:crypto'
import type { FastifyInstance, InjectOptions } from 'fastify'

// DPoP clients for the tests, built on jose (a third-party signer, so our verifier is not
// checked against itself): a key pair, and proofs as RFC 9449 §4.2 spells them.

export interface DpopKey {
  alg: string
  privateKey: CryptoKey
  jwk: JWK
  /** RFC 7638 thumbprint, as jose computes it. */
  jkt: string
}

export async function dpopKey (alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const jwk = await exportJWK(publicKey)
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) }
}

export interface ProofOptions {
  /** The access token the proof is for (its `ath`). */
  accessToken?: string
  nonce?: string
  /** Claims to add or override (`iat`, `htu`, `jti`...). */
  claims?: Record<string, unknown>
}

/** A proof for `method` on `url` (an inject URL like `/auth/login` becomes `http://localhost/...`). */
export async function proof (key: DpopKey, method: string, url: string, options: ProofOptions = {}): Promise<string> {
  const claims: Record<string, unknown> = {
    jti: randomUUID(),
    htm: method,
    htu: url.startsWith('http') ? url : `http://localhost${url}`,
    iat: Math.floor(Date.now() / 1000),
    ...(options.accessToken === undefined ? {} : { ath: createHash('sha256').update(options.accessToken).digest('base64url') }),
    ...(options.nonce === undefined ? {} : { nonce: options.nonce }),
    ...options.claims
  }
  return await new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk: key.jwk }).sign(key.privateKey)
}

export const PASSWORD_BODY = { username: 'alice', password: 'correct-horse-battery-staple' }

/** Logs alice in with a proof of `key` (none when undefined). */
export async function dpopLogin (app: FastifyInstance, key: DpopKey | undefined, extra: Partial<InjectOptions> = {}) {
  return await app.inject({
    method: 'POST',
    url: '/auth/login',
    payload: PASSWORD_BODY,
    ...extra,
    headers: { ...(key === undefined ? {} : { dpop: await proof(key, 'POST', '/auth/login') }), ...extra.headers }
  })
}

/** Refreshes with the cookie `refreshToken`, with a proof of `key` (none when undefined). */
export async function dpopRefresh (app: FastifyInstance, refreshToken: string, key: DpopKey | undefined) {
  return await app.inject({
    method: 'POST',
    url: '/auth/refresh',
    cookies: { refresh_token: refreshToken },
    headers: key === undefined ? {} : { dpop: await proof(key, 'POST', '/auth/refresh') }
  })
}

/** `GET /me` with `Authorization: DPoP <token>` and a proof of `key` for it (no proof when undefined). */
export async function dpopMe (app: FastifyInstance, accessToken: string, key: DpopKey | undefined, scheme = 'DPoP') {
  return await app.inject({
    method: 'GET',
    url: '/me',
    headers: { authorization: `${scheme} ${accessToken}`, ...(key === undefined ? {} : { dpop: await proof(key, 'GET', '/me', { accessToken }) }) }
  })
}
