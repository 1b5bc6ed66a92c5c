import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'
import { isInnerList, parseItem, parseList, serializeItem, serializeList, Token } from 'structured-headers'

/*
 * A scripted browser that does W3C Device Bound Session Credentials as the draft's algorithms
 * describe them (https://w3c.github.io/webappsec-dbsc/, «Algorithms»), for the tests: Debian's
 * Chromium does not run DBSC (docs/security.md says what was tried). It parses our headers with a
 * third-party RFC 9651 parser (structured-headers) and signs with jose, so neither side of the
 * wire is our own code. It keeps a cookie jar (name, path, expiry), sends every request through
 * «Identify session needing refresh» first, and processes `Secure-Session-Registration` and
 * `Secure-Session-Challenge` on every answer.
 */

interface JarCookie { value: string, path: string, expiresAt: number }

export interface DbscKey {
  alg: 'ES256' | 'RS256'
  privateKey: CryptoKey
  jwk: JWK
  jkt: string
}

/** A device bound session as the browser keeps it («Device bound session»). */
export interface BrowserSession {
  id: string
  refreshUrl: URL
  key: DbscKey
  credentials: Array<{ name: string, path: string }>
  cachedChallenge: string | undefined
}

/** What the browser did on its own, for the tests to assert on. */
export interface DbscEvent {
  kind: 'registration' | 'refresh'
  status: number
  body: unknown
  headers: Headers
}

export interface ScriptedBrowserOptions {
  /** Algorithms the browser supports, in preference order. */
  algorithms?: Array<'ES256' | 'RS256'>
  /** Register when offered (a browser without DBSC ignores the header). */
  dbsc?: boolean
  /** How a registration proof carries the key: the draft's header `jwk`, or Chromium's first claims `key`. */
  keyIn?: 'header' | 'claims'
}

export async function dbscKey (alg: 'ES256' | 'RS256' = 'ES256'): Promise<DbscKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : {}) })
  const jwk = await exportJWK(publicKey)
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) }
}

/** A DBSC proof (W3C DBSC, «DBSC Proof JWT Syntax»): `jti` is the challenge; the key's `jwk` at registration only. */
export async function dbscProof (key: DbscKey, challenge: string, options: { registration?: boolean, keyIn?: 'header' | 'claims', header?: Record<string, unknown>, claims?: Record<string, unknown> } = {}): Promise<string> {
  const inClaims = options.registration === true && options.keyIn === 'claims'
  const header = { alg: key.alg, typ: 'dbsc+jwt', ...(options.registration === true && !inClaims ? { jwk: key.jwk } : {}), ...options.header }
  const claims = { jti: challenge, ...(inClaims ? { key: key.jwk } : {}), ...options.claims }
  return await new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(key.privateKey)
}

/** An sf-string, as a browser serialises `Secure-Session-Response` and `Sec-Secure-Session-Id`. */
export function sfString (value: string): string {
  return serializeItem([value, new Map()])
}

export class ScriptedBrowser {
  readonly origin: string
  readonly jar = new Map<string, JarCookie>()
  readonly sessions = new Map<string, BrowserSession>()
  readonly events: DbscEvent[] = []
  readonly #options: Required<ScriptedBrowserOptions>

  constructor (origin: string, options: ScriptedBrowserOptions = {}) {
    this.origin = origin
    this.#options = { algorithms: ['ES256', 'RS256'], dbsc: true, keyIn: 'header', ...options }
  }

  /** A request as a page would make it: deferred while a bound cookie is missing, then sent with the jar's cookies. */
  async fetch (path: string, init: { method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<Response> {
    const url = new URL(path, this.origin)
    const skipped: string[] = []
    for (const session of [...this.sessions.values()]) {
      if (url.pathname === session.refreshUrl.pathname || !this.#missesCredential(session, url)) continue
      const outcome = await this.refreshSession(session)
      if (outcome === 'skipped') skipped.push(serializeList([[new Token('server_error'), new Map([['session_identifier', session.id]])]]))
    }
    return await this.#send(url, {
      method: init.method ?? 'GET',
      headers: { ...init.headers, ...(skipped.length > 0 ? { 'secure-session-skipped': skipped.join(', ') } : {}) },
      ...(init.body === undefined ? {} : { body: init.body })
    })
  }

  /**
   * «Send request» for a refresh: the cached challenge signed if there is one; on 403 the new
   * challenge is cached and the request sent again (once); a 4xx other than 403 ends the session,
   * a 5xx is skipped. Resolves with what happened.
   */
  async refreshSession (session: BrowserSession): Promise<'refreshed' | 'terminated' | 'skipped'> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const headers: Record<string, string> = { 'sec-secure-session-id': sfString(session.id) }
      if (session.cachedChallenge !== undefined) headers['secure-session-response'] = sfString(await dbscProof(session.key, session.cachedChallenge))
      const response = await this.#send(session.refreshUrl, { method: 'POST', headers })
      const body = await response.text()
      this.events.push({ kind: 'refresh', status: response.status, body: parseJson(body), headers: response.headers })
      if (response.status === 403) continue
      if (response.status >= 500) return 'skipped'
      if (response.status >= 400) {
        this.sessions.delete(session.id)
        return 'terminated'
      }
      if (body !== '') this.#createSession(parseJson(body), session.refreshUrl, session.id, session.key)
      return 'refreshed'
    }
    return 'skipped'
  }

  /** «Identify if missing session credential»: a credential whose cookie would be sent to `url` but is not in the jar. */
  #missesCredential (session: BrowserSession, url: URL): boolean {
    if (url.origin !== session.refreshUrl.origin) return false
    return session.credentials.some((credential) => url.pathname.startsWith(credential.path) && this.#cookie(credential.name) === undefined)
  }

  #cookie (name: string): string | undefined {
    const cookie = this.jar.get(name)
    if (cookie === undefined || cookie.expiresAt <= Date.now()) return undefined
    return cookie.value
  }

  /** One HTTP request: the jar's cookies out, `Set-Cookie` in, then the answer's DBSC headers processed. */
  async #send (url: URL, init: { method: string, headers: Record<string, string>, body?: string }): Promise<Response> {
    const cookies = [...this.jar.entries()]
      .filter(([name, cookie]) => url.pathname.startsWith(cookie.path) && this.#cookie(name) !== undefined)
      .map(([name, cookie]) => `${name}=${cookie.value}`)
    const response = await fetch(url, {
      method: init.method,
      headers: { origin: this.origin, ...(cookies.length > 0 ? { cookie: cookies.join('; ') } : {}), ...init.headers },
      ...(init.body === undefined ? {} : { body: init.body })
    })
    for (const line of response.headers.getSetCookie()) this.#setCookie(line)
    await this.#processChallenges(response)
    await this.#processRegistration(response, url)
    return response
  }

  #setCookie (line: string): void {
    const [pair, ...attributes] = line.split(';').map((part) => part.trim())
    const eq = (pair as string).indexOf('=')
    const name = (pair as string).slice(0, eq)
    const value = (pair as string).slice(eq + 1)
    let path = '/'
    let expiresAt = Number.POSITIVE_INFINITY
    for (const attribute of attributes) {
      const [key, attributeValue = ''] = attribute.split('=')
      if (key?.toLowerCase() === 'path') path = attributeValue
      if (key?.toLowerCase() === 'max-age') expiresAt = Date.now() + Number(attributeValue) * 1000
    }
    if (value === '' || expiresAt <= Date.now()) this.jar.delete(name)
    else this.jar.set(name, { value, path, expiresAt })
  }

  /** «Cache challenge». */
  async #processChallenges (response: Response): Promise<void> {
    const field = response.headers.get('secure-session-challenge')
    if (field === null) return
    for (const [challenge, params] of parseList(field)) {
      const id = params.get('id')
      const session = typeof id === 'string' ? this.sessions.get(id) : undefined
      if (typeof challenge === 'string' && session !== undefined) session.cachedChallenge = challenge
    }
  }

  /** «Process session registration», «Create session key pair» and the registration's «Send request». */
  async #processRegistration (response: Response, url: URL): Promise<void> {
    const field = response.headers.get('secure-session-registration')
    if (field === null || !this.#options.dbsc) return
    for (const member of parseList(field)) {
      const [entry, params] = member
      const path = params.get('path')
      const challenge = params.get('challenge')
      if (!isInnerList(member) || typeof path !== 'string') continue
      const offered = (entry as Array<[unknown, unknown]>).map(([algorithm]) => algorithm instanceof Token ? algorithm.toString() : '')
      const alg = this.#options.algorithms.find((algorithm) => offered.includes(algorithm))
      if (alg === undefined) return
      const key = await dbscKey(alg)
      const endpoint = new URL(path, url)
      const headers: Record<string, string> = {}
      if (typeof challenge === 'string') headers['secure-session-response'] = sfString(await dbscProof(key, challenge, { registration: true, keyIn: this.#options.keyIn }))
      const answer = await this.#send(endpoint, { method: 'POST', headers })
      const body = await answer.text()
      this.events.push({ kind: 'registration', status: answer.status, body: parseJson(body), headers: answer.headers })
      if (answer.status !== 200) continue
      this.#createSession(parseJson(body), endpoint, undefined, key)
      // «Create session» ends by caching the answer's challenge, now that the session exists.
      await this.#processChallenges(answer)
    }
  }

  /** «Create session»: the instructions' validations, then the session stored (or replaced). */
  #createSession (instructions: unknown, destination: URL, sessionId: string | undefined, key: DbscKey): void {
    const json = instructions as { session_identifier?: unknown, refresh_url?: unknown, continue?: unknown, credentials?: unknown }
    if (json?.continue === false || typeof json?.session_identifier !== 'string' || !Array.isArray(json.credentials)) {
      if (sessionId !== undefined) this.sessions.delete(sessionId)
      return
    }
    if (sessionId !== undefined && json.session_identifier !== sessionId) throw new Error('a refresh answered another session identifier')
    const refreshUrl = typeof json.refresh_url === 'string' ? new URL(json.refresh_url, destination) : destination
    if (refreshUrl.origin !== destination.origin) throw new Error('the refresh URL is not same-site')
    const credentials = (json.credentials as Array<{ type: string, name: string, attributes?: string }>).map((credential) => {
      if (credential.type !== 'cookie') throw new Error('a credential that is not a cookie')
      const path = /(?:^|; )Path=([^;]*)/.exec(credential.attributes ?? '')?.[1] ?? '/'
      return { name: credential.name, path }
    })
    const previous = this.sessions.get(json.session_identifier)
    this.sessions.set(json.session_identifier, { id: json.session_identifier, refreshUrl, key, credentials, cachedChallenge: previous?.cachedChallenge })
  }
}

function parseJson (text: string): unknown {
  try {
    return text === '' ? undefined : JSON.parse(text)
  } catch {
    return text
  }
}

export { parseItem, parseList }
