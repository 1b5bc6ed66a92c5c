import type { Pool } from 'pg'
import { ROTATE_MANY_FUNCTION } from './batch.js'
import { CREATE_LIMITED_FUNCTION } from './create.js'
import { ROTATE_FUNCTION } from './rotate.js'

/** Where the store's tables live. Both default so one database can hold one store without options. */
export interface PostgresNamingOptions {
  /**
   * Schema holding the tables. It must exist (`public` always does); the migration never
   * creates schemas, so it needs no database-level privilege.
   * @default 'public'
   */
  schema?: string
  /**
   * Prefix of every table and index name: `<prefix>sessions`, `<prefix>revocations`. Letters,
   * digits and underscores; may be empty.
   * @default 'token_auth_'
   */
  tablePrefix?: string
}

/** Validated names, each already quoted for SQL, plus the raw notification channel. */
export interface Names {
  sessions: string
  revocations: string
  sessionsByUser: string
  sessionsBySweep: string
  /** The version 1 expiry index, schema-qualified: the upgrade drops it. */
  sessionsByExpiry: string
  /** The rotation function (rotate.ts), schema-qualified. */
  rotateFunction: string
  /** The batch rotation (batch.ts), schema-qualified. */
  rotateManyFunction: string
  /** `createSession` under a session limit (create.ts), schema-qualified. */
  createLimitedFunction: string
  revocationsByTime: string
  revocationsByKeep: string
  /** The DPoP replay cache (`useOnce`). */
  proofIds: string
  proofIdsByExpiry: string
  /** The channel as `pg_notify` takes it (a string value). */
  channel: string
  /** The same channel as `LISTEN` takes it (a quoted identifier). */
  channelIdentifier: string
}

const DEFAULT_SCHEMA = 'public'
const DEFAULT_TABLE_PREFIX = 'token_auth_'
/** PostgreSQL truncates identifiers (and refuses channel names) beyond NAMEDATALEN - 1 bytes. */
const MAX_IDENTIFIER_BYTES = 63
/** Plain ASCII identifiers only: nothing that needs escaping beyond the double quotes we add. */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/
/** The longest suffix appended to `tablePrefix` (an index name). */
const LONGEST_NAME_SUFFIX = 'sessions_user_created_idx'

/*
 * The schema (version 2). Every statement is idempotent, so it is safe to run on every deploy, and
 * it upgrades a version 1 schema in place. `{name}` placeholders are replaced by quoted, validated
 * identifiers. A session column added here is also added to `FIELDS_BY_COLUMN_TYPE` in record.ts,
 * which every statement and the row mapping derive from (sweep_at excepted: no record field).
 *
 * {sessions} — one row per session (refresh-token family); never a token, only its hashes:
 *   id                   text     primary key: the session id (`sid` claim)
 *   user_id              text     owner; with created_at, indexed for listing and revoke-all
 *   claims               jsonb    extra access-token claims (jsonb reorders keys; values are kept)
 *   created_at           bigint   ms since the epoch, like every time column, so values round-trip exactly
 *   last_used_at         bigint
 *   expires_at           bigint   idle expiry (never after absolute_expires_at); not indexed (below)
 *   absolute_expires_at  bigint
 *   token_hash           text     hash of the refresh-token id accepted now
 *   previous_token_hash  text     hash of its immediate predecessor (grace window, recovery, theft detection)
 *   rotated_at           bigint   when token_hash replaced previous_token_hash (by rotation or recovery):
 *                                 start of the grace window, and what token_hash was derived from
 *   grace_uses           integer  grace answers given in the current window
 *   user_agent, ip       text     last client seen
 *   first_user_agent, first_ip
 *                        text     the client that started the session; never changed
 *   authentication       jsonb    { time, acr?, amr? }: set at login, replaced by a re-authentication.
 *                                 Its default serves only rows a version 1 process inserts during a
 *                                 rolling upgrade: authenticated at an unknown time reads as long ago,
 *                                 so a step-up asks again
 *   claims_version       integer  0 at login, + 1 by each `updateUserClaims`
 *   sweep_at             bigint   indexed: when the sweep looks at the row next; never after expires_at.
 *                                 The sweep deletes the rows due that have expired and moves the others'
 *                                 sweep_at to their expires_at. A rotation moves expires_at but leaves
 *                                 sweep_at (unless expires_at drops below it), so it writes no indexed
 *                                 column: its new row version is a HOT update, on the same page (hence
 *                                 fillfactor 80), with no new index entries. Indexing expires_at itself
 *                                 made every rotation insert into all three indexes. A live session is
 *                                 rewritten by the sweep about once per idle lifetime instead.
 *
 * {revocations} — the revocation feed read by every process (`revokedSince`):
 *   seq                  bigint   identity: a stable order for revocations made in the same ms
 *   session_id           text     the revoked session
 *   revoked_at           bigint   indexed: the feed is read by time
 *   keep_until           bigint   indexed: the sweep drops entries from this time on
 *   claims_version       integer  NULL for a revocation; for a claims change, the session's new version
 *
 * {proofIds} — the DPoP replay cache (`useOnce`): one row per proof already used, until it expires:
 *   key                  text     primary key: what the plugin passes, a hash of the proof's key and jti;
 *                                 a second insert of a live key conflicts and returns nothing
 *   expires_at           bigint   indexed: the sweep deletes rows from this time on; until then a row
 *                                 expired at `now` is taken over by the next use of its key
 *
 * {rotateFunction} — the rotation (rotate.ts), replaced on every run.
 * {rotateManyFunction} — coalesced rotations (batch.ts), calling it; replaced on every run.
 * {createLimitedFunction} — a login under a session limit (create.ts); replaced on every run.
 */
const MIGRATION = `-- fastify-token-auth PostgresStore schema, version 2 (idempotent; upgrades version 1).
-- Serialises concurrent runs against the same tables (two instances deploying at once), which
-- IF NOT EXISTS alone does not; held until the end of the transaction running this script.
SELECT pg_advisory_xact_lock(hashtext('fastify-token-auth {sessions} {revocations}'));
CREATE TABLE IF NOT EXISTS {sessions} (
  id text PRIMARY KEY,
  user_id text NOT NULL,
  claims jsonb NOT NULL,
  created_at bigint NOT NULL,
  last_used_at bigint NOT NULL,
  expires_at bigint NOT NULL,
  absolute_expires_at bigint NOT NULL,
  token_hash text NOT NULL,
  previous_token_hash text,
  rotated_at bigint,
  grace_uses integer NOT NULL DEFAULT 0,
  user_agent text,
  ip text,
  sweep_at bigint NOT NULL DEFAULT 0,
  first_user_agent text,
  first_ip text,
  authentication jsonb NOT NULL DEFAULT '{"time": 0}',
  claims_version integer NOT NULL DEFAULT 0
) WITH (fillfactor = 80);
-- Version 1 to 2, once (catalog checks first, so later runs take no table lock): sweep_at with a
-- default of 0 (no table rewrite; every old row is due, and the next sweeps set it in batches),
-- room on each page for HOT updates (pages written from now on), and the expires_at index gone.
-- Each step on its own, so an operator may add the column and build the index CONCURRENTLY first.
-- The session policy's columns (first client, authentication, claims version): the sessions
-- already there started with their current client, authenticated when they were created, and
-- have version 0; that UPDATE rewrites every row once (a large table may take it in batches first).
DO $upgrade$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = '{sessions}'::regclass AND attname = 'sweep_at' AND NOT attisdropped) THEN
    ALTER TABLE {sessions} ADD COLUMN sweep_at bigint NOT NULL DEFAULT 0, SET (fillfactor = 80);
  END IF;
  IF to_regclass('{sessionsByExpiry}') IS NOT NULL THEN
    DROP INDEX {sessionsByExpiry};
  END IF;
  IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = '{sessions}'::regclass AND attname = 'claims_version' AND NOT attisdropped) THEN
    ALTER TABLE {sessions} ADD COLUMN first_user_agent text, ADD COLUMN first_ip text,
      ADD COLUMN authentication jsonb NOT NULL DEFAULT '{"time": 0}', ADD COLUMN claims_version integer NOT NULL DEFAULT 0;
    UPDATE {sessions} SET first_user_agent = user_agent, first_ip = ip, authentication = jsonb_build_object('time', created_at);
  END IF;
END
$upgrade$;
-- Listing a user's sessions oldest first, and revoking them all.
CREATE INDEX IF NOT EXISTS {sessionsByUser} ON {sessions} (user_id, created_at);
-- The sweep finds the sessions due without a full scan.
CREATE INDEX IF NOT EXISTS {sessionsBySweep} ON {sessions} (sweep_at);
CREATE TABLE IF NOT EXISTS {revocations} (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  session_id text NOT NULL,
  revoked_at bigint NOT NULL,
  keep_until bigint NOT NULL,
  claims_version integer
);
DO $upgrade_feed$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = '{revocations}'::regclass AND attname = 'claims_version' AND NOT attisdropped) THEN
    ALTER TABLE {revocations} ADD COLUMN claims_version integer;
  END IF;
END
$upgrade_feed$;
-- The revocation feed is read from a point in time on.
CREATE INDEX IF NOT EXISTS {revocationsByTime} ON {revocations} (revoked_at);
-- The sweep finds feed entries past their keep time.
CREATE INDEX IF NOT EXISTS {revocationsByKeep} ON {revocations} (keep_until);
CREATE TABLE IF NOT EXISTS {proofIds} (
  key text PRIMARY KEY,
  expires_at bigint NOT NULL
);
-- The sweep finds expired proof ids.
CREATE INDEX IF NOT EXISTS {proofIdsByExpiry} ON {proofIds} (expires_at);
-- The rotation functions of an unreleased draft of version 2, before re-authentication and
-- shortened ends: replaced by those below, which take two more parameters.
DROP FUNCTION IF EXISTS {rotateManyFunction}(text[], text[], text[], bigint[], bigint[], bigint[], bigint[], text[], text[], jsonb[], bigint[], text, bigint[]);
DROP FUNCTION IF EXISTS {rotateFunction}(text, text, text, bigint, bigint, bigint, bigint, text, text, jsonb, bigint, text, bigint);
${ROTATE_FUNCTION}
${ROTATE_MANY_FUNCTION}
${CREATE_LIMITED_FUNCTION}
`

/**
 * The SQL that creates the store's tables and indexes (see the comment block above `MIGRATION`
 * in the source for every column). Idempotent; run it with any migration tool, preferably in a
 * transaction, or call `migrate`, which runs exactly this text. The schema must already exist.
 */
export function postgresMigrationSql (options: PostgresNamingOptions = {}): string {
  return render(MIGRATION, resolveNames(options, 'postgresMigrationSql'))
}

/**
 * Creates the store's tables and indexes if they do not exist yet, by running
 * `postgresMigrationSql(options)` as one query: PostgreSQL runs a multi-statement query as one
 * implicit transaction, so it applies entirely or not at all. Safe to run on every start, from
 * several processes at once.
 */
export async function migrate (pool: Pool, options: PostgresNamingOptions = {}): Promise<void> {
  checkPool(pool, 'migrate')
  const sql = render(MIGRATION, resolveNames(options, 'migrate'))
  await pool.query(sql)
}

/** Replaces the `{name}` placeholders of a statement or of the migration by the quoted names. */
export function render (template: string, names: Names): string {
  return template.replace(/\{(\w+)\}/g, (_, key: keyof Names) => names[key])
}

/** Validates the naming options (`owner` names the caller in errors) and quotes every name. */
export function resolveNames (options: PostgresNamingOptions, owner: string): Names {
  const schema = identifier(options.schema ?? DEFAULT_SCHEMA, 'schema', owner, false)
  const prefix = identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix', owner, true)
  if (prefix.length + LONGEST_NAME_SUFFIX.length > MAX_IDENTIFIER_BYTES) {
    throw new TypeError(`${owner} option "tablePrefix" must be at most ${MAX_IDENTIFIER_BYTES - LONGEST_NAME_SUFFIX.length} characters, got ${prefix.length}`)
  }
  // The channel includes the schema, so stores in two schemas of one database never hear each other.
  const channel = `${schema}.${prefix}revocations`
  if (channel.length > MAX_IDENTIFIER_BYTES) {
    throw new TypeError(`${owner} options "schema" and "tablePrefix" are too long together: the notification channel "${channel}" exceeds ${MAX_IDENTIFIER_BYTES} characters`)
  }
  const table = (name: string): string => `${quote(schema)}.${quote(prefix + name)}`
  return {
    sessions: table('sessions'),
    revocations: table('revocations'),
    // Index names live in the table's schema and are never schema-qualified.
    sessionsByUser: quote(`${prefix}sessions_user_created_idx`),
    sessionsBySweep: quote(`${prefix}sessions_sweep_idx`),
    sessionsByExpiry: `${quote(schema)}.${quote(`${prefix}sessions_expires_idx`)}`,
    rotateFunction: `${quote(schema)}.${quote(`${prefix}rotate_v2`)}`,
    rotateManyFunction: `${quote(schema)}.${quote(`${prefix}rotate_many_v2`)}`,
    createLimitedFunction: `${quote(schema)}.${quote(`${prefix}create_session_v2`)}`,
    revocationsByTime: quote(`${prefix}revocations_revoked_idx`),
    revocationsByKeep: quote(`${prefix}revocations_keep_idx`),
    proofIds: table('proof_ids'),
    proofIdsByExpiry: quote(`${prefix}proof_ids_expires_idx`),
    channel,
    channelIdentifier: quote(channel)
  }
}

export function checkPool (pool: unknown, owner: string): void {
  if (typeof (pool as Pool | undefined)?.query !== 'function' || typeof (pool as Pool).connect !== 'function') {
    throw new TypeError(`${owner} option "pool" must be a pg Pool`)
  }
}

function quote (identifier: string): string {
  // Safe: identifiers are validated against IDENTIFIER, so they contain no double quote.
  return `"${identifier}"`
}

function identifier (value: unknown, name: string, owner: string, mayBeEmpty: boolean): string {
  if (typeof value !== 'string' || !(IDENTIFIER.test(value) || (mayBeEmpty && value === '')) || value.length > MAX_IDENTIFIER_BYTES) {
    throw new TypeError(`${owner} option "${name}" must be ${mayBeEmpty ? 'empty or ' : ''}an identifier (ASCII letters, digits and underscores, not starting with a digit, at most ${MAX_IDENTIFIER_BYTES} characters), got ${JSON.stringify(value)}`)
  }
  return value
}
