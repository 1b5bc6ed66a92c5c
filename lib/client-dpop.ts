/**
 * DPoP (RFC 9449) for `fastify-token-auth/client`: a signer that holds an ES256 key pair and
 * signs a proof for each request. In a browser the pair is a NON-EXTRACTABLE WebCrypto key kept
 * in IndexedDB, so scripts can use it but never read the private key, and a reload keeps the
 * binding. Like the rest of the client it imports only a sibling and nothing from npm, so it
 * runs as a plain ES module in a browser.
 */
import { parseWwwAuthenticate } from './www-authenticate.js'

/**
 * Where the signer keeps its key pair. {@link indexedDbKeyStorage} in a browser,
 * {@link memoryKeyStorage} elsewhere (Node has no IndexedDB); any other place that can hold a
 * `CryptoKey` will do.
 */
export interface DpopKeyStorage {
  /** The stored pair, if any. */
  get (): Promise<CryptoKeyPair | undefined>
  /** Stores `keys` unless a pair is stored already (another tab was first), and resolves with the stored pair. */
  add (keys: CryptoKeyPair): Promise<CryptoKeyPair>
}

export interface DpopSigner {
  /**
   * A proof (the `DPoP` header) for `method` on `url` (query and fragment are left out of
   * `htu`), with `ath` for `accessToken` when given and the last nonce `url`'s origin sent.
   */
  proof (method: string, url: string, accessToken?: string): Promise<string>
  /**
   * Sends `request` with a proof, and `Authorization: DPoP <accessToken>` when given; remembers
   * the answer's `DPoP-Nonce`. When the server asks for a nonce (400
   * `FST_TOKEN_AUTH_USE_DPOP_NONCE`, or a 401 with `DPoP error="use_dpop_nonce"`) and sent one,
   * the request is signed again and retried once.
   */
  send (fetch: typeof globalThis.fetch, request: Request, accessToken?: string): Promise<Response>
  /** The key's RFC 7638 thumbprint, as the server names the key (`cnf.jkt`, the refresh token's key part). */
  thumbprint (): Promise<string>
}

export interface DpopSignerOptions {
  /** @default indexedDbKeyStorage() where `indexedDB` exists, else memoryKeyStorage() */
  storage?: DpopKeyStorage
}

const USE_NONCE = 'FST_TOKEN_AUTH_USE_DPOP_NONCE'
const ECDSA = { name: 'ECDSA', namedCurve: 'P-256' }
const encoder = new TextEncoder()

interface Key { privateKey: CryptoKey, jwk: { kty: string, crv: string, x: string, y: string } }

/** Creates a signer; its key pair is loaded, or created and stored, at the first proof. */
export function createDpopSigner (options: DpopSignerOptions = {}): DpopSigner {
  const storage = options.storage ?? (globalThis.indexedDB === undefined ? memoryKeyStorage() : indexedDbKeyStorage())
  const nonces = new Map<string, string>()
  let loading: Promise<Key> | undefined
  const key = (): Promise<Key> => {
    // A failure is not kept: the next proof tries again.
    loading ??= loadKey(storage).catch((error: unknown) => {
      loading = undefined
      throw error
    })
    return loading
  }

  const proof = async (method: string, url: string, accessToken?: string): Promise<string> => {
    const { privateKey, jwk } = await key()
    const htu = new URL(url)
    const nonce = nonces.get(htu.origin)
    htu.search = ''
    htu.hash = ''
    const claims = {
      jti: base64url(crypto.getRandomValues(new Uint8Array(16))),
      htm: method,
      htu: htu.href,
      iat: Math.floor(Date.now() / 1000),
      ...(accessToken === undefined ? {} : { ath: await sha256(accessToken) }),
      ...(nonce === undefined ? {} : { nonce })
    }
    const input = `${json64({ typ: 'dpop+jwt', alg: 'ES256', jwk })}.${json64(claims)}`
    // WebCrypto's ECDSA signature is r||s already, the JWS form (RFC 7518 §3.4).
    const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, privateKey, encoder.encode(input))
    return `${input}.${base64url(new Uint8Array(signature))}`
  }

  const attempt = async (fetch: typeof globalThis.fetch, request: Request, accessToken: string | undefined): Promise<Response> => {
    if (accessToken !== undefined) request.headers.set('authorization', `DPoP ${accessToken}`)
    request.headers.set('dpop', await proof(request.method, request.url, accessToken))
    const response = await fetch(request)
    const nonce = response.headers.get('dpop-nonce')
    if (nonce !== null) nonces.set(new URL(request.url).origin, nonce)
    return response
  }

  return {
    proof,
    async send (fetch, request, accessToken) {
      // A clone goes first: the original, body unread, stays available for the retry.
      const first = await attempt(fetch, request.clone(), accessToken)
      if (!first.headers.has('dpop-nonce') || !await nonceAsked(first)) return first
      await first.body?.cancel()
      return await attempt(fetch, request, accessToken)
    },
    async thumbprint () {
      const { crv, kty, x, y } = (await key()).jwk
      // RFC 7638: the required members, in lexicographic order, no whitespace.
      return await sha256(JSON.stringify({ crv, kty, x, y }))
    }
  }
}

async function loadKey (storage: DpopKeyStorage): Promise<Key> {
  // The private key cannot be exported, by this page or any script: only used to sign.
  const keys = await storage.get() ?? await storage.add(await crypto.subtle.generateKey(ECDSA, false, ['sign', 'verify']))
  const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', keys.publicKey) as Key['jwk']
  return { privateKey: keys.privateKey, jwk: { kty, crv, x, y } }
}

/** Whether a response asks for a proof with the server's nonce. */
async function nonceAsked (response: Response): Promise<boolean> {
  if (response.status === 401) {
    return parseWwwAuthenticate(response.headers.get('www-authenticate') ?? '')
      .some((challenge) => challenge.scheme === 'dpop' && challenge.params.error === 'use_dpop_nonce')
  }
  if (response.status !== 400) return false
  try {
    return Object(await response.clone().json()).code === USE_NONCE
  } catch {
    return false
  }
}

/** Keeps the pair in this object's memory: it lives as long as the process or page. */
export function memoryKeyStorage (): DpopKeyStorage {
  let stored: CryptoKeyPair | undefined
  return {
    async get () { return stored },
    async add (keys) {
      stored ??= keys
      return stored
    }
  }
}

export interface IndexedDbKeyStorageOptions {
  /** The database; its object store is `fastify-token-auth-dpop-keys`. @default 'fastify-token-auth' */
  database?: string
  /** @default globalThis.indexedDB */
  indexedDB?: IDBFactory
}

const STORE = 'fastify-token-auth-dpop-keys'
const RECORD = 'default'

/**
 * Keeps the pair in IndexedDB, which stores a `CryptoKey` as it is: a non-extractable private
 * key stays non-extractable, usable by this origin's pages only. Every tab of the origin shares
 * it; two tabs creating one at once agree on the first stored.
 */
export function indexedDbKeyStorage (options: IndexedDbKeyStorageOptions = {}): DpopKeyStorage {
  /** Runs `use` in one transaction; resolves with what it passed to `done` once the transaction has committed. */
  const transaction = <T> (mode: IDBTransactionMode, use: (objects: IDBObjectStore, done: (value: T) => void) => void): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const opening = (options.indexedDB ?? globalThis.indexedDB).open(options.database ?? 'fastify-token-auth', 1)
      opening.onupgradeneeded = () => { opening.result.createObjectStore(STORE) }
      opening.onerror = () => reject(opening.error)
      opening.onsuccess = () => {
        const db = opening.result
        const tx = db.transaction(STORE, mode)
        let value: T
        use(tx.objectStore(STORE), (result) => { value = result })
        tx.oncomplete = () => {
          db.close()
          resolve(value)
        }
        tx.onabort = () => {
          db.close()
          reject(tx.error ?? new Error('IndexedDB: the transaction was aborted'))
        }
      }
    })
  return {
    get: () => transaction('readonly', (objects, done) => {
      const read = objects.get(RECORD)
      read.onsuccess = () => done(read.result)
    }),
    // One transaction: a pair another tab stored meanwhile is read before anything is written.
    add: (keys) => transaction('readwrite', (objects, done) => {
      const read = objects.get(RECORD)
      read.onsuccess = () => {
        if (read.result !== undefined) return done(read.result)
        objects.put(keys, RECORD)
        done(keys)
      }
    })
  }
}

function base64url (bytes: Uint8Array): string {
  let binary = ''
  for (const byte of bytes) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

function json64 (value: object): string {
  return base64url(encoder.encode(JSON.stringify(value)))
}

async function sha256 (text: string): Promise<string> {
  return base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(text))))
}
