import type { QueryResult } from 'pg'
import { type RotateRequest, type RotateResult, StoreDeadlineError } from '../types.js'
import { COLUMN_DEFINITIONS, COLUMNS, toRecord } from './record.js'

/**
 * Coalesced rotations: rotations that arrive while the store's rotation statements are all in
 * flight wait here and go out together as ONE statement calling this function: one round trip,
 * one transaction, one commit (and one WAL flush) for up to `MAX_BATCH` of them.
 * - Every row of the batch is locked first, in one statement, sorted by id: every lock wait
 *   happens there, and two batches (or a batch and revoke-all, which locks in the same order,
 *   statements.ts) always take shared rows in the same order, so they never deadlock. A single
 *   rotation locks one row and waits for nothing else while holding it.
 * - Then each member runs the single rotation's function (rotate.ts), unchanged, in arrival
 *   order: its own deadline (checked after every lock wait, as alone), now, grace and claims;
 *   the same session twice behaves as two rotations in a row, the second seeing the first.
 * - A member whose row was not there when the rows were locked is `missing` without looking
 *   again: a row created since would be locked out of order (and a session is never rotated
 *   before its creation has answered).
 * Rows come back one per member, with its 1-based ordinal.
 */
export const ROTATE_MANY_FUNCTION = `CREATE OR REPLACE FUNCTION {rotateManyFunction}(
  p_ids text[], p_presented_hashes text[], p_next_hashes text[], p_nows bigint[], p_idle_ttls bigint[], p_graces bigint[],
  p_grace_limits bigint[], p_user_agents text[], p_ips text[], p_claims jsonb[], p_keep_untils bigint[], p_channel text,
  p_deadlines bigint[], p_authentications jsonb[], p_absolute_expires_ats bigint[]
) RETURNS TABLE (ordinal integer, outcome text, ${COLUMN_DEFINITIONS}) LANGUAGE plpgsql AS $rotate_many$
DECLARE
  locked text[];
BEGIN
  SELECT array_agg(l.id) INTO locked FROM (
    SELECT s.id FROM {sessions} s WHERE s.id = ANY (p_ids) ORDER BY s.id FOR UPDATE
  ) l;
  FOR i IN 1 .. cardinality(p_ids) LOOP
    ordinal := i;
    IF p_ids[i] = ANY (locked) THEN
      SELECT * INTO outcome, ${COLUMNS} FROM {rotateFunction}(p_ids[i], p_presented_hashes[i], p_next_hashes[i], p_nows[i],
        p_idle_ttls[i], p_graces[i], p_grace_limits[i], p_user_agents[i], p_ips[i], p_claims[i], p_keep_untils[i], p_channel,
        p_deadlines[i], p_authentications[i], p_absolute_expires_ats[i]) r;
    ELSE
      outcome := NULL;
    END IF;
    RETURN NEXT;
  END LOOP;
END
$rotate_many$;`

/** The batch statement: arrays of the single rotation's parameters (statements.ts), same order, and the channel. */
export const ROTATE_MANY = `SELECT ordinal, outcome, ${COLUMNS} FROM {rotateManyFunction}($1::text[], $2::text[], $3::text[],
  $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::jsonb[], $11::bigint[], $12::text, $13::bigint[],
  $14::jsonb[], $15::bigint[])`

/** Most rotations in one batch statement: its arrays and result stay small, its transaction short. */
export const MAX_BATCH = 64

/** The single rotation's parameters (statements.ts), in the order of both statements. */
export function rotateParameters (request: RotateRequest, channel: string): unknown[] {
  return [
    request.sessionId, request.presentedHash, request.nextHash, request.now, request.idleTtl,
    request.grace, request.graceLimit, request.userAgent, request.ip,
    request.claims === undefined ? null : JSON.stringify(request.claims),
    request.now + request.keepRevocationFor, channel, request.deadline ?? null,
    request.authentication === undefined ? null : JSON.stringify(request.authentication),
    request.absoluteExpiresAt ?? null
  ]
}

/** The parameter that is one value for the whole batch: the channel. */
const CHANNEL = 11

/** A row of either statement as the contract's result; `late` rejects. */
export function toResult (row: Record<string, any> | undefined): RotateResult {
  // The functions always return a row per rotation: outcome NULL when there is no such session.
  if (row === undefined || row.outcome === null) return { outcome: 'missing' }
  if (row.outcome === 'late') throw new StoreDeadlineError('rotate')
  return { outcome: row.outcome, session: toRecord(row) }
}

interface Waiting {
  request: RotateRequest
  resolve: (result: RotateResult) => void
  reject: (error: unknown) => void
}

/** How the coalescer runs statements: one rotation or a batch, given the statement's parameters. */
export interface RotationRunner {
  single: (parameters: unknown[]) => Promise<QueryResult>
  many: (parameters: unknown[]) => Promise<QueryResult>
}

/**
 * Admits at most `maxInFlight` rotation statements at once. Below that, a rotation is sent at
 * once, alone, exactly as without coalescing (no timer, no added latency). At the cap it waits;
 * each statement that completes sends everything waiting (up to `MAX_BATCH`) as its successor.
 */
export class RotationCoalescer {
  readonly #runner: RotationRunner
  readonly #channel: string
  readonly #maxInFlight: number
  readonly #waiting: Waiting[] = []
  #inFlight = 0

  constructor (runner: RotationRunner, channel: string, maxInFlight: number) {
    this.#runner = runner
    this.#channel = channel
    this.#maxInFlight = maxInFlight
  }

  async rotate (request: RotateRequest): Promise<RotateResult> {
    if (this.#inFlight < this.#maxInFlight) {
      this.#inFlight++
      try {
        return await this.#single(request)
      } finally {
        this.#next()
      }
    }
    return await new Promise((resolve, reject) => { this.#waiting.push({ request, resolve, reject }) })
  }

  /** A statement completed: its slot goes to the rotations waiting, if any. */
  #next (): void {
    this.#inFlight--
    const batch = this.#waiting.splice(0, MAX_BATCH)
    if (batch.length === 0) return
    this.#inFlight++
    this.#runBatch(batch).finally(() => { this.#next() })
  }

  async #single (request: RotateRequest): Promise<RotateResult> {
    return toResult((await this.#runner.single(rotateParameters(request, this.#channel))).rows[0])
  }

  async #runBatch (batch: Waiting[]): Promise<void> {
    if (batch.length === 1) {
      const [{ request, resolve, reject }] = batch as [Waiting]
      return await this.#single(request).then(resolve, reject)
    }
    let rows: Array<Record<string, any>>
    try {
      const parameters: unknown[] = transpose(batch.map(({ request }) => rotateParameters(request, this.#channel)))
      parameters[CHANNEL] = this.#channel
      rows = (await this.#runner.many(parameters)).rows
    } catch (error) {
      if (!retriable(error)) {
        for (const member of batch) member.reject(error)
        return
      }
      // The batch rolled back whole: nothing of it applied. One member may have caused the error
      // (a value the database refuses); alone, it fails only itself.
      for (const member of batch) {
        await this.#single(member.request).then(member.resolve, member.reject)
      }
      return
    }
    for (const row of rows) {
      const member = batch[row.ordinal - 1] as Waiting
      try {
        member.resolve(toResult(row))
      } catch (error) {
        member.reject(error)
      }
    }
  }
}

/** Rows of parameters as one array per parameter. */
function transpose (rows: unknown[][]): unknown[][] {
  return (rows[0] as unknown[]).map((_, column) => rows.map((row) => row[column]))
}

/**
 * Whether a failed batch is worth running again member by member: an error the server reported
 * (it has a severity), except a lost connection (class 08) and operator intervention (class 57:
 * termination, shutdown, cancel), which would fail each member alike. Network and driver errors
 * carry no severity.
 */
export function retriable (error: unknown): boolean {
  const { severity, code } = (error ?? {}) as { severity?: unknown, code?: unknown }
  return typeof severity === 'string' && typeof code === 'string' && !code.startsWith('08') && !code.startsWith('57')
}
