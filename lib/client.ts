/**
 * `fastify-token-auth/client`: a dependency-free `fetch` wrapper for browsers and Node. It logs
 * in, sends the access token as `Authorization: Bearer`, refreshes it when the server answers
 * 401 (one refresh shared by every concurrent caller) and retries the request once, and logs
 * out. A route that wants a fresher sign-in (step-up, RFC 9470) is told apart by
 * {@link stepUpRequired}, and {@link AuthClient.reauthenticate} renews the sign-in of the same
 * session. With `dpop: true` the session is bound to a key pair of this browser (RFC 9449, see
 * ./client-dpop.ts). It imports only its siblings ./www-authenticate.js and ./client-dpop.js and
 * nothing from npm, so the three also run as plain ES modules in a browser.
 *
 * @example
 * ```ts
 * import { createAuthClient } from 'fastify-token-auth/client'
 *
 * const auth = createAuthClient({ onLogout: (reason) => showLoginScreen(reason) })
 * await auth.login('alice', password)
 * const me = await (await auth.fetch('/me')).json()
 * ```
 */
import { createDpopSigner, type DpopSigner } from './client-dpop.js'
import { stepUpRequired } from './www-authenticate.js'

export { createDpopSigner, type DpopKeyStorage, type DpopSigner, type DpopSignerOptions, indexedDbKeyStorage, type IndexedDbKeyStorageOptions, memoryKeyStorage } from './client-dpop.js'

export { type Challenge, parseWwwAuthenticate, stepUpRequired, type StepUpRequired } from './www-authenticate.js'

/**
 * Why the session is gone: the user logged out, the refresh token was refused (expired, unknown,
 * logged out elsewhere), or the server ended the session (revoked, refresh token reuse, a refresh
 * its risk check denied).
 */
export type LogoutReason = 'logout' | 'expired' | 'revoked'

/** The access token just received, and when it expires (ms since the epoch, by this machine's clock). */
export interface TokenInfo {
  accessToken: string
  expiresAt: number
}

export interface AuthClientOptions {
  /**
   * Prepended to relative URLs and to the auth routes: `https://api.example.com`, or a path.
   * Outside a browser there is no page to be relative to, so set it there.
   * @default '' (the page's origin)
   */
  baseUrl?: string
  /**
   * The plugin's `prefix`.
   * @default '/auth'
   */
  prefix?: string
  /**
   * The `fetch` to send requests with.
   * @default globalThis.fetch
   */
  fetch?: typeof fetch
  /**
   * Where the refresh token lives. `cookie`: in the server's HttpOnly cookie, out of reach of
   * scripts (browsers). `body`: in this object's memory, sent in JSON bodies (Node, CLIs; the
   * server needs `refreshTokenTransport: 'body'` or `'both'`).
   * @default 'cookie' in a browser (where `location` exists), else 'body'
   */
  refreshTokenTransport?: 'cookie' | 'body'
  /** The session is gone and the app should show its login screen. Called once per session. */
  onLogout?: (reason: LogoutReason) => void
  /** Called after every login and refresh with the new access token. */
  onTokens?: (info: TokenInfo) => void
  /**
   * DPoP (RFC 9449; the server's `dpop` option): login, refresh, reauthenticate and logout carry a
   * proof signed with a key pair of this client, which binds the session to it, and a `DPoP`
   * access token is sent as `Authorization: DPoP` with a proof. `true`: an ES256 key created at
   * the first request, non-extractable, kept in IndexedDB in a browser (a reload keeps it), in
   * memory elsewhere; or a signer of {@link createDpopSigner} with the storage of your choice.
   * @default false
   */
  dpop?: boolean | DpopSigner
}

export interface AuthClient {
  /**
   * Logs in. Throws an {@link AuthClientError} with the server's code when refused (401, 429,
   * 503, 403 `FST_TOKEN_AUTH_SESSION_LIMIT_REACHED` when the user has all the sessions allowed...).
   */
  login (username: string, password: string): Promise<void>
  /**
   * Signs the user in again within the current session (after {@link stepUpRequired}): the same
   * session, fresh tokens with a new `auth_time`. Throws an {@link AuthClientError} when refused:
   * wrong password (401 `FST_TOKEN_AUTH_INVALID_CREDENTIALS`) or another user's credentials (403)
   * keep the session; a refused refresh token means it is over (`onLogout`, as for a refresh).
   */
  reauthenticate (username: string, password: string): Promise<void>
  /**
   * `fetch` with the access token. Relative URLs are resolved against `baseUrl`; the token is
   * sent only to the origin of `baseUrl` (a request that already carries `Authorization` is left
   * alone). On a 401 for a missing, invalid or expired access token it refreshes once (concurrent
   * callers share that refresh) and retries the request once; the body is sent again. When the
   * refresh is refused the session is over: `onLogout('expired')`, and the first 401 is returned.
   * When the refresh fails otherwise (503 store unavailable, 429...) the tokens are kept and the
   * refresh's response is returned. A 401 for a revoked session ends it without a refresh. A 401
   * asking for a fresher sign-in is returned as it is, without a refresh: see {@link stepUpRequired}.
   */
  fetch (input: string | URL | Request, init?: RequestInit): Promise<Response>
  /**
   * Refreshes now (single flight). Resolves `true` with new tokens, `false` when there is no
   * session any more (the refresh token was refused, or there is none); throws an
   * {@link AuthClientError} when the server could not tell (503, 429...), keeping the tokens.
   * In a browser, call it at start-up: the HttpOnly cookie restores the session after a reload.
   */
  refresh (): Promise<boolean>
  /**
   * Ends this session (`everywhere`: every session of the user) and calls `onLogout('logout')`.
   * Throws an {@link AuthClientError} and keeps the tokens when the server could not do it
   * (503): the session would otherwise live on in the cookie.
   */
  logout (options?: { everywhere?: boolean }): Promise<void>
  /** The current access token, if any. */
  readonly accessToken: string | undefined
  /** When the current access token expires, ms since the epoch. */
  readonly expiresAt: number | undefined
}

/** A refused login, refresh or logout, with the server's `{ statusCode, code, message }`. */
export class AuthClientError extends Error {
  override name = 'AuthClientError'
  /** The HTTP status. */
  readonly statusCode: number
  /** The server's error code (`FST_TOKEN_AUTH_*`, `FST_ERR_*`), when the answer carried one. */
  readonly code: string | undefined
  /** Seconds to wait before retrying (`Retry-After` of a 429 or 503), when sent. */
  readonly retryAfter: number | undefined

  constructor (statusCode: number, code: string | undefined, message: string, retryAfter?: number) {
    super(message)
    this.statusCode = statusCode
    this.code = code
    this.retryAfter = retryAfter
  }
}

/** 401 codes a new access token cures; claims that changed are in the next refresh's token. */
const REFRESHABLE = new Set(['FST_TOKEN_AUTH_MISSING_TOKEN', 'FST_TOKEN_AUTH_INVALID_TOKEN', 'FST_TOKEN_AUTH_TOKEN_EXPIRED', 'FST_TOKEN_AUTH_CLAIMS_CHANGED'])
const SESSION_REVOKED = 'FST_TOKEN_AUTH_SESSION_REVOKED'
/** Refresh refusals that mean the server ended the session, rather than it running out. */
const ENDED_BY_SERVER = new Set(['FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED', 'FST_TOKEN_AUTH_USER_UNAVAILABLE', 'FST_TOKEN_AUTH_REFRESH_DENIED'])
const SUPERSEDED = 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED'
const INVALID_CREDENTIALS = 'FST_TOKEN_AUTH_INVALID_CREDENTIALS'
const ABSOLUTE_URL = /^[a-z][a-z\d+.-]*:/i

interface TokenResponse {
  accessToken: string
  expiresIn: number
  tokenType?: string
  refreshToken?: string
}

/** What a refresh came to: new tokens, no session, or the server's answer when it could not tell. */
type RefreshResult = 'ok' | 'ended' | Response

/** Creates a client; see {@link AuthClientOptions}. */
export function createAuthClient (options: AuthClientOptions = {}): AuthClient {
  return new TokenClient(options)
}

class TokenClient implements AuthClient {
  readonly #base: string
  readonly #prefix: string
  readonly #fetch: typeof fetch
  readonly #inBody: boolean
  readonly #onLogout: AuthClientOptions['onLogout']
  readonly #onTokens: AuthClientOptions['onTokens']
  readonly #dpop: DpopSigner | undefined
  #accessToken: string | undefined
  #tokenType: string | undefined
  #expiresAt: number | undefined
  #refreshToken: string | undefined
  /** Bumped by login and logout, so a refresh that was in flight meanwhile does not undo them. */
  #generation = 0
  #refreshing: Promise<RefreshResult> | undefined

  constructor (options: AuthClientOptions) {
    this.#base = options.baseUrl ?? ''
    this.#prefix = options.prefix ?? '/auth'
    // Called through globalThis: a detached `window.fetch` throws "Illegal invocation".
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
    this.#inBody = (options.refreshTokenTransport ?? (pageUrl() === undefined ? 'body' : 'cookie')) === 'body'
    this.#onLogout = options.onLogout
    this.#onTokens = options.onTokens
    this.#dpop = options.dpop === true ? createDpopSigner() : options.dpop || undefined
  }

  get accessToken (): string | undefined { return this.#accessToken }
  get expiresAt (): number | undefined { return this.#expiresAt }

  async login (username: string, password: string): Promise<void> {
    // Without the field a server with transport 'both' would answer with a cookie, which Node drops.
    const body = this.#inBody ? { username, password, refreshTokenTransport: 'body' } : { username, password }
    const response = await this.#post('/login', body)
    if (!response.ok) throw await errorOf(response)
    this.#generation++
    this.#store(await response.json() as TokenResponse)
  }

  async reauthenticate (username: string, password: string): Promise<void> {
    // The refresh token names the session: in the body, or in the cookie the browser sends.
    const body = this.#inBody ? { username, password, refreshTokenTransport: 'body', refreshToken: this.#refreshToken } : { username, password }
    const response = await this.#post('/reauthenticate', body)
    if (!response.ok) {
      const error = await errorOf(response.clone())
      // A wrong password leaves the session as it was; a refused refresh token ends it.
      if (response.status === 401 && error.code !== INVALID_CREDENTIALS) await this.#refused(response)
      throw error
    }
    // Like a login: a refresh answered meanwhile carries the old sign-in time and is dropped.
    this.#generation++
    this.#store(await response.json() as TokenResponse)
  }

  async fetch (input: string | URL | Request, init?: RequestInit): Promise<Response> {
    const request = new Request(typeof input === 'string' ? this.#url(input) : input, init)
    if (request.headers.has('authorization') || new URL(request.url).origin !== this.#url(this.#prefix).origin) {
      return await this.#fetch(request)
    }
    const sent = this.#accessToken
    // A clone goes first: the original, body unread, stays available for the retry.
    const first = await this.#send(request.clone(), sent)
    // A fresher sign-in is the user's to give (reauthenticate): a refresh would not change auth_time.
    if (first.status !== 401 || stepUpRequired(first) !== undefined) return first
    // A token newer than the one sent means another caller has refreshed already: just retry.
    if (this.#accessToken === undefined || this.#accessToken === sent) {
      const code = await codeOf(first)
      if (code === SESSION_REVOKED) {
        this.#end('revoked')
        return first
      }
      if (!REFRESHABLE.has(code as string)) return first
      const result = await this.#refreshOnce()
      if (result === 'ended') return first
      if (result !== 'ok') {
        await first.body?.cancel()
        return result.clone()
      }
    }
    await first.body?.cancel()
    return await this.#send(request, this.#accessToken)
  }

  async refresh (): Promise<boolean> {
    const result = await this.#refreshOnce()
    if (typeof result === 'string') return result === 'ok'
    throw await errorOf(result.clone())
  }

  async logout (options: { everywhere?: boolean } = {}): Promise<void> {
    const body = this.#inBody && this.#refreshToken !== undefined ? { refreshToken: this.#refreshToken } : undefined
    // Through fetch: `?all=true` needs a valid access token, refreshed if it has expired.
    const response = await this.fetch(this.#prefix + '/logout' + (options.everywhere === true ? '?all=true' : ''), this.#authInit(body))
    // A 401 (only `?all=true` answers one) means there was no session left to end.
    if (!response.ok && response.status !== 401) throw await errorOf(response)
    await response.body?.cancel()
    this.#end('logout')
  }

  /** One refresh at a time: every caller that needs one while it runs awaits the same result. */
  #refreshOnce (): Promise<RefreshResult> {
    this.#refreshing ??= this.#refresh().finally(() => { this.#refreshing = undefined })
    return this.#refreshing
  }

  async #refresh (): Promise<RefreshResult> {
    if (this.#inBody && this.#refreshToken === undefined) return 'ended'
    const generation = this.#generation
    const body = this.#inBody ? { refreshToken: this.#refreshToken } : undefined
    const response = await this.#post('/refresh', body)
    if (generation !== this.#generation) {
      await response.body?.cancel()
      return this.#accessToken === undefined ? 'ended' : 'ok'
    }
    if (response.ok) {
      this.#store(await response.json() as TokenResponse)
      return 'ok'
    }
    if (response.status !== 401) return response
    return await this.#refused(response)
  }

  /** A 401 to a refresh token: the session is over, unless another tab has just rotated the cookie. */
  async #refused (response: Response): Promise<RefreshResult> {
    const code = await codeOf(response)
    // Another tab rotated the shared cookie a moment ago: its successor is arriving, the session lives on.
    if (code === SUPERSEDED && !this.#inBody) return response
    this.#end(ENDED_BY_SERVER.has(code as string) ? 'revoked' : 'expired')
    return 'ended'
  }

  #send (request: Request, token: string | undefined): Promise<Response> {
    // A DPoP token goes with a proof; without a token (a logout after a reload) a proof names the key.
    if (this.#dpop !== undefined && (token === undefined || this.#tokenType === 'DPoP')) return this.#dpop.send(this.#fetch, request, token)
    if (token !== undefined) request.headers.set('authorization', `Bearer ${token}`)
    return this.#fetch(request)
  }

  /** A JSON POST to an auth route, with a proof when DPoP is on. */
  #post (path: string, body: object | undefined): Promise<Response> {
    const url = this.#url(this.#prefix + path)
    return this.#dpop === undefined ? this.#fetch(url, this.#authInit(body)) : this.#dpop.send(this.#fetch, new Request(url, this.#authInit(body)))
  }

  /** A JSON POST to an auth route. */
  #authInit (body: object | undefined): RequestInit {
    return {
      method: 'POST',
      // The cookie mode needs its cookie even cross-origin; the body mode must not send a stale
      // cookie next to the body token (the server refuses both at once).
      credentials: this.#inBody ? 'omit' : 'include',
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    }
  }

  #url (path: string): URL {
    return new URL(ABSOLUTE_URL.test(path) ? path : this.#base + path, pageUrl())
  }

  #store (tokens: TokenResponse): void {
    this.#accessToken = tokens.accessToken
    this.#tokenType = tokens.tokenType
    this.#expiresAt = Date.now() + tokens.expiresIn * 1000
    if (tokens.refreshToken !== undefined) this.#refreshToken = tokens.refreshToken
    this.#onTokens?.({ accessToken: tokens.accessToken, expiresAt: this.#expiresAt })
  }

  /** Forgets the session; tells the app once, if there was one. */
  #end (reason: LogoutReason): void {
    const active = this.#accessToken !== undefined
    this.#accessToken = undefined
    this.#expiresAt = undefined
    this.#refreshToken = undefined
    this.#generation++
    if (active) this.#onLogout?.(reason)
  }
}

/** The page's URL in a browser; undefined in Node. */
function pageUrl (): string | undefined {
  return (globalThis as { location?: { href: string } }).location?.href
}

async function bodyOf (response: Response): Promise<{ code?: string, message?: string }> {
  try {
    return Object(await response.json())
  } catch {
    return {}
  }
}

/** The error code of a response, read from a clone so the response itself stays readable. */
async function codeOf (response: Response): Promise<string | undefined> {
  return (await bodyOf(response.clone())).code
}

async function errorOf (response: Response): Promise<AuthClientError> {
  const { code, message } = await bodyOf(response)
  const retryAfter = response.headers.get('retry-after')
  return new AuthClientError(response.status, code, message ?? `HTTP ${response.status}`, retryAfter === null ? undefined : Number(retryAfter))
}
