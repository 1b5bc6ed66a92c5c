// DPoP proofs for the dpop scenarios (RFC 9449 §4.2), signed in the server process before each
// window, outside the measurement, so the load generator only sends them: ES256 with node:crypto
// (the plugin's verifier is proven against jose and oauth4webapi in the tests; here only the cost
// of verifying matters). Each proof is used once, as the plugin requires.
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto'

export interface ProofSigner {
  /** `count` proofs for `method` on `url` (absolute), for `accessToken` (its `ath`) when given. */
  proofs (count: number, method: string, url: string, accessToken?: string): string[]
}

export function proofSigner (): ProofSigner {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' })
  const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } })).toString('base64url')
  return {
    proofs (count, method, url, accessToken) {
      const ath = accessToken === undefined ? {} : { ath: createHash('sha256').update(accessToken).digest('base64url') }
      const iat = Math.floor(Date.now() / 1000)
      return Array.from({ length: count }, () => {
        const input = `${header}.${Buffer.from(JSON.stringify({ jti: randomUUID(), htm: method, htu: url, iat, ...ath })).toString('base64url')}`
        return `${input}.${sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
      })
    }
  }
}
