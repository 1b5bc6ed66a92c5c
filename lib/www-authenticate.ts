/**
 * What a client reads from a `WWW-Authenticate` header (RFC 9110 §11.6.1): every challenge, and
 * whether one is RFC 9470's step-up challenge. Part of `fastify-token-auth/client`; like it,
 * dependency-free, so it runs as a plain ES module in a browser.
 */

/**
 * A 401 of a route that wants the user to have signed in more recently (`maxAge`, seconds) or
 * more strongly (one of `acrValues`): RFC 9470's `insufficient_user_authentication` challenge.
 */
export interface StepUpRequired { kind: 'step-up-required', maxAge?: number, acrValues?: string[] }

/** One challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1). */
export interface Challenge {
  /** Lower-cased: schemes are case-insensitive. */
  scheme: string
  /** Names lower-cased, values unquoted and unescaped; the first of a repeated name wins. */
  params: Record<string, string>
  token68?: string
}

/**
 * What a response says about step-up: `undefined` unless it is a 401 whose `WWW-Authenticate`
 * carries a Bearer challenge with `error="insufficient_user_authentication"`.
 */
export function stepUpRequired (response: Response): StepUpRequired | undefined {
  if (response.status !== 401) return undefined
  const bearer = parseWwwAuthenticate(response.headers.get('www-authenticate') ?? '')
    .find((challenge) => challenge.scheme === 'bearer' && challenge.params.error === 'insufficient_user_authentication')
  if (bearer === undefined) return undefined
  const { max_age: maxAge = '', acr_values: acrValues = '' } = bearer.params
  const acr = acrValues.split(' ').filter(Boolean)
  return { kind: 'step-up-required', ...(/^\d+$/.test(maxAge) ? { maxAge: Number(maxAge) } : {}), ...(acr.length > 0 ? { acrValues: acr } : {}) }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~\w]+/
const TOKEN68 = /^[ \t]+[\w\-.~+/]+=*(?=[ \t]*(,|$))/
const PARAM = /^[ \t]*=[ \t]*/
const QUOTED = /^"((?:[^"\\]|\\.)*)"/

/**
 * Parses a `WWW-Authenticate` value: challenges separated by commas, each a scheme and then a
 * token68 or comma-separated `name=value` params (a token or a quoted string with `\` escapes).
 * A malformed rest is dropped, keeping what came before it.
 */
export function parseWwwAuthenticate (header: string): Challenge[] {
  const challenges: Challenge[] = []
  const input = { rest: header }
  const take = (pattern: RegExp): RegExpExecArray | undefined => {
    const match = pattern.exec(input.rest) ?? undefined
    if (match !== undefined) input.rest = input.rest.slice(match[0].length)
    return match
  }
  const skip = () => take(/^[\s,]*/)
  skip()
  let current: Challenge | undefined
  while (input.rest !== '') {
    const name = take(TOKEN)?.[0]
    if (name === undefined) break
    if (current !== undefined && take(PARAM) !== undefined) {
      const value = take(TOKEN)?.[0] ?? take(QUOTED)?.[1]?.replace(/\\(.)/g, '$1')
      if (value === undefined) break
      current.params[name.toLowerCase()] ??= value
    } else {
      // Not `name=`: a new challenge's scheme, maybe followed by a token68.
      current = { scheme: name.toLowerCase(), params: Object.create(null) }
      challenges.push(current)
      const token68 = take(TOKEN68)?.[0]
      if (token68 !== undefined) current.token68 = token68.trimStart()
    }
    skip()
  }
  return challenges
}
