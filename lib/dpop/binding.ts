import { DpopRequiredError, InvalidDpopProofError } from '../errors.js'
import type { PresentedRefreshToken } from '../refresh-tokens.js'

/** The `dpop` option. */
export type DpopMode = 'off' | 'optional' | 'required'

/**
 * Whether the DPoP key a request proved (`proofKey`, its thumbprint, or undefined without a
 * proof) may use the session of a refresh token: a bound session's key and no other, and in
 * `'required'` mode no bearer session at all (docs/design.md, «Sender-constrained sessions
 * (DPoP)»). Checked before the store is asked, so a refusal rotates and spends nothing.
 * Thumbprints are public (they travel in tokens), so a plain comparison is fine.
 */
export function checkBinding (mode: DpopMode, presented: Pick<PresentedRefreshToken, 'jkt'>, proofKey: string | undefined): void {
  if (presented.jkt === undefined) {
    if (mode === 'required') throw new DpopRequiredError()
    return
  }
  if (proofKey === undefined) throw new InvalidDpopProofError('this refresh token is bound to a key: send a DPoP proof signed with it')
  if (proofKey !== presented.jkt) throw new InvalidDpopProofError('the proof is not signed with the key this session is bound to')
}
