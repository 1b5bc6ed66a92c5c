import { randomBytes } from 'node:crypto'
import http from 'node:http'
import type { Socket } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'

/**
 * A minimal Chrome DevTools Protocol client over the example's `--inspect` port (loopback), to
 * force a full garbage collection before an RSS reading: without it, RSS follows V8's heap
 * growth between major GCs (a saw-tooth of 30 % and more within a minute, leak or not).
 */
export class Inspector {
  readonly #socket: Socket
  readonly #pending = new Map<number, { resolve: (value: unknown) => void, reject: (error: Error) => void }>()
  #buffer = Buffer.alloc(0)
  #fragments: Buffer[] = []
  #id = 0

  private constructor (socket: Socket) {
    this.#socket = socket
    socket.on('data', (chunk: Buffer) => { this.#receive(chunk) })
    socket.on('error', () => {})
    socket.on('close', () => {
      for (const { reject } of this.#pending.values()) reject(new Error('inspector connection closed'))
      this.#pending.clear()
    })
  }

  static async connect (port: number): Promise<Inspector> {
    const targets = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/json/list' }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => { text += chunk })
        res.on('end', () => resolve(text))
      }).on('error', reject)
    })
    const url = new URL((JSON.parse(targets) as Array<{ webSocketDebuggerUrl: string }>)[0]?.webSocketDebuggerUrl ?? '')
    const socket = await new Promise<Socket>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port,
        path: url.pathname,
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') }
      })
      req.on('upgrade', (_res, upgraded, head) => {
        if (head.length > 0) upgraded.unshift(head)
        resolve(upgraded)
      })
      req.on('response', (res) => reject(new Error(`inspector refused the upgrade: ${res.statusCode}`)))
      req.on('error', reject)
      req.end()
    })
    return new Inspector(socket)
  }

  /** Sends one CDP command; resolves with its result. */
  async send (method: string, params: object = {}): Promise<unknown> {
    const id = ++this.#id
    const payload = Buffer.from(JSON.stringify({ id, method, params }))
    const mask = randomBytes(4)
    const length = payload.length < 126
      ? Buffer.from([0x80 | payload.length])
      : payload.length < 65536 ? Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff]) : Buffer.concat([Buffer.from([0x80 | 127]), bigEndian64(payload.length)])
    const masked = Buffer.from(payload.map((byte, index) => byte ^ (mask[index % 4] as number)))
    const result = new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }))
    this.#socket.write(Buffer.concat([Buffer.from([0x81]), length, mask, masked]))
    // An unref'd timer: left pending after the answer, it must not hold the process for 30 s.
    const timeout = delay(30_000, undefined, { ref: false }).then(() => { throw new Error(`inspector: no answer to ${method} in 30 s`) })
    return await Promise.race([result, timeout])
  }

  #receive (chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk])
    for (;;) {
      if (this.#buffer.length < 2) return
      const first = this.#buffer[0] as number
      let length = (this.#buffer[1] as number) & 0x7f
      let offset = 2
      if (length === 126) {
        if (this.#buffer.length < 4) return
        length = this.#buffer.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (this.#buffer.length < 10) return
        length = Number(this.#buffer.readBigUInt64BE(2))
        offset = 10
      }
      if (this.#buffer.length < offset + length) return
      const payload = this.#buffer.subarray(offset, offset + length)
      this.#buffer = this.#buffer.subarray(offset + length)
      const opcode = first & 0x0f
      if (opcode !== 0x1 && opcode !== 0x0) continue // only text frames (and their continuations) carry CDP
      this.#fragments.push(payload)
      if ((first & 0x80) === 0) continue
      const message = JSON.parse(Buffer.concat(this.#fragments).toString('utf8')) as { id?: number, result?: unknown, error?: { message: string } }
      this.#fragments = []
      const waiting = message.id === undefined ? undefined : this.#pending.get(message.id)
      if (waiting === undefined) continue
      this.#pending.delete(message.id as number)
      if (message.error !== undefined) waiting.reject(new Error(message.error.message))
      else waiting.resolve(message.result)
    }
  }

  close (): void {
    this.#socket.destroy()
  }
}

function bigEndian64 (value: number): Buffer {
  const buffer = Buffer.alloc(8)
  buffer.writeBigUInt64BE(BigInt(value))
  return buffer
}
