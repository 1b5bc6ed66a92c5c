// The demo page: plain ES module, no build step. Every request goes through the client helper,
// which keeps the access token in memory and refreshes it with the HttpOnly cookie.
import { createAuthClient, parseWwwAuthenticate, stepUpRequired } from '/client.js'

const $ = (id) => document.getElementById(id)

const LOGOUT_NOTICES = {
  logout: 'You are signed out.',
  expired: 'Your session has expired. Please sign in again.',
  revoked: 'This session was ended from another device. Please sign in again.'
}

/** The lifetime of the current access token, for the progress bar. */
let lifetime = 0
let expiredLogged = false
let signingIn = false

/**
 * Whether the server takes DPoP (its DPOP setting): a request without a token is answered with
 * the challenges it accepts, and `DPoP algs="…"` is among them when it does (RFC 9449 §7.1).
 */
async function dpopOffered () {
  const response = await fetch('/me', { credentials: 'omit' })
  await response.body?.cancel()
  return parseWwwAuthenticate(response.headers.get('www-authenticate') ?? '').some((challenge) => challenge.scheme === 'dpop')
}

// With DPoP the session is bound to a key pair made in this browser, kept in IndexedDB and not
// extractable: a refresh cookie copied elsewhere is useless without it.
const dpop = await dpopOffered().catch(() => false)
const auth = createAuthClient({
  dpop,
  onTokens ({ expiresAt }) {
    lifetime = expiresAt - Date.now()
    expiredLogged = false
    if (!signingIn) log(`Access token refreshed, valid for ${seconds(lifetime)}`)
  },
  onLogout (reason) {
    log(LOGOUT_NOTICES[reason], reason === 'logout' ? 'info' : 'warn')
    showLogin(LOGOUT_NOTICES[reason])
  }
})

function seconds (ms) {
  return `${(Math.max(0, ms) / 1000).toFixed(1)} s`
}

/** Builds an element; text goes in as text, never as HTML. */
function el (tag, properties = {}, ...children) {
  const element = Object.assign(document.createElement(tag), properties)
  element.append(...children)
  return element
}

function log (message, kind = 'info') {
  const time = new Date().toLocaleTimeString([], { hour12: false })
  $('log').prepend(el('li', { className: kind }, el('time', {}, time), message))
  while ($('log').children.length > 8) $('log').lastElementChild.remove()
}

/** The server's error code of a failed response, for the activity log. */
async function failure (response) {
  const body = await response.json().catch(() => ({}))
  return `${response.status} ${body.code ?? ''}`.trim()
}

function showLogin (notice) {
  hideStepUp()
  $('email-result').hidden = true
  $('app-view').hidden = true
  $('login-view').hidden = false
  $('notice').hidden = notice === undefined
  $('notice').textContent = notice ?? ''
  $('password').value = ''
  $('password').focus()
}

async function showApp () {
  $('login-view').hidden = true
  $('notice').hidden = true
  $('app-view').hidden = false
  await Promise.all([callMe(), loadSessions()])
}

async function callMe () {
  const response = await auth.fetch('/me')
  if (!response.ok) return log(`GET /me → ${await failure(response)}`, 'warn')
  const me = await response.json()
  $('user').textContent = me.username
  $('user-id').textContent = `(${me.id})`
  log(`GET /me → 200, ${me.username}`)
}

async function loadSessions () {
  const response = await auth.fetch('/auth/sessions')
  if (!response.ok) return log(`GET /auth/sessions → ${await failure(response)}`, 'warn')
  const { sessions } = await response.json()
  $('sessions').replaceChildren(...sessions.map(sessionRow))
}

function sessionRow (session) {
  const revoke = el('button', { type: 'button', className: 'revoke link danger', textContent: 'Revoke' })
  revoke.addEventListener('click', () => revokeSession(session))
  const name = el('td', { title: session.userAgent ?? '' }, device(session.userAgent))
  if (session.current) name.append(' ', el('span', { className: 'badge' }, 'this device'))
  return el('tr', { className: session.current ? 'current' : '' },
    name,
    el('td', {}, session.ip ?? '–'),
    el('td', {}, clock(session.createdAt)),
    el('td', {}, clock(session.lastUsedAt)),
    el('td', {}, revoke))
}

async function revokeSession (session) {
  const response = await auth.fetch(`/auth/sessions/${encodeURIComponent(session.id)}`, { method: 'DELETE' })
  if (!response.ok) return log(`DELETE /auth/sessions → ${await failure(response)}`, 'warn')
  log(`Session on ${device(session.userAgent)} revoked`)
  // Revoking this very session: the next call answers 401 and the client signs out.
  await loadSessions()
}

function clock (iso) {
  return new Date(iso).toLocaleTimeString([], { hour12: false })
}

/** "Chrome on Linux", from a User-Agent string. */
function device (userAgent) {
  if (!userAgent) return 'Unknown client'
  const browser = [['Edg/', 'Edge'], ['Firefox/', 'Firefox'], ['Chrome/', 'Chrome'], ['Safari/', 'Safari'], ['curl/', 'curl']]
    .find(([marker]) => userAgent.includes(marker))?.[1] ?? userAgent.split(/[\s/]/)[0]
  const os = [['Windows', 'Windows'], ['Android', 'Android'], ['iPhone', 'iOS'], ['Mac OS X', 'macOS'], ['Linux', 'Linux']]
    .find(([marker]) => userAgent.includes(marker))?.[1]
  return os ? `${browser} on ${os}` : browser
}

/** The e-mail address waiting for the password confirmation, if any. */
let pendingEmail

/**
 * The sensitive action. A sign-in older than the route allows comes back as a typed outcome
 * (stepUpRequired), not as a logout: the page asks for the password and then tries again.
 */
async function changeEmail (email) {
  $('email-result').hidden = true
  const response = await auth.fetch('/account/email', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email })
  })
  const stepUp = stepUpRequired(response)
  if (stepUp !== undefined) {
    log(`POST /account/email → 401, a more recent sign-in is needed${stepUp.maxAge === undefined ? '' : ` (at most ${stepUp.maxAge} s old)`}`, 'warn')
    pendingEmail = email
    showStepUp(stepUp)
    return
  }
  if (!response.ok) return log(`POST /account/email → ${await failure(response)}`, 'warn')
  const body = await response.json()
  $('email-result').textContent = `E-mail address changed to ${body.email}`
  $('email-result').hidden = false
  log(`POST /account/email → 200, ${body.email}`)
}

function showStepUp (stepUp) {
  $('email-form').hidden = true
  $('step-up-form').hidden = false
  $('step-up-error').hidden = true
  $('step-up-prompt').textContent = stepUp.maxAge === undefined
    ? 'Please confirm your password to continue.'
    : `Please confirm your password to continue: this needs a sign-in less than ${stepUp.maxAge} s old.`
  $('step-up-password').value = ''
  $('step-up-password').focus()
}

function hideStepUp () {
  pendingEmail = undefined
  $('step-up-form').hidden = true
  $('step-up-password').value = ''
  $('email-form').hidden = false
}

async function confirmPassword () {
  $('step-up-error').hidden = true
  try {
    // The same session, a new sign-in time: the refresh cookie names the session.
    await auth.reauthenticate($('user').textContent, $('step-up-password').value)
  } catch (error) {
    // A wrong password keeps the session; a session that is gone has shown the login view already.
    $('step-up-error').textContent = error.message
    $('step-up-error').hidden = false
    return
  }
  const email = pendingEmail
  hideStepUp()
  log('Password confirmed: same session, new sign-in time')
  await changeEmail(email)
}

/** The countdown, several times a second. */
function tick () {
  if (auth.expiresAt === undefined) return
  const left = auth.expiresAt - Date.now()
  const expired = left <= 0
  $('token-card').dataset.state = expired ? 'expired' : 'valid'
  $('expiry').textContent = expired ? 'Expired: the next request refreshes it' : `Expires in ${seconds(left)}`
  $('ttl').value = lifetime > 0 ? Math.max(0, left) / lifetime : 0
  if (expired && !expiredLogged) {
    expiredLogged = true
    log('Access token expired', 'muted')
  }
}

/** Runs a button's action with the button disabled, logging an unexpected failure. */
function onClick (id, action) {
  $(id).addEventListener('click', async () => {
    $(id).disabled = true
    try {
      await action()
    } catch (error) {
      log(error.message, 'warn')
    } finally {
      $(id).disabled = false
    }
  })
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  $('login-error').hidden = true
  signingIn = true
  try {
    await auth.login($('username').value, $('password').value)
    log(`Signed in as ${$('username').value}`)
    await showApp()
  } catch (error) {
    // AuthClientError: the server's message ("Invalid username or password", "Too many login attempts...").
    $('login-error').textContent = error.message
    $('login-error').hidden = false
  } finally {
    signingIn = false
  }
})
/** A form's submit, with its submit button disabled meanwhile. */
function onSubmit (id, action) {
  $(id).addEventListener('submit', async (event) => {
    event.preventDefault()
    const button = $(id).querySelector('button[type=submit]')
    button.disabled = true
    try {
      await action()
    } catch (error) {
      log(error.message, 'warn')
    } finally {
      button.disabled = false
    }
  })
}

onSubmit('email-form', () => changeEmail($('email').value))
onSubmit('step-up-form', confirmPassword)
$('step-up-cancel').addEventListener('click', hideStepUp)
onClick('call-me', callMe)
onClick('refresh-now', async () => { if (await auth.refresh()) await loadSessions() })
onClick('reload-sessions', loadSessions)
onClick('logout', () => auth.logout())
onClick('logout-all', () => auth.logout({ everywhere: true }))
setInterval(tick, 100)

if (dpop) log('DPoP on: requests are signed with a key pair kept in this browser (not extractable)')
// A reload keeps the session: the HttpOnly cookie is exchanged for a new access token.
try {
  if (await auth.refresh()) {
    log('Session restored from the refresh cookie')
    await showApp()
  } else {
    showLogin()
  }
} catch (error) {
  // A 400 is a refused DPoP proof (a cookie without this browser's key, or DPoP now required): sign in again.
  showLogin(error.statusCode === 400 ? `Please sign in again: ${error.message}` : `The server cannot sign anyone in right now (${error.message}).`)
}
