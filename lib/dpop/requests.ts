import type { FastifyReply, FastifyRequest } from 'fastify'
import { DpopRequiredError, InvalidDpopProofError, UseDpopNonceError } from '../errors.js'
import { singleHeader } from '../single-header.js'
import type { SpendOnce } from '../store-calls.js'
import type { ResolvedOptions } from '../options.js'
import type { DpopMode } from './binding.js'
import { DpopNonces } from './nonce.js'
import { type DpopAlgorithm, DpopProofError, verifyProof, type VerifiedProof } from './proof.js'

type DpopOptions = Pick<ResolvedOptions, 'dpop' | 'dpopAlgorithms' | 'dpopProofLifetime' | 'dpopNonce' | 'clockTolerance' | 'refreshTokenSecret'>

/**
 * The DPoP proofs of requests (docs/design.md, «Sender-constrained sessions (DPoP)»): read from
 * the one `DPoP` header, checked by ./proof.ts, then spent in the store, last, so a proof refused
 * for another reason uses up nothing. Answers to a request with a proof carry `DPoP-Nonce` when
 * nonces are on. With `dpop: 'off'` the header is never read.
 */
export class DpopProofs {
  readonly mode: DpopMode
  readonly #algorithms: readonly DpopAlgorithm[]
  readonly #lifetime: number
  readonly #clockTolerance: number
  readonly #nonces: DpopNonces | undefined
  readonly #spend: SpendOnce
  readonly #now: () => number

  constructor (options: DpopOptions, spend: SpendOnce, now: () => number) {
    this.mode = options.dpop
    this.#algorithms = options.dpopAlgorithms
    this.#lifetime = options.dpopProofLifetime
    this.#clockTolerance = options.clockTolerance
    this.#nonces = options.dpopNonce ? new DpopNonces(options.refreshTokenSecret) : undefined
    this.#spend = spend
    this.#now = now
  }

  /** Whether DPoP is on (`'optional'` or `'required'`). */
  get enabled (): boolean {
    return this.mode !== 'off'
  }

  /** The `algs` of a DPoP challenge (RFC 9449 §7.1). */
  get algorithms (): string {
    return this.#algorithms.join(' ')
  }

  /**
   * The thumbprint of the key a request to a token endpoint (login, refresh, reauthenticate,
   * logout) proved, or undefined without a proof; `required` refuses a request without one.
   * Refusals are 400s (RFC 9449 §5): `invalid_dpop_proof`, or `use_dpop_nonce` with the nonce.
   */
  async keyOf (request: FastifyRequest, reply: FastifyReply, required = false): Promise<string | undefined> {
    let proof: VerifiedProof | undefined
    try {
      proof = await this.#check(request, reply, undefined)
    } catch (error) {
      if (!(error instanceof DpopProofError)) throw error
      throw error.nonce ? new UseDpopNonceError() : new InvalidDpopProofError(error.reason)
    }
    if (proof === undefined && required && this.mode === 'required') throw new DpopRequiredError()
    return proof?.jkt
  }

  /**
   * The proof of a protected request for `accessToken` (its `ath`), or undefined without one;
   * throws `DpopProofError` for `authenticate` to answer with its challenge (RFC 9449 §7.1).
   */
  async ofResourceRequest (request: FastifyRequest, reply: FastifyReply, accessToken: string): Promise<VerifiedProof | undefined> {
    return await this.#check(request, reply, accessToken)
  }

  async #check (request: FastifyRequest, reply: FastifyReply, accessToken: string | undefined): Promise<VerifiedProof | undefined> {
    if (!this.enabled) return undefined
    const header = singleHeader(request, 'dpop')
    if (header === undefined) return undefined
    const nonces = this.#nonces
    const now = this.#now()
    // §8.2: a server may hand out a fresh nonce with any answer; we do with every answer to a proof.
    if (nonces !== undefined) reply.header('dpop-nonce', nonces.current(now))
    if (header === null) throw new DpopProofError('more than one DPoP header')
    const proof = verifyProof(header, {
      method: request.method,
      url: `${request.protocol}://${request.host}${request.url}`,
      now,
      lifetime: this.#lifetime,
      clockTolerance: this.#clockTolerance,
      algorithms: this.#algorithms,
      ...(accessToken === undefined ? {} : { accessToken }),
      ...(nonces === undefined ? {} : { acceptsNonce: (nonce: string) => nonces.accepts(nonce, now) })
    })
    if (!await this.#spend(proof.replayKey, proof.expiresAt)) throw new DpopProofError('this proof has been used before')
    return proof
  }
}
