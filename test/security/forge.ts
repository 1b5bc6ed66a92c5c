// Forging kit for the attack suite (groups A and B). First half: hand-built JWTs signed with
// node:crypto alone (no fast-jwt, no jose, so a bug shared with the verifier cannot hide an
// attack), key-confusion secrets and signature re-encodings. Second half: the deployments under
// attack (the example app on each algorithm, or the plugin with extra options) and the expected
// answers, on top of ./harness.ts.
import { execFileSync } from 'node:child_process'
import {
  createHash, createHmac, generateKeyPairSync, type KeyObject, randomBytes, sign
} from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import type { Test } from 'tap'
import type { ExampleConfig } from '../../examples/app.js'
import tokenAuth, { type TokenAuthOptions } from '../../lib/index.js'
import {
  ACCESS_SECRET, baseOptions, CHALLENGE, EXPIRED, INVALID, INVALID_REFRESH, INVALID_TOKEN, MALFORMED, MISSING, REFRESH_SECRET, REVOKED
} from '../helpers.js'
// The harness re-exports a few of the forging helpers below; its functions are only called at
// test time, so this two-way import is safe.
import { type Example, login, type Reply, refused, send, startExample } from './harness.js'

export type Claims = Record<string, unknown>
/** A header or payload: an object (JSON-encoded), a string (the JSON text verbatim) or raw bytes. */
export type Part = Claims | unknown[] | string | Buffer
export type AsymmetricAlg = 'ES256' | 'RS256' | 'EdDSA'

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const HMAC_HASH: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }
/** Order of the P-256 group: ECDSA (r, s) and (r, n - s) verify alike. */
const P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551n

export function encode (part: Part): string {
  if (Buffer.isBuffer(part)) return part.toString('base64url')
  return Buffer.from(typeof part === 'string' ? part : JSON.stringify(part)).toString('base64url')
}

export function decodePart (token: string, index: 0 | 1): Claims {
  return JSON.parse(Buffer.from(token.split('.')[index] as string, 'base64url').toString()) as Claims
}

export const headerOf = (token: string): Claims => decodePart(token, 0)
export const claimsOf = (token: string): Claims => decodePart(token, 1)
export const nowSeconds = (): number => Math.floor(Date.now() / 1000)

/** `header.payload.` with no signature at all (alg none style). */
export function unsigned (header: Part, payload: Part): string {
  return `${encode(header)}.${encode(payload)}.`
}

/** An HMAC-signed JWT; `alg` picks the hash, whatever the header says. */
export function forgeHmac (header: Part, payload: Part, key: string | Buffer, alg = 'HS256'): string {
  const input = `${encode(header)}.${encode(payload)}`
  return `${input}.${createHmac(HMAC_HASH[alg] as string, key).update(input).digest('base64url')}`
}

/**
 * An asymmetrically signed JWT (JWS encodings: ES256 as r||s, RS256 PKCS#1 v1.5, EdDSA raw).
 * ES256 signatures are normalised to low S, the canonical form, so `highS` makes the other one.
 */
export function forgeAsymmetric (header: Part, payload: Part, privateKey: KeyObject, alg: AsymmetricAlg): string {
  const input = `${encode(header)}.${encode(payload)}`
  let signature: Buffer
  if (alg === 'EdDSA') {
    signature = sign(null, Buffer.from(input), privateKey)
  } else if (alg === 'ES256') {
    signature = lowS(sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }))
  } else {
    signature = sign('sha256', Buffer.from(input), privateKey)
  }
  return `${input}.${signature.toString('base64url')}`
}

/** The token with its signature replaced by `signature` (bytes, or base64url text verbatim). */
export function withSignature (token: string, signature: Buffer | string): string {
  const [header, payload] = token.split('.')
  return `${header}.${payload}.${typeof signature === 'string' ? signature : signature.toString('base64url')}`
}

export const signatureOf = (token: string): Buffer => Buffer.from(token.split('.')[2] as string, 'base64url')

/**
 * Every other spelling of the last base64url character that decodes to the same bytes: its low
 * bits are padding, which lax decoders ignore (3 siblings for HS256, 15 for ES256/EdDSA/RS256).
 */
export function siblings (token: string): string[] {
  const signature = token.split('.')[2] as string
  const spareBits = (signature.length * 6) % 8
  const last = token.at(-1) as string
  const mask = (1 << spareBits) - 1
  const base = BASE64URL.indexOf(last) & ~mask
  const result: string[] = []
  for (let k = 0; k <= mask; k++) {
    const c = BASE64URL[base + k] as string
    if (c !== last) result.push(token.slice(0, -1) + c)
  }
  return result
}

const toBig = (bytes: Buffer): bigint => BigInt(`0x${bytes.toString('hex') || '0'}`)
const toBytes32 = (value: bigint): Buffer => Buffer.from(value.toString(16).padStart(64, '0'), 'hex')

/** Whether an ES256 (r||s) signature has S in the upper half of the group order. */
export function isHighS (signature: Buffer): boolean {
  return toBig(signature.subarray(32)) > P256_ORDER / 2n
}

function lowS (signature: Buffer): Buffer {
  return isHighS(signature) ? flipS(signature) : signature
}

function flipS (signature: Buffer): Buffer {
  return Buffer.concat([signature.subarray(0, 32), toBytes32(P256_ORDER - toBig(signature.subarray(32)))])
}

/** The ES256 token with (r, n - s): the same signature in its other, high-S form. */
export function highS (token: string): string {
  const signature = signatureOf(token)
  if (signature.length !== 64) throw new Error('not an ES256 signature')
  return withSignature(token, flipS(signature))
}

/** The ES256 signature DER-encoded (what OpenSSL emits) instead of the JWS r||s form. */
export function derSignature (token: string): string {
  const signature = signatureOf(token)
  const integer = (bytes: Buffer): Buffer => {
    let i = 0
    while (i < bytes.length - 1 && bytes[i] === 0) i++
    let trimmed = bytes.subarray(i)
    if ((trimmed[0] as number) & 0x80) trimmed = Buffer.concat([Buffer.from([0]), trimmed])
    return Buffer.concat([Buffer.from([0x02, trimmed.length]), trimmed])
  }
  const body = Buffer.concat([integer(signature.subarray(0, 32)), integer(signature.subarray(32))])
  return withSignature(token, Buffer.concat([Buffer.from([0x30, body.length]), body]))
}

export interface KeyPair {
  alg: AsymmetricAlg
  privateKey: KeyObject
  publicKey: KeyObject
  /** PKCS#8 PEM, as the example reads it from ACCESS_TOKEN_PRIVATE_KEY. */
  privatePem: string
  /** SPKI PEM. */
  publicPem: string
}

export function generateKeys (alg: AsymmetricAlg): KeyPair {
  const { privateKey, publicKey } = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('ed25519')
  return {
    alg,
    privateKey,
    publicKey,
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string
  }
}

/** RFC 7638 thumbprint of a public key (base64url SHA-256 of the required members, sorted). */
export function thumbprint (publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' }) as Record<string, string>
  const members = jwk.kty === 'RSA' ? ['e', 'kty', 'n'] : jwk.kty === 'EC' ? ['crv', 'kty', 'x', 'y'] : ['crv', 'kty', 'x']
  const canonical = `{${members.map((m) => `${JSON.stringify(m)}:${JSON.stringify(jwk[m])}`).join(',')}}`
  return createHash('sha256').update(canonical).digest('base64url')
}

/** A self-signed X.509 certificate for the key, made with the openssl CLI. */
export function certificateFor (keys: KeyPair): string {
  const dir = mkdtempSync(join(tmpdir(), 'fta-cert-'))
  try {
    const keyFile = join(dir, 'key.pem')
    writeFileSync(keyFile, keys.privatePem, { mode: 0o600 })
    const digest = keys.alg === 'EdDSA' ? [] : ['-sha256']
    return execFileSync('openssl', ['req', '-x509', '-new', '-key', keyFile, '-subj', '/CN=forge', '-days', '1', ...digest], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Everything a verifier that confuses key types might use as the HMAC secret: the public key in
 * each textual form a deployment publishes (RS/ES → HS256 confusion, CVE-2023-48223 and its
 * incomplete fixes CVE-2026-34950, GHSA-ww5h-9m49-7xx4, GHSA-g3jj-5cmm-3hxx).
 */
export function confusionSecrets (keys: KeyPair, certificate: string, kid: string): Array<[string, string | Buffer]> {
  const pem = keys.publicPem
  const jwk = { ...(keys.publicKey.export({ format: 'jwk' }) as Claims), kid, alg: keys.alg, use: 'sig' }
  const secrets: Array<[string, string | Buffer]> = [
    ['SPKI PEM', pem],
    ['SPKI PEM without its trailing newline', pem.trimEnd()],
    ['SPKI PEM with a leading "\\n\\t"', `\n\t${pem}`],
    ['SPKI PEM with leading spaces and CRLF line ends', `   ${pem.replace(/\n/g, '\r\n')}`],
    ['SPKI PEM after a zero-width space', `\u200b${pem}`],
    ['SPKI PEM after a NUL and control characters', `\u0000\u0001\u001f${pem}`],
    ['SPKI PEM after a junk comment line', `# key of the demo\n${pem}`],
    ['SPKI DER bytes', keys.publicKey.export({ type: 'spki', format: 'der' })],
    ['X.509 certificate PEM', certificate],
    ['X.509 certificate PEM with a leading "\\n"', `\n${certificate}`],
    ['public JWK JSON', JSON.stringify(jwk)],
    ['public JWK JSON, pretty-printed', JSON.stringify(jwk, null, 2)],
    ['JWKS JSON { keys: [jwk] }', JSON.stringify({ keys: [jwk] })]
  ]
  if (keys.alg === 'RS256') {
    const pkcs1 = keys.publicKey.export({ type: 'pkcs1', format: 'pem' }) as string
    secrets.push(['PKCS#1 "BEGIN RSA PUBLIC KEY" PEM', pkcs1], ['PKCS#1 PEM with a leading "\\n\\t"', `\n\t${pkcs1}`])
  }
  return secrets
}

/** A random id, for jti/sid values that no session has. */
export const randomId = (): string => randomBytes(16).toString('base64url')

// ---------------------------------------------------------------------------------------------
// Deployments under attack and the expected answers, on top of the harness (./harness.ts).

export { EXPIRED, INVALID, INVALID_REFRESH, MALFORMED, MISSING, REVOKED }

/** A running server plus what forging against it needs. */
export interface Deployment extends Example {
  /** The header of a token the server issued (alg, typ, kid), to copy. */
  header: Claims
  /** Alice's claims as the server issues them, with a fresh jti, iat now and exp in 5 minutes. */
  claims: (extra?: Claims) => Claims
  /** A token this server accepts, signed here with its own key: the control for every attack. */
  valid: (extra?: Claims) => string
  /** The asymmetric signing key, on RS256/ES256/EdDSA deployments. */
  keys?: KeyPair
}

async function deployment (example: Example, signValid: (header: Claims, claims: Claims) => string, keys?: KeyPair): Promise<Deployment> {
  const { accessToken } = await login(example)
  const header = headerOf(accessToken)
  const issued = claimsOf(accessToken)
  const claims = (extra: Claims = {}): Claims => {
    const now = nowSeconds()
    return { ...issued, jti: randomId(), iat: now, exp: now + 300, ...extra }
  }
  return Object.assign(example, { header, claims, valid: (extra?: Claims) => signValid(header, claims(extra)), ...(keys === undefined ? {} : { keys }) })
}

/** The example app on HS256 with the harness's known secret (ACCESS_SECRET), plus `env`. */
export async function deployHmac (t: Test, env: Record<string, string> = {}): Promise<Deployment> {
  return deployment(await startExample(t, env), (header, claims) => forgeHmac(header, claims, ACCESS_SECRET))
}

/** The example app signing with a key pair generated here (`ACCESS_TOKEN_ALG` + `ACCESS_TOKEN_PRIVATE_KEY`). */
export async function deployAsymmetric (t: Test, alg: AsymmetricAlg, env: Record<string, string> = {}): Promise<Deployment & { keys: KeyPair }> {
  const keys = generateKeys(alg)
  const example = await startExample(t, { ACCESS_TOKEN_ALG: alg, ACCESS_TOKEN_PRIVATE_KEY: keys.privatePem, ...env })
  return deployment(example, (header, claims) => forgeAsymmetric(header, claims, keys.privateKey, alg), keys) as Promise<Deployment & { keys: KeyPair }>
}

/**
 * The plugin with options the example does not expose (audience, clock tolerance, cache size)
 * on the test helpers' users and keys, with the example's `GET /me` and `GET /health`,
 * listening on an ephemeral port and shaped so the harness can drive it.
 */
export async function deployPlugin (t: Test, overrides: Partial<TokenAuthOptions>): Promise<Deployment> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(tokenAuth, baseOptions(overrides))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.sub, username: (request.user as unknown as Claims).username }))
  app.get('/health', async () => ({ status: 'ok' }))
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as AddressInfo).port
  const example: Example = {
    app,
    config: {} as ExampleConfig,
    base: `http://127.0.0.1:${port}`,
    port,
    logs: [],
    secrets: [ACCESS_SECRET, REFRESH_SECRET],
    events: [],
    close: async () => { await app.close() }
  }
  return deployment(example, (header, claims) => forgeHmac(header, claims, ACCESS_SECRET))
}

/** `GET path` with `Authorization: Bearer <token>`, and how long the answer took (ms). */
export async function bearer (example: Example, token: string, path = '/me'): Promise<Reply & { elapsed: number }> {
  const started = performance.now()
  const reply = await send(example, 'GET', path, { headers: { authorization: `Bearer ${token}` } })
  return Object.assign(reply, { elapsed: performance.now() - started })
}

export interface Expected {
  status?: number
  /** The expected code, or codes any of which is right (e.g. revoked or invalid). */
  code?: string | string[]
  challenge?: string
  path?: string
}

/**
 * `token` is refused as a Bearer token (401 INVALID_TOKEN with the RFC 6750 challenge unless
 * told otherwise), and as an `access_token` cookie: the plugin reads access tokens from the
 * Authorization header only, so a cookie is never a way around the checks. Each answer passes
 * the harness's must-nots (no token issued, nothing leaked, /health still 200).
 */
export async function assertRefused (t: Test, example: Example, token: string, expected: Expected = {}): Promise<Reply & { elapsed: number }> {
  const path = expected.path ?? '/me'
  const codes = [expected.code ?? INVALID].flat()
  const reply = await bearer(example, token, path)
  const code = codes.includes(reply.json?.code) ? reply.json.code as string : codes.join(' or ')
  await refused(t, example, reply, { status: expected.status ?? 401, code, challenge: expected.challenge ?? INVALID_TOKEN, sent: [token] })
  const viaCookie = await send(example, 'GET', path, { headers: { cookie: `access_token=${token}` } })
  await refused(t, example, viaCookie, { status: 401, code: MISSING, challenge: CHALLENGE, sent: [token] })
  return reply
}

/** A control: `token` is accepted on `path`. */
export async function assertAccepted (t: Test, example: Example, token: string, path = '/me'): Promise<Reply> {
  const reply = await bearer(example, token, path)
  t.equal(reply.status, 200, `accepted on ${path}`)
  return reply
}

/** One subtest per case, each refused the same way. */
export function refuseAll (t: Test, example: Example, cases: Array<[string, string]>, expected?: Expected): void {
  for (const [name, token] of cases) {
    t.test(name, async (t) => { await assertRefused(t, example, token, expected) })
  }
}
