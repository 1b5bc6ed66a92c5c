// The scenario names, shared by the runner (bench/run.ts) and the server process (bench/server/main.ts).
export const SCENARIOS = [
  'bare', 'diy', 'express', 'protected', 'protected-eddsa', 'protected-dpop',
  'diy-refresh', 'refresh', 'refresh-dpop', 'refresh-1m', 'refresh-redis', 'refresh-redis-1m', 'refresh-postgres'
] as const
export type Scenario = typeof SCENARIOS[number]

/** Scenarios loaded with `POST /auth/refresh` and single-use refresh tokens; the others with `GET /me`. */
export function isRefresh (scenario: Scenario): boolean {
  return scenario.includes('refresh')
}

/**
 * Scenarios whose every request carries a single-use DPoP proof, issued by the server before the
 * window like refresh tokens: `protected-dpop` issues proofs, `refresh-dpop` a refresh token and
 * its proof, separated by a space.
 */
export function usesProofs (scenario: Scenario): boolean {
  return scenario.endsWith('-dpop')
}

/** The user every scenario serves, and the body of every `GET /me` answer. */
export const USER = { id: 'user-1', claims: { username: 'alice' } }
export const ME_BODY = JSON.stringify({ id: USER.id, username: USER.claims.username })

export const ACCESS_SECRET = 'bench-access-secret-0123456789-abcdefghijklmnop'
export const REFRESH_SECRET = 'bench-refresh-secret-0123456789-abcdefghijklmno'
/** Access-token lifetime (s) of every scenario, the plugin's default. */
export const ACCESS_TTL = 15 * 60
/** Idle lifetime (s) of refresh sessions: an hour, so keys a killed run leaves in Redis expire soon. */
export const SESSION_TTL = 60 * 60
