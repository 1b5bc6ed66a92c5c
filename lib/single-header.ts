import type { FastifyRequest } from 'fastify'

/**
 * The request's `Authorization` header; `null` when it came more than once. Node keeps the first
 * of repeated headers and drops the rest, so without this check a request with two credentials
 * would be judged by one of them (docs/design.md, «The `authenticate` hook»). Only a request that has
 * the header pays for the scan.
 */
export function singleAuthorization (request: FastifyRequest): string | undefined | null {
  return singleHeader(request, 'authorization')
}

/** RFC 6750 §2.1 and RFC 9449 §7.1: the credentials of `Authorization` are one non-empty token, no spaces. */
export function isMalformedToken (token: string): boolean {
  return token === '' || token.includes(' ')
}

/**
 * The request's header `name` (lower case); `null` when it came more than once (Node joins or
 * drops repeats depending on the header: neither may decide for us). Only a request that has the
 * header pays for the scan.
 */
export function singleHeader (request: FastifyRequest, name: string): string | undefined | null {
  const header = request.headers[name]
  if (header === undefined) return undefined
  const raw = request.raw.rawHeaders
  let seen = 0
  for (let i = 0; i < raw.length; i += 2) {
    const field = raw[i] as string
    if (field.length === name.length && field.toLowerCase() === name && ++seen > 1) return null
  }
  return header as string
}
