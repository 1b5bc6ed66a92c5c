import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { chromium, type BrowserContext, type Page, type Response as PlaywrightResponse } from 'playwright-core'
import t, { type Test } from 'tap'
import { buildApp, configFromEnv } from '../examples/app.js'
import { CONTENT_SECURITY_POLICY } from '../examples/demo.js'
import { decodePayload, sleep, waitFor } from './helpers.js'

// The demo page (examples/public) in real Chromium, against the example app: the client helper
// in cookie mode, under a strict CSP, with two tabs, two devices, revocation, logout, and a
// sensitive action that asks for the password again (step-up) within the same session; and, with
// DPOP=required (with and without server nonces), a session bound to a key kept in IndexedDB; and,
// with DBSC=on, a Chromium started with its DBSC switches.

const CHROMIUM = '/usr/bin/chromium'
const PASSWORD = 'correct-horse-battery-staple'
const COOKIE = 'refresh_token'
/** Seconds a sign-in is fresh enough for POST /account/email. */
const STEP_UP_MAX_AGE = 2
// Every run keeps its screenshot as an artifact; the README's copy is replaced only on request
// (UPDATE_SCREENSHOT=1), so a test run leaves the checkout clean.
const SCREENSHOTS = [
  new URL('../test-artifacts/demo.png', import.meta.url),
  ...(process.env.UPDATE_SCREENSHOT === '1' ? [new URL('../docs/demo.png', import.meta.url)] : [])
]

/**
 * The client helper's smoke test, run inside the page on the page's own /client.js with default
 * options, in three steps so the server's refresh count can be read around the middle one. Plain
 * JavaScript source, evaluated as it is (the TypeScript compiler would add helpers to functions).
 */
const SMOKE_TEST: [string, string, string] = [
  `async (password) => {
    const { createAuthClient, AuthClientError } = await import('/client.js')
    const logouts = []
    const client = createAuthClient({ onLogout (reason) { logouts.push(reason) } })
    window.smoke = { client, logouts }
    const refused = await client.login('alice', 'wrong-password').catch((error) => error)
    await client.login('alice', password)
    const me = await client.fetch('/me')
    return {
      refused: { isError: refused instanceof AuthClientError, statusCode: refused.statusCode, code: refused.code },
      cookieVisible: document.cookie.includes('refresh_token'),
      me: { status: me.status, body: await me.json() }
    }
  }`,
  'async () => await Promise.all([window.smoke.client.refresh(), window.smoke.client.refresh(), window.smoke.client.refresh()])',
  `async () => {
    const { client, logouts } = window.smoke
    const me = await client.fetch('/me')
    await client.logout()
    return { me: me.status, logouts, token: client.accessToken ?? null }
  }`
]

if (!existsSync(CHROMIUM)) {
  const reason = `Chromium is not installed at ${CHROMIUM} (apt-get install chromium)`
  if (process.env.CI === 'true') throw new Error(`${reason}. Under CI=true this is a failure, not a skip.`)
  t.plan(0, reason)
} else {
  // One parent test: tap ends the root as soon as it is idle between subtests.
  t.test('the demo in real Chromium', run)
}

async function run (t: Test): Promise<void> {
  // Access tokens of 3 s: they expire within a test, and a refreshed one stays valid long enough
  // to be seen valid on a slow machine.
  const app = await buildApp(configFromEnv({ ACCESS_TOKEN_TTL: '3', STEP_UP_MAX_AGE: String(STEP_UP_MAX_AGE), LOG_LEVEL: 'silent', LOGIN_RATE_LIMIT: '100' }))
  // Every request the server receives, counted before it is handled.
  const hits: string[] = []
  app.addHook('onRequest', async (request) => { hits.push(`${request.method} ${request.url}`) })
  const reuse: unknown[] = []
  app.tokenAuth.events.on('reuseDetected', (event) => reuse.push(event))
  t.teardown(() => app.close())
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const count = (hit: string) => hits.filter((line) => line === hit).length

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  })
  t.teardown(() => browser.close())

  // What must never happen on any page: an uncaught error, or a CSP violation.
  const problems: string[] = []
  /** The last access token the server issued to any page, read off the wire. */
  let lastAccessToken = ''
  async function newDevice (): Promise<BrowserContext> {
    const context = await browser.newContext({ viewport: { width: 1120, height: 720 } })
    t.teardown(() => context.close())
    return context
  }
  async function open (context: BrowserContext, url = base): Promise<Page> {
    const page = await context.newPage()
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`))
    page.on('console', (message) => { if (/Content Security Policy/i.test(message.text())) problems.push(message.text()) })
    page.on('response', async (response) => {
      if (/\/auth\/(login|refresh|reauthenticate)$/.test(response.url()) && response.status() === 200) lastAccessToken = (await response.json()).accessToken
    })
    await page.goto(url)
    return page
  }
  /** Signs in through the form and waits for the signed-in view. */
  async function signIn (page: Page): Promise<void> {
    await page.locator('#login-view').waitFor()
    await page.fill('#password', PASSWORD)
    await page.click('#login-form button[type=submit]')
    await page.locator('#user').filter({ hasText: 'alice' }).waitFor()
  }
  /** Clicks "Call GET /me" and resolves with the status of the final /me response. */
  async function callMe (page: Page): Promise<number> {
    const me = `${new URL(page.url()).origin}/me`
    const [response] = await Promise.all([
      page.waitForResponse((response) => response.url() === me && response.status() !== 401),
      page.click('#call-me')
    ])
    return response.status()
  }
  async function waitUntilExpired (page: Page): Promise<void> {
    await page.locator('#token-card[data-state="expired"]').waitFor({ timeout: 6000 })
  }
  async function refreshCookie (context: BrowserContext) {
    return (await context.cookies()).find((cookie) => cookie.name === COOKIE)
  }
  /**
   * Clicks "Call GET /me" on a page whose session was ended elsewhere, and checks it lands on the
   * login view saying why. Normally the access token is still valid and the server answers
   * SESSION_REVOKED; on a loaded machine it may have expired first: then the refresh must be
   * refused (a live session would refresh, answer 200 and never show the login view).
   */
  async function endedElsewhere (t: Test, page: Page): Promise<void> {
    const [me] = await Promise.all([page.waitForResponse(`${base}/me`), page.click('#call-me')])
    t.equal(me.status(), 401)
    const { code } = await me.json()
    if (code === 'FST_TOKEN_AUTH_SESSION_REVOKED') {
      t.equal(await loginNotice(page), 'This session was ended from another device. Please sign in again.')
    } else {
      t.equal(code, 'FST_TOKEN_AUTH_TOKEN_EXPIRED', 'or, under load, expired first')
      t.equal(await loginNotice(page), 'Your session has expired. Please sign in again.')
    }
  }
  /** Waits for the login view and resolves with the notice it shows. */
  async function loginNotice (page: Page): Promise<string | null> {
    await page.locator('#login-view').waitFor()
    return await page.locator('#notice').textContent()
  }

  const deviceA = await newDevice()
  let tab1!: Page
  let tab2!: Page

  await t.test('the page, its script and the client helper: strict CSP, no inline code', async (t) => {
    const page = await fetch(base)
    t.equal(page.status, 200)
    t.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
    t.equal(page.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY)
    t.match(CONTENT_SECURITY_POLICY, /^default-src 'self';/)
    t.equal(page.headers.get('x-content-type-options'), 'nosniff')
    const html = await page.text()
    t.notMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script')
    t.notMatch(html, /<style|\sstyle=|\son[a-z]+=/i, 'no inline style or handler')
    for (const path of ['/app.js', '/client.js']) {
      const script = await fetch(`${base}${path}`)
      t.equal(script.status, 200, path)
      t.equal(script.headers.get('content-type'), 'text/javascript; charset=utf-8', `${path}: a JavaScript type`)
      t.equal(script.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY)
    }
    const client = await (await fetch(`${base}/client.js`)).text()
    t.match(client, /export function createAuthClient/, 'the helper, compiled from lib/client.ts')
    // It runs as it is in a browser: its only imports are its sibling modules, served beside it.
    const imports = (source: string) => [...source.matchAll(/^\s*(?:import|export)\s[^'"\n]*from\s+'([^']+)'/gm)].map((match) => match[1])
    t.same(imports(client), ['./client-dpop.js', './www-authenticate.js', './client-dpop.js', './www-authenticate.js'])
    const dpop = await fetch(`${base}/client-dpop.js`)
    t.equal(dpop.status, 200)
    t.equal(dpop.headers.get('content-type'), 'text/javascript; charset=utf-8')
    const signer = await dpop.text()
    t.match(signer, /export function createDpopSigner/)
    t.same(imports(signer), ['./www-authenticate.js'], 'the DPoP signer imports only the parser')
    const sibling = await fetch(`${base}/www-authenticate.js`)
    t.equal(sibling.status, 200)
    t.match(sibling.headers.get('content-type'), /^text\/javascript/)
    const parser = await sibling.text()
    t.match(parser, /export function parseWwwAuthenticate/)
    t.notMatch(parser, /^\s*import\s/m, 'and that one imports nothing')
  })

  await t.test('login: the refresh cookie is HttpOnly, SameSite=Strict and out of reach of scripts', async (t) => {
    tab1 = await open(deviceA)
    await signIn(tab1)
    await tab1.locator('#sessions tr').first().waitFor()
    t.equal(count('POST /auth/login'), 1)
    t.equal(await tab1.evaluate(() => document.cookie), '', 'document.cookie does not show it')
    const cookie = await refreshCookie(deviceA)
    t.ok(cookie, 'the browser holds the refresh cookie')
    t.match(cookie, { httpOnly: true, sameSite: 'Strict', path: '/auth', secure: false })
    t.equal(await tab1.locator('#sessions tr').count(), 1, 'one session listed')
    t.match(await tab1.locator('#sessions tr.current').textContent(), /Chrome on Linux.*this device.*127\.0\.0\.1/)
  })

  await t.test('an expired access token: the next /me refreshes exactly once and succeeds', async (t) => {
    const cookieBefore = (await refreshCookie(deviceA))?.value
    await waitUntilExpired(tab1)
    const refreshes = count('POST /auth/refresh')
    const mes = count('GET /me')
    t.equal(await callMe(tab1), 200)
    t.equal(count('POST /auth/refresh'), refreshes + 1, 'exactly one refresh')
    t.equal(count('GET /me'), mes + 2, '/me: the 401, then the retry')
    await tab1.locator('#token-card[data-state="valid"]').waitFor({ timeout: 2000 })
    t.not((await refreshCookie(deviceA))?.value, cookieBefore, 'the refresh cookie was rotated')
  })

  await t.test('two tabs refreshing at once both stay signed in', async (t) => {
    tab2 = await open(deviceA)
    await tab2.locator('#user').filter({ hasText: 'alice' }).waitFor()
    t.match(await tab2.locator('#log').textContent(), /Session restored from the refresh cookie/, 'a new tab is signed in by the cookie')
    await Promise.all([waitUntilExpired(tab1), waitUntilExpired(tab2)])
    const refreshes = count('POST /auth/refresh')
    const refreshAnswers = [tab1, tab2].map((tab) => tab.waitForResponse(`${base}/auth/refresh`))
    t.same(await Promise.all([callMe(tab1), callMe(tab2)]), [200, 200], 'both tabs got /me')
    t.same((await Promise.all(refreshAnswers)).map((response) => response.status()), [200, 200], 'both refreshes answered 200')
    t.equal(count('POST /auth/refresh'), refreshes + 2, 'one refresh per tab')
    t.same(reuse, [], 'no reuse detected')
    for (const tab of [tab1, tab2]) {
      t.equal(await tab.locator('#user').textContent(), 'alice')
      await tab.locator('#token-card[data-state="valid"]').waitFor({ timeout: 2000 })
    }
    await tab1.click('#reload-sessions')
    await tab1.locator('#sessions tr').first().waitFor()
    t.equal(await tab1.locator('#sessions tr').count(), 1, 'still the one session: not revoked')
  })

  const deviceB = await newDevice()
  let other!: Page

  await t.test('the sessions list shows every device, and revoking one ends it', async (t) => {
    other = await open(deviceB)
    await signIn(other)
    await tab1.click('#reload-sessions')
    await tab1.locator('#sessions tr:nth-child(2)').waitFor()
    t.equal(await tab1.locator('#sessions tr.current').count(), 1, 'this device is marked')
    await tab1.click('#call-me')
    await tab1.locator('#token-card[data-state="valid"]').waitFor()
    for (const url of SCREENSHOTS) {
      await mkdir(new URL('.', url), { recursive: true })
      await writeFile(url, await tab1.screenshot({ fullPage: true }))
    }

    // A fresh access token on the other device, so its next call meets the revocation, not the expiry.
    await Promise.all([other.waitForResponse(`${base}/auth/refresh`), other.click('#refresh-now')])
    t.equal((await app.tokenAuth.listSessions('user-1')).length, 2)

    // With 2 s access tokens on a loaded machine the first DELETE may meet an expired token: the
    // client then refreshes and sends it again. The answer that counts is the last one.
    const [revoked] = await Promise.all([
      tab1.waitForResponse((response) => response.request().method() === 'DELETE' && response.status() !== 401),
      tab1.click('#sessions tr:not(.current) button.revoke')
    ])
    t.equal(revoked.status(), 204)
    await tab1.locator('#sessions tr:nth-child(2)').waitFor({ state: 'detached' })
    t.equal(await tab1.locator('#sessions tr').count(), 1, 'the other device is gone from the list')
    t.equal((await app.tokenAuth.listSessions('user-1')).length, 1, 'and from the server')
    await endedElsewhere(t, other)
  })

  await t.test('logout ends the session: cookie cleared, /me fails, the old refresh token answers 401', async (t) => {
    const oldRefreshToken = (await refreshCookie(deviceA))?.value as string
    const oldAccessToken = lastAccessToken
    const [logout] = await Promise.all([tab1.waitForResponse(`${base}/auth/logout`), tab1.click('#logout')])
    t.equal(logout.status(), 204)
    t.equal(await loginNotice(tab1), 'You are signed out.')
    t.equal(await refreshCookie(deviceA), undefined, 'the browser dropped the refresh cookie')

    const me = await fetch(`${base}/me`, { headers: { authorization: `Bearer ${oldAccessToken}` } })
    t.equal(me.status, 401, 'the last access token fails at once')
    // Access tokens live 2 s here: on a loaded machine this one may expire before the server checks
    // it (expiry is checked first). Only a token past its exp may be refused as expired.
    const code = (await me.json()).code
    if (code === 'FST_TOKEN_AUTH_TOKEN_EXPIRED') t.ok(Date.now() / 1000 >= (decodePayload(oldAccessToken).exp as number), 'expired, truly past its exp')
    else t.equal(code, 'FST_TOKEN_AUTH_SESSION_REVOKED', 'revoked by the logout')
    const refresh = await fetch(`${base}/auth/refresh`, { method: 'POST', headers: { cookie: `${COOKIE}=${oldRefreshToken}` } })
    t.equal(refresh.status, 401, 'the last refresh token is refused')
    t.equal((await refresh.json()).code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN')
    t.match(refresh.headers.get('set-cookie'), /^refresh_token=;/, 'and the cookie is cleared again')

    // The other tab shared the session: its next call finds it ended.
    await endedElsewhere(t, tab2)
  })

  await t.test('log out everywhere ends the sessions of every device', async (t) => {
    await signIn(tab1)
    await signIn(other)
    t.equal((await app.tokenAuth.listSessions('user-1')).length, 2, 'two devices signed in')
    await tab1.click('#logout-all')
    t.equal(await loginNotice(tab1), 'You are signed out.')
    t.same(await app.tokenAuth.listSessions('user-1'), [], 'no session left')
    await endedElsewhere(t, other)
  })

  await t.test('a sensitive action on an old sign-in: "confirm your password", then it succeeds in the same session', async (t) => {
    const device = await newDevice()
    const page = await open(device)
    await signIn(page)
    const sid = decodePayload(lastAccessToken).sid
    const signedInAt = decodePayload(lastAccessToken).auth_time as number
    // Older than STEP_UP_MAX_AGE (auth_time is in whole seconds), then a fresh access token, so
    // the action meets the sign-in's age rather than the token's expiry.
    await page.waitForTimeout((STEP_UP_MAX_AGE + 1) * 1000 + 100)
    await Promise.all([page.waitForResponse(`${base}/auth/refresh`), page.click('#refresh-now')])
    const from = hits.length
    const logins = count('POST /auth/login')
    const answers: PlaywrightResponse[] = []
    page.on('response', (response) => { if (response.url() === `${base}/account/email`) answers.push(response) })

    await page.fill('#email', 'alice@example.org')
    await page.click('#email-form button[type=submit]')
    await page.locator('#step-up-form').waitFor()
    // The last answer: on a loaded machine the 2 s access token may have expired first (a 401, a refresh, the retry).
    const challenge = answers.at(-1) as PlaywrightResponse
    t.equal(challenge.status(), 401)
    t.equal((await challenge.json()).code, 'FST_TOKEN_AUTH_INSUFFICIENT_USER_AUTHENTICATION')
    t.match(challenge.headers()['www-authenticate'], new RegExp(`^Bearer error="insufficient_user_authentication", .*max_age=${STEP_UP_MAX_AGE}$`))
    t.match(await page.locator('#step-up-prompt').textContent(), /confirm your password/i, 'the page asks for the password')
    t.equal(await page.locator('#email-form').isHidden(), true)
    t.equal(hits.slice(from).at(-1), 'POST /account/email', 'the step-up 401 was followed by no refresh')

    await page.fill('#step-up-password', 'wrong-password')
    const [wrong] = await Promise.all([page.waitForResponse(`${base}/auth/reauthenticate`), page.click('#step-up-form button[type=submit]')])
    t.equal(wrong.status(), 401)
    t.equal(await page.locator('#step-up-error').textContent(), 'Invalid username or password', 'a wrong password: try again')
    t.equal(await page.locator('#step-up-form').isVisible(), true)

    await page.fill('#step-up-password', PASSWORD)
    const [right, done] = await Promise.all([
      page.waitForResponse(`${base}/auth/reauthenticate`),
      page.waitForResponse((response) => response.url() === `${base}/account/email` && response.status() === 200),
      page.click('#step-up-form button[type=submit]')
    ])
    t.equal(right.status(), 200)
    t.same(await done.json(), { email: 'alice@example.org' })
    await page.locator('#email-result').filter({ hasText: 'E-mail address changed to alice@example.org' }).waitFor()
    t.equal(await page.locator('#step-up-form').isHidden(), true, 'the confirmation is gone')
    const renewed = decodePayload(lastAccessToken)
    t.equal(renewed.sid, sid, 'the same session id')
    t.ok((renewed.auth_time as number) > signedInAt, 'a later sign-in time')
    t.same((await app.tokenAuth.listSessions('user-1')).map((session) => session.id), [sid], 'one session, the same one')
    t.equal(count('POST /auth/login'), logins, 'no new login')
    await Promise.all([page.waitForResponse(`${base}/auth/logout`), page.click('#logout')])
  })

  await t.test("the client helper's own smoke test, in the page", async (t) => {
    const page = await open(await newDevice())
    await page.locator('#login-view').waitFor()
    const evaluate = async (source: string, ...args: unknown[]) =>
      await page.evaluate(`(${source})(${args.map((arg) => JSON.stringify(arg)).join(', ')})`) as unknown
    const [setup, refreshAll, finish] = SMOKE_TEST
    const started = await evaluate(setup, PASSWORD) as Record<string, unknown>
    t.same(started.refused, { isError: true, statusCode: 401, code: 'FST_TOKEN_AUTH_INVALID_CREDENTIALS' }, 'a refused login: AuthClientError')
    t.equal(started.cookieVisible, false, 'cookie transport by default in a browser, invisible to scripts')
    t.same(started.me, { status: 200, body: { id: 'user-1', username: 'alice' } })
    const refreshes = count('POST /auth/refresh')
    t.same(await evaluate(refreshAll), [true, true, true])
    t.equal(count('POST /auth/refresh'), refreshes + 1, 'three concurrent refresh() calls, one request')
    t.same(await evaluate(finish), { me: 200, logouts: ['logout'], token: null }, 'fetch, then logout')
  })

  for (const nonce of [false, true]) {
    await t.test(`DPoP${nonce ? ' with server nonces' : ''}: the session is bound to a key kept in this browser; the cookie alone is useless elsewhere`, async (t) => {
      await dpopScenario(t, nonce)
    })
  }

  /**
   * The demo against DPOP=required (and DPOP_NONCE=true): the page finds DPoP in the server's
   * challenge and binds the session to a non-extractable key in IndexedDB. A reload keeps the
   * key and the session; the refresh cookie copied into another browser context (no key) is refused.
   */
  async function dpopScenario (t: Test, nonce: boolean): Promise<void> {
    const dpopApp = await buildApp(configFromEnv({ DPOP: 'required', DPOP_NONCE: String(nonce), LOG_LEVEL: 'silent', LOGIN_RATE_LIMIT: '100' }))
    t.teardown(() => dpopApp.close())
    const dpopBase = await dpopApp.listen({ host: '127.0.0.1', port: 0 })
    const dpopReuse: unknown[] = []
    dpopApp.tokenAuth.events.on('reuseDetected', (event) => dpopReuse.push(event))
    const authAnswers: PlaywrightResponse[] = []
    const watch = (page: Page) => page.on('response', (response) => { if (response.url().startsWith(`${dpopBase}/auth/`)) authAnswers.push(response) })
    /** The answers to `path` since `from`: [status, code] of each (a 200's code is its token type). */
    const answers = async (path: string, from: number) => await Promise.all(authAnswers.slice(from).filter((response) => response.url() === `${dpopBase}${path}`)
      .map(async (response) => { const body = await response.json(); return [response.status(), body.code ?? body.tokenType] }))
    /** The nonce round trip, when the server wants one and the page does not know it yet. */
    const nonceFirst = nonce ? [[400, 'FST_TOKEN_AUTH_USE_DPOP_NONCE']] : []
    const thumbprintOf = async (page: Page) => await page.evaluate("import('/client-dpop.js').then(({ createDpopSigner }) => createDpopSigner().thumbprint())") as string
    const keyOfCookie = async (context: BrowserContext) => (await refreshCookie(context))?.value.split('.')[2]

    const device = await newDevice()
    const page = await open(device, dpopBase)
    watch(page)
    await signIn(page)
    t.same(await answers('/auth/login', 0), [...nonceFirst, [200, 'DPoP']], 'login: token type DPoP')
    const login = authAnswers.find((response) => response.url().endsWith('/auth/login') && response.status() === 200) as PlaywrightResponse
    const loginHeaders = await login.request().allHeaders()
    t.match(loginHeaders.dpop, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the login carried a proof')
    const proofHeader = decodeHeader(loginHeaders.dpop as string)
    t.match(proofHeader, { typ: 'dpop+jwt', alg: 'ES256', jwk: { kty: 'EC', crv: 'P-256', x: /^[\w-]{43}$/, y: /^[\w-]{43}$/ } }, 'ES256')
    t.same([Object.keys(proofHeader).sort(), Object.keys(proofHeader.jwk).sort()], [['alg', 'jwk', 'typ'], ['crv', 'kty', 'x', 'y']], 'the public key only')
    t.match(await page.locator('#log').textContent(), /DPoP on/, 'the page found DPoP in the challenge')

    const [me] = await Promise.all([page.waitForResponse(`${dpopBase}/me`), page.click('#call-me')])
    t.equal(me.status(), 200, 'a protected call with the bound token')
    const meHeaders = await me.request().allHeaders()
    t.match(meHeaders.authorization, /^DPoP [\w-]+\.[\w-]+\.[\w-]+$/, 'sent as Authorization: DPoP')
    t.type(meHeaders.dpop, 'string', 'with a proof')
    const jkt = await keyOfCookie(device)
    t.match(jkt, /^[\w-]{43}$/, "the refresh cookie names the key's thumbprint")
    t.equal(await thumbprintOf(page), jkt, "the page's key is that key")
    // Plain JavaScript source, evaluated as it is (like SMOKE_TEST).
    t.equal(await page.evaluate(`(async () => {
      const open = indexedDB.open('fastify-token-auth')
      await new Promise((resolve) => { open.onsuccess = resolve })
      const read = open.result.transaction('fastify-token-auth-dpop-keys').objectStore('fastify-token-auth-dpop-keys').get('default')
      await new Promise((resolve) => { read.onsuccess = resolve })
      const { privateKey } = read.result
      const exported = await crypto.subtle.exportKey('jwk', privateKey).then(() => 'exported', (error) => error.name)
      open.result.close()
      return privateKey.extractable + ' ' + exported
    })()`), 'false InvalidAccessError', 'IndexedDB holds a private key that cannot be exported')

    // A reload: the page restores the session with the cookie and the same key, then refreshes again.
    let from = authAnswers.length
    const cookieBefore = (await refreshCookie(device))?.value
    await page.reload()
    await page.locator('#user').filter({ hasText: 'alice' }).waitFor()
    t.same(await answers('/auth/refresh', from), [...nonceFirst, [200, 'DPoP']], 'the reload restored the session (a new page knows no nonce)')
    from = authAnswers.length
    await Promise.all([page.waitForResponse((response) => response.url() === `${dpopBase}/auth/refresh` && response.status() === 200), page.click('#refresh-now')])
    t.same(await answers('/auth/refresh', from), [[200, 'DPoP']], 'refresh now: the nonce is known')
    t.not((await refreshCookie(device))?.value, cookieBefore, 'the cookie was rotated')
    t.equal(await keyOfCookie(device), jkt, 'still bound to the same key')
    t.equal(await thumbprintOf(page), jkt, 'the key survived the reload')
    t.equal(await callMe(page), 200)

    // The refresh cookie copied into another browser context: its page makes its own key.
    const cookie = await refreshCookie(device)
    const thief = await newDevice()
    await thief.addCookies([cookie as NonNullable<typeof cookie>])
    const sessions = await dpopApp.tokenAuth.listSessions('user-1')
    const stolen = await thief.newPage()
    watch(stolen)
    from = authAnswers.length
    await stolen.goto(dpopBase)
    t.match(await loginNotice(stolen), /^Please sign in again: /, 'the page asks to sign in')
    t.same(await answers('/auth/refresh', from), [...nonceFirst, [400, 'FST_TOKEN_AUTH_INVALID_DPOP_PROOF']], 'the refresh is refused: the proof is of another key')
    t.not(await thumbprintOf(stolen), jkt, 'the other context has a key of its own')
    t.equal((await refreshCookie(thief))?.value, cookie?.value, 'the copied cookie was not spent')
    t.same(await dpopApp.tokenAuth.listSessions('user-1'), sessions, 'nothing rotated, nothing revoked')
    t.same(dpopReuse, [], 'no reuse detected')

    // The owner is unaffected.
    await Promise.all([page.waitForResponse((response) => response.url() === `${dpopBase}/auth/refresh` && response.status() === 200), page.click('#refresh-now')])
    t.equal(await keyOfCookie(device), jkt)
    t.equal(await callMe(page), 200)
    await Promise.all([page.waitForResponse(`${dpopBase}/auth/logout`), page.click('#logout')])
    t.equal(await loginNotice(page), 'You are signed out.')
  }

  await t.test('DBSC on, in Chromium with its DBSC switches: a browser that registers is bound, one that does not keeps a working bearer session', async (t) => {
    await dbscScenario(t)
  })

  /**
   * The demo against DBSC=on, in a Chromium started with the switches that turn Device Bound
   * Session Credentials on for testing (DBSC itself, and software keys: Linux has no TPM key
   * provider). Debian's Chromium 156 does not register even so (docs/security.md says what was
   * tried); then the page must keep a working bearer session, offered DBSC again at each refresh.
   * A Chromium that does register must end up bound and renew its device cookie by itself.
   */
  async function dbscScenario (t: Test): Promise<void> {
    const dbscApp = await buildApp(configFromEnv({ DBSC: 'on', DBSC_COOKIE_MAX_AGE: '10', LOG_LEVEL: 'silent', LOGIN_RATE_LIMIT: '100' }))
    const dbscHits: string[] = []
    dbscApp.addHook('onRequest', async (request) => { dbscHits.push(`${request.method} ${request.url}`) })
    t.teardown(() => dbscApp.close())
    const dbscBase = await dbscApp.listen({ host: '127.0.0.1', port: 0 })
    const dbscBrowser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', ...DBSC_SWITCHES]
    })
    t.teardown(() => dbscBrowser.close())
    const context = await dbscBrowser.newContext()
    const page = await open(context, dbscBase)
    const [login] = await Promise.all([page.waitForResponse(`${dbscBase}/auth/login`), signIn(page)])
    t.match(await login.headerValue('secure-session-registration'), /^\(ES256 RS256\);path="\/auth\/dbsc\/registration";challenge="\d+\.[\w-]{16}\.[\w-]{22}"$/,
      'the login offers DBSC registration')
    // A browser registers in the background, right after the answer that offered it.
    const registered = await waitFor(() => dbscHits.includes('POST /auth/dbsc/registration'), { timeout: 3000 }).then(() => true, () => false)
    const cookies = async () => Object.fromEntries((await context.cookies()).map((cookie) => [cookie.name, cookie.value]))
    const refreshNow = async () => await Promise.all([page.waitForResponse(`${dbscBase}/auth/refresh`), page.click('#refresh-now')]).then(([response]) => response)
    if (registered) {
      await waitFor(async () => (await cookies()).device_session, { timeout: 3000 })
      t.match((await cookies())[COOKIE], /\.dbsc-[\w-]{43}\./, 'registered: the refresh cookie names the browser\'s key')
      await sleep(11_000)
      const refreshed = await refreshNow()
      t.equal(refreshed.status(), 200, 'after the device cookie expired, the browser renewed it by itself and the refresh succeeded')
      t.ok(dbscHits.includes('POST /auth/dbsc/refresh'), 'through the DBSC refresh endpoint')
      t.match((await cookies())[COOKIE], /\.dbsc-[\w-]{43}\./, 'still bound')
    } else {
      t.comment(`Chromium ${dbscBrowser.version()} made no DBSC registration request with ${DBSC_SWITCHES.join(' ')}: it does not run DBSC here`)
      t.notOk((await cookies()).device_session, 'not registered: no device cookie')
      t.notMatch((await cookies())[COOKIE], /\.dbsc-/, 'and a bearer session')
      const refreshed = await refreshNow()
      t.equal(refreshed.status(), 200, 'which refreshes as without DBSC')
      t.ok(await refreshed.headerValue('secure-session-registration'), 'and is offered DBSC again')
      t.equal(await callMe(page), 200)
    }
    await Promise.all([page.waitForResponse(`${dbscBase}/auth/logout`), page.click('#logout')])
    t.equal(await loginNotice(page), 'You are signed out.')
  }

  t.same(problems, [], 'no page error and no CSP violation on any page')
}

/** Chromium's switches for DBSC: the feature, its persistence, and software keys for testing where there is no TPM. */
const DBSC_SWITCHES = [
  '--enable-features=DeviceBoundSessions,DeviceBoundSessionsPersistence,EnableBoundSessionCredentialsSoftwareKeysForManualTesting,UseUnexportableKeyServiceInBrowserProcess',
  '--enable-bound-session-credentials-software-keys-for-manual-testing'
]

/** A JWS's protected header. */
function decodeHeader (jws: string): { jwk: object } {
  return JSON.parse(Buffer.from(jws.split('.')[0] as string, 'base64url').toString())
}
