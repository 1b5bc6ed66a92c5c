import type { RotateRequest, SessionRecord } from '../lib/stores/types.js'
import { rotationRequest } from '../lib/testing.js'

/** The clock of the PostgreSQL store tests. */
export const T0 = Date.UTC(2030, 0, 1)

/** The kit's rotation of the session's current token, at T0 + 1 s, from another client, grace limit 2. */
export function rotation (session: SessionRecord, overrides: Partial<RotateRequest> = {}): RotateRequest {
  return rotationRequest(session, session.tokenHash, `${session.tokenHash}-next`, T0 + 1000, {
    graceLimit: 2, userAgent: 'agent/2', ip: '198.51.100.2', ...overrides
  })
}
